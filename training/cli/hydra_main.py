"""The entry points' ``__main__`` (:func:`run_main`): Hydra's own composition errors (an unknown
``model=`` name, a misspelled key, an override it cannot parse) as one line, exit status 2
(:func:`hydra_error_message`), and ``ckpt_path=<run>/checkpoints/last.ckpt`` composing the run's
config from the overrides it was started with (:func:`training.cli.resume.resume_overrides`).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from .errors import debug_requested, user_error
from .resume import resume_overrides, run_folder_of


class _ComposeFailed(BaseException):
    """Carries Hydra's composition error out of Hydra's reporting (a BaseException, so that
    Hydra's ``run_and_report``, which catches Exception, lets it through)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _hydra_errors_to_us():
    """While Hydra runs, its composition errors (an unknown config name, a key that is not in the
    config, an override it cannot parse) come to :func:`run_main` instead of being printed by
    Hydra in 6-10 lines with exit status 1. Hydra reports them from its private ``run_and_report``
    (which prints and calls ``sys.exit(1)``; see :mod:`training.private_api`); everything else (an
    error raised by the job itself) is still reported by Hydra as before."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from training.private_api import hydra_run_and_report_wrapped

    def guard(func):
        def guarded():
            try:
                return func()
            except (ConfigCompositionException, OverrideParseException) as e:
                raise _ComposeFailed(e) from e
            except ValueError as e:  # an override without a key ("=3"): Hydra's parser lets it through
                if not str(e).startswith("Config group override must be"):
                    raise
                raise _ComposeFailed(e) from e
            except Exception as e:  # e.g. Hydra cannot create the run folder (a file in the way, a full disk)
                if user_error(e) is None:
                    raise
                raise _ComposeFailed(e) from e

        return guarded

    return hydra_run_and_report_wrapped(guard)


def run_main(main: Callable[[], Any], config_name: str, resume: bool = False) -> None:
    """Run a ``@hydra.main`` entry point (``main``) from the command line.

    * Hydra's composition errors are reported as one line and exit status 2, like every other
      mistake (:func:`hydra_error_message`); ``HYDRA_FULL_ERROR=1`` shows Hydra's own report.
    * ``resume``: ``ckpt_path=<run>/checkpoints/last.ckpt`` (not in a ``-m`` sweep) composes the run's
      config from the overrides it was started with (``<run>/.hydra/overrides.yaml``), with the
      command line's on top (:func:`resume_overrides`)."""
    import inspect

    config_dir = Path(inspect.getfile(inspect.unwrap(main))).resolve().parent / "configs"
    if resume:
        _resume_argv(sys.argv, config_dir)
    if debug_requested():
        main()
        return
    try:
        with _hydra_errors_to_us():
            main()
    except _ComposeFailed as failed:
        cause = user_error(failed.error)
        if cause is not None:
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(2)
        overrides = _argv_overrides(sys.argv) or []
        print(f"error: {hydra_error_message(failed.error, config_dir, config_name, overrides)}", file=sys.stderr)
        sys.exit(2)


def _parse_args(argv: list[str]):
    from training.private_api import hydra_args_parser

    try:
        return hydra_args_parser().parse_args(argv[1:])
    except SystemExit:  # argparse's own error: Hydra reports it again when it parses
        return None


def _argv_overrides(argv: list[str]) -> list[str] | None:
    args = _parse_args(argv)
    return list(args.overrides) if args is not None else None


def hydra_error_message(error: Exception, config_dir: Path, config_name: str, overrides: list[str]) -> str:
    """One line for a Hydra composition error: the options of an unknown config name, the closest
    key for one that is not in the config, the reason an override cannot be parsed."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(error)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        where = re.match(r"In '([^']+)'", text)
        inside = f" (named in {where.group(1)})" if where and where.group(1) not in (config_name, "hydra/config") else ""
        if group:
            return f"no {group} '{name}'{inside}; choose one of: {', '.join(error.options)}"
    if text.startswith("Config group override must be"):  # "=3": no key before the "="
        return f"cannot read an override: {text} (an override is key=value, e.g. seed=3)"
    if isinstance(error, OverrideParseException):
        first = text.strip().splitlines()[0] if text.strip() else "syntax error"
        return (f"cannot read the override {error.override!r}: {first} (quote a value with spaces or commas: "
                f"key='a,b'; a list: key=[a,b]; a sweep needs -m)")
    bad = re.match(r"Could not override '([^']+)'", text)
    if bad and config_name == "eval" and bad.group(1).split(".")[0] in ("model", "data"):
        if bad.group(1).split(".")[0] == "model":
            return ("eval.py evaluates the network saved in the checkpoint; a model setting would not change it: drop "
                    f"{bad.group(1)}=..., and to evaluate another network pass its own checkpoint (ckpt_path=...)")
        return (f"{bad.group(1)}: eval.py reads the checkpoint's own data set unless one is chosen: choose one "
                f"(data=mnist, data=fashion_mnist, ...) to change its settings, or use data_root=<folder> for the "
                f"checkpoint's data set in another folder")
    if bad:
        key = bad.group(1)
        tried = next((o for o in overrides if o.split("=", 1)[0] == key), f"{key}=<value>")
        close = _closest_key(key, config_dir, config_name, [o for o in overrides if o != tried])
        hint = f"did you mean {close}? " if close else ""
        return f"{key} is not a config key ({hint}use +{tried} to add a new key)"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def _closest_key(key: str, config_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """The key of the composed config (with the other overrides, else without any) closest to ``key``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for attempt in (overrides, []):
        try:
            GlobalHydra.instance().clear()
            with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
                cfg = compose(config_name, overrides=attempt, return_hydra_config=True)
            break
        except Exception:
            continue
    else:
        return None
    keys = set(_key_paths(OmegaConf.to_container(cfg, resolve=False)))
    parent, _, last = key.rpartition(".")
    if parent in keys or not parent:  # a misspelled last part: the closest key beside it
        siblings = sorted(k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent)
        close = difflib.get_close_matches(last, siblings, n=1, cutoff=0.6)
        return f"{parent + '.' if parent else ''}{close[0]}" if close else None
    same_depth = sorted(k for k in keys if k.count(".") == key.count("."))  # a misspelled parent
    close = difflib.get_close_matches(key, same_depth, n=1, cutoff=0.85)
    return close[0] if close else None


def _key_paths(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}{k}"
            yield path
            yield from _key_paths(v, path + ".")


def _resume_argv(argv: list[str], config_dir: Path) -> None:
    """``python train.py ckpt_path=<run>/checkpoints/last.ckpt [overrides]``: put the run's own
    overrides before the command line's in ``argv`` (in place), and say so. Sweeps, ``--help`` and
    checkpoints outside a run folder are left alone."""
    args = _parse_args(argv)
    if args is None or not args.overrides or args.multirun or args.help or args.hydra_help or args.info \
            or args.shell_completion or getattr(args, "experimental_rerun", None):
        return
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        given = OverridesParser.create().parse_overrides(list(args.overrides))
    except Exception:  # Hydra reports the override it cannot parse
        return
    ckpt = next((o.value() for o in given if o.key_or_group == "ckpt_path" and not o.is_delete()), None)
    if not isinstance(ckpt, str) or not ckpt:
        return
    run = run_folder_of(ckpt)
    if run is None:
        return
    try:
        saved = [str(s) for s in OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "overrides.yaml")) or []]
        groups = {d.name for d in config_dir.iterdir() if d.is_dir()} if config_dir.is_dir() else set()
        merged = resume_overrides(saved, list(args.overrides), groups)
    except Exception as e:  # an unreadable overrides.yaml: resume with the command line only
        print(f"note: {run / '.hydra' / 'overrides.yaml'} could not be read ({type(e).__name__}); "
              f"resuming with the command line's overrides only", file=sys.stderr)
        return
    n = len(args.overrides)
    start = next((i for i in range(1, len(argv) - n + 1) if argv[i:i + n] == list(args.overrides)), None)
    if start is None:  # pragma: no cover  (argparse keeps the overrides together, in order)
        return
    argv[start:start + n] = merged
    kept = [s for s in saved if s in merged[: len(merged) - n]]
    print(f"resuming {run} with its own overrides{': ' + ' '.join(kept) if kept else ' (none)'}; "
          f"the command line's apply on top", file=sys.stderr)
