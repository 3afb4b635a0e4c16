"""What a resumed run must keep: the run folder and overrides of a checkpoint
(:func:`run_folder_of`, :func:`resume_overrides`), the model and data split of its config
(:func:`check_resume_config`) and weights that load into the model the config builds
(:func:`check_resume_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, ListConfig, OmegaConf

from models.checks import is_number
from models.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # pragma: no cover  (Lightning is imported only where a run needs it)
    import lightning as L


def run_folder_of(ckpt_path: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/<file>.ckpt`` with
    ``<run>/.hydra/overrides.yaml``), or None."""
    path = Path(ckpt_path).expanduser()
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra" / "overrides.yaml").is_file():
        return run.resolve()
    return None


def resume_overrides(saved: list[str], given: list[str], groups: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The overrides of a resumed run: the run's own (``saved``, as in its ``.hydra/overrides.yaml``)
    without its old ``ckpt_path``, then the command line's (``given``), which Hydra applies later,
    so they win. A saved override of a key the command line sets again is dropped, unless it added
    the key (``+key=...``) and the command line only changes it; one under a config group the
    command line chooses anew (``groups``: e.g. the run's ``model.model_kwargs...`` when the command
    line says ``model=...``) is dropped too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parser = OverridesParser.create()
    new = {o.key_or_group: o for o in parser.parse_overrides(list(given))}
    chosen = [k for k, o in new.items() if k in groups and o.type == OverrideType.CHANGE]
    kept = []
    for text, o in zip(saved, parser.parse_overrides(list(saved))):
        key = o.key_or_group
        if key == "ckpt_path" or any(key.startswith(g + ".") for g in chosen):
            continue
        if key in new and not (o.type == OverrideType.ADD and new[key].type == OverrideType.CHANGE):
            continue
        kept.append(text)
    return kept + list(given)


# settings of the model that change nothing it computes (speed only): may change on resume
RESUME_FREE_MODEL_KEYS = ("compile", "channels_last")
RESUME_DATA_KEYS = ("val_size", "split_seed", "train_subset")


def check_resume_config(cfg: DictConfig, ckpt: dict, ckpt_path: str | os.PathLike) -> None:
    """Refuse to resume ``ckpt`` with a config whose model (``model.*``: the network, its settings,
    the optimizer and the schedule) or data split (the data set, ``data.val_size``,
    ``data.split_seed``, ``data.train_subset``) differs from the checkpoint's: a
    :class:`ConfigError` naming each difference and what to do."""
    diffs = []
    hp = _plain(ckpt.get("hyper_parameters") or {})
    model_cfg = _plain(cfg.get("model")) or {}
    for key, value in model_cfg.items():
        if key.startswith("_") or key in RESUME_FREE_MODEL_KEYS or key not in hp:
            continue
        diffs += _differences(f"model.{key}", value, hp[key])
    state = next((v for v in ckpt.values() if isinstance(v, dict) and {"target", "hparams"} <= v.keys()), None)
    data_cfg = _plain(cfg.get("data")) or {}
    if state is not None and data_cfg:
        if data_cfg.get("_target_") and data_cfg["_target_"] != state["target"]:
            diffs.append(f"the data set is {data_cfg['_target_'].rsplit('.', 1)[-1]} here but "
                         f"{state['target'].rsplit('.', 1)[-1]} in the checkpoint")
        for key in RESUME_DATA_KEYS:
            if key in data_cfg and key in state["hparams"]:
                diffs += _differences(f"data.{key}", data_cfg[key], state["hparams"][key])
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(
            f"cannot resume {ckpt_path} with another model or data split: {shown}. A resumed run keeps the model, "
            f"optimizer and data split it was trained with: drop those overrides, or start a new run without ckpt_path"
        )


def _plain(value):
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _differences(name: str, here, there) -> list[str]:
    here, there = _plain(here), _plain(there)
    if isinstance(here, dict) and isinstance(there, dict):
        out = []
        for k in sorted(set(here) | set(there), key=str):
            if k in here and k in there:
                out += _differences(f"{name}.{k}", here[k], there[k])
            elif here.get(k) is not None or there.get(k) is not None:  # an added or dropped setting
                out.append(f"{name}.{k} is {here.get(k)!r} here but {there.get(k)!r} in the checkpoint")
        return out
    if here == there and type(here) is type(there) or (is_number(here) and is_number(there) and here == there):
        return []
    return [f"{name} is {here!r} here but {there!r} in the checkpoint"]


def check_resume_checkpoint(path, module: L.LightningModule, ckpt: dict | None = None) -> dict:
    """Read a checkpoint to resume ``module``'s training from (unless ``ckpt``, the checkpoint
    already read from ``path``, is given), and check that its weights load into this model
    (Lightning loads them again right after); a clear :class:`CheckpointError` for a missing,
    empty, corrupt or other model's checkpoint instead of a deep traceback."""
    from training.checkpoint import read_checkpoint  # torch: imported when a run resumes, not for --help

    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        saved, have = ckpt["state_dict"], module.state_dict()
        missing = [k for k in have if k not in saved]
        unexpected = [k for k in saved if k not in have]
        detail = [f"{len(missing)} weight(s) missing, e.g. {missing[0]}"] if missing else []
        detail += [f"{len(unexpected)} unexpected, e.g. {unexpected[0]}"] if unexpected else []
        detail += [ln.strip().rstrip(".") for ln in str(e).splitlines() if "size mismatch" in ln][:1]
        raise CheckpointError(
            f"cannot resume from {path}: it holds a {ckpt['hyper_parameters'].get('model')!r} model whose weights "
            f"do not fit the {module.hparams.get('model')!r} model this config builds "
            f"({'; '.join(detail) or str(e).splitlines()[0]}). Resume with the config the checkpoint was trained "
            f"with, or drop ckpt_path to start afresh."
        ) from None
    return ckpt
