"""The results store: one JSON line per run in ``benchmarks/results/<name>.jsonl``.

Every benchmark, and ``train.py`` when asked (``+record=<name>``), appends a record: the command
line and its overrides, the git commit and whether its code or configs had uncommitted changes
(and which files: see :func:`git_state`), the date, the machine (CPU model, cores, threads,
torch version, GPU), the seeds, every metric and the stage times. Records are only ever
appended, never rewritten; ``benchmarks/report.py`` builds the README's tables from them, so
every figure there points at the line it comes from.
``NEOLENET_RESULTS_DIR`` moves the store (the tests write to a temporary one).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    return Path(os.environ.get("NEOLENET_RESULTS_DIR") or ROOT / "benchmarks" / "results")


# What "dirty" means: a tracked file that can change what a run computes differs from the commit.
# Changes to these do not count: the results store itself (every recorded run appends to it), the
# documentation, and Markdown files anywhere. Everything else tracked counts -- Python, configs,
# pyproject.toml, notebooks (their code is code), scripts, test fixtures. Untracked files never count.
NOT_CODE_DIRS = ("benchmarks/results/", "docs/")
NOT_CODE_SUFFIXES = (".md",)
DIRTY_FILES_CAP = 20


def counts_as_code(path: str) -> bool:
    """Whether a change to ``path`` (relative to the project root, '/'-separated) makes a run's
    code differ from its commit."""
    return not (path.startswith(NOT_CODE_DIRS) or path.lower().endswith(NOT_CODE_SUFFIXES))


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """``{"commit": <sha or None>, "dirty": <code or configs differ from the commit>,
    "dirty_files": <the changed files that made it dirty, sorted, at most DIRTY_FILES_CAP>}``, plus
    ``"dirty_files_omitted": <how many more>`` when the list is cut. Staged and unstaged changes to
    tracked files under ``root`` count (a deletion or rename too, by both its names); changes that
    :func:`counts_as_code` says are not code, and untracked files, do not. ``dirty`` and
    ``dirty_files`` are None when git cannot tell. (Records written before issue 30 have no
    ``dirty_files``; their ``dirty`` counted any tracked file, the results store included.)"""
    def run(*args: str) -> str | None:
        try:  # --no-optional-locks: never refresh the index behind someone else's back
            return subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True,
                                  text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    prefix = run("rev-parse", "--show-prefix")  # where root lies inside the repository ("" at its top)
    status = run("status", "--porcelain", "-z", "--untracked-files=no", "--no-renames", "--", ".")
    state: dict[str, Any] = {"commit": commit.strip() if commit else None, "dirty": None, "dirty_files": None}
    if status is None or prefix is None:
        return state
    prefix = prefix.strip()
    changed: set[str] = set()
    fields = iter(status.split("\0"))
    for entry in fields:  # "XY path"; a rename or copy ("R"/"C") is followed by its old path
        if len(entry) < 4:
            continue
        changed.add(entry[3:])
        if "R" in entry[:2] or "C" in entry[:2]:
            changed.add(next(fields, ""))
    code = sorted(p[len(prefix):] for p in changed if p.startswith(prefix) and counts_as_code(p[len(prefix):]))
    state.update(dirty=bool(code), dirty_files=code[:DIRTY_FILES_CAP])
    if len(code) > DIRTY_FILES_CAP:
        state["dirty_files_omitted"] = len(code) - DIRTY_FILES_CAP
    return state


_STATE_AT_START: dict[str, Any] | None = None


def capture_git_state(root: Path = ROOT) -> dict[str, Any]:
    """Take this process's git state now, once: the entry points call it as they start, so a record
    appended at the end says what the code was when the run began, not after edits made while it
    ran (an edit then would mark it dirty, a commit then would give it a commit it did not run)."""
    global _STATE_AT_START
    if _STATE_AT_START is None:
        _STATE_AT_START = git_state(root)
    return _STATE_AT_START


def machine() -> dict[str, Any]:
    """What ran it: CPU model, cores, torch's threads and version, the GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    if "torch" in sys.modules or _importable("torch"):
        import torch

        info.update(torch=torch.__version__, threads=torch.get_num_threads(),
                    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return info


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def append_record(name: str, record: dict[str, Any]) -> Path:
    """Append ``record`` to ``<results>/<name>.jsonl`` with the command, git state, date and
    machine filled in (keys ``record`` sets itself are kept). Returns the file."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        from models.errors import ConfigError

        raise ConfigError(f"record name {name!r}: use letters, digits, '_', '-' or '.' (it names "
                          f"benchmarks/results/<name>.jsonl)")
    full = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git": _STATE_AT_START or git_state(), "machine": machine(), **record}
    path = results_dir() / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # append only: a record, once written, is never changed
        f.write(json.dumps(full, sort_keys=True, default=str) + "\n")
    return path


def read_records(name: str) -> list[dict[str, Any]]:
    """The records of ``<results>/<name>.jsonl``, each with ``_line`` (its 1-based line number)."""
    path = results_dir() / f"{name}.jsonl"
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            out.append({**json.loads(line), "_line": i})
    return out



class _Tee:
    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_recorded(name: str, main, *args):
    """Run a benchmark's ``main(*args)``, which prints its figures as tables: the text goes to the
    terminal as usual and, when it ends without an error, into one record of ``<name>.jsonl``
    (``output``, with the command's arguments). ``NEOLENET_NO_RECORD=1`` skips the record."""
    import contextlib

    if os.environ.get("NEOLENET_NO_RECORD"):
        return main(*args)
    capture_git_state()
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        result = main(*args)
    append_record(name, {"argv": sys.argv[1:], "output": "".join(tee.parts)})
    return result
