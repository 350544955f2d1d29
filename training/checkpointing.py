"""Train-state checkpoints: safetensors + JSON, never pickle; atomic, completion marker last.

Layout of ``OUT/checkpoints/step_NNNNNNN/``:

- ``model.safetensors`` — weights + ModelConfig, written by ``dynet_model.checkpoint.save_model`` so
  evaluate/restore can read it alone;
- ``optim.safetensors`` — every optimizer-state tensor, flattened as ``optim.<param index>.<name>``,
  plus the torch RNG state(s) as ``rng.torch`` / ``rng.cuda.<i>`` and numpy's MT19937 key as ``rng.numpy``;
- ``state.json`` — the non-tensor parts: step, optimizer param groups and scalar state, python / numpy
  RNG scalars, loop counters, the model config and whatever the caller passes as ``extra``;
- ``COMPLETE`` — the marker, written last.

The folder is written as ``.step_NNNNNNN.tmp-*`` and renamed into place, so a crash never leaves a
half checkpoint that looks complete. Only the newest ``keep_last`` complete checkpoints are kept.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from common.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step_(\d{7,})$")
SaveModelFn = Callable[[Path, torch.nn.Module, Any, dict], None]


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def _default_save_model(path: Path, model: torch.nn.Module, model_config: Any, metadata: dict) -> None:
    from dynet_model.checkpoint import (
        save_model,  # the one writer of model files (issue 2)
    )

    save_model(path, model, model_config, metadata=metadata)


# ---- optimizer state <-> (tensors, json) -------------------------------------------------------

def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten ``optimizer.state_dict()`` into safetensors-ready tensors and a JSON-able dict."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalar_state": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta.get("scalar_state", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---- RNG state --------------------------------------------------------------------------------

def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    """Global torch / CUDA / numpy / python RNG states as (tensors, json)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, pystate, gauss_next = random.getstate()
    meta = {"numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(pystate), "gauss_next": gauss_next}}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    npm = meta["numpy"]
    np.random.set_state((npm["name"], tensors["rng.numpy"].numpy().astype(np.uint32), npm["pos"],
                         npm["has_gauss"], npm["cached_gaussian"]))
    py = meta["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


# ---- checkpoint folders -----------------------------------------------------------------------

def list_checkpoints(ckpt_root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (marker present) under ``ckpt_root``, oldest first."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / MARKER).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    found = list_checkpoints(ckpt_root)
    return found[-1][1] if found else None


def save_checkpoint(ckpt_root: str | Path, *, step: int, model: torch.nn.Module, model_config: Any,
                    optimizer: torch.optim.Optimizer, extra: dict | None = None, keep_last: int = 3,
                    save_model: SaveModelFn | None = None) -> Path:
    """Write ``ckpt_root/step_NNNNNNN/`` atomically and prune to the newest ``keep_last``."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        config_dict = model_config.to_dict() if hasattr(model_config, "to_dict") else model_config
        (save_model or _default_save_model)(tmp / "model.safetensors", model, model_config,
                                            {"step": str(step), "kind": "train_state"})
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        rng_tensors, rng_meta = capture_rng()
        save_file({**opt_tensors, **rng_tensors}, str(tmp / "optim.safetensors"), metadata={"step": str(step)})
        state = {"step": step, "optimizer": opt_meta, "rng": rng_meta, "model_config": config_dict,
                 "extra": extra or {}}
        atomic_write_json(tmp / "state.json", state)
        atomic_write_text(tmp / MARKER, f"{step}\n")
        if final.exists():  # a re-run reached the same step: replace it
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(root, keep_last)
    log.info("checkpoint written: %s", final)
    return final


def prune_checkpoints(ckpt_root: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints, and stale temp folders."""
    root = Path(ckpt_root)
    complete = list_checkpoints(root)
    if keep_last > 0:
        for _, path in complete[:-keep_last]:
            shutil.rmtree(path, ignore_errors=True)
    for child in root.iterdir():
        if child.name.startswith(".step_") and ".tmp-" in child.name:
            shutil.rmtree(child, ignore_errors=True)


def _same_model_config(current: Any, stored: Any) -> bool:
    """True when ``stored`` is an older spelling of ``current`` (e.g. DSRIR saved as a ModelConfig)."""
    from dynet_model.config import config_from_dict

    try:
        return isinstance(stored, dict) and config_from_dict(stored).to_dict() == current
    except (TypeError, ValueError):
        return False


def load_checkpoint(ckpt_dir: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    model_config: Any = None, restore_global_rng: bool = True) -> dict:
    """Load weights (strict), optimizer state and RNG states; return ``state.json`` as a dict.

    When ``model_config`` is given it must equal the one stored in the checkpoint.
    """
    ckpt = Path(ckpt_dir)
    if not (ckpt / MARKER).is_file():
        raise FileNotFoundError(f"{ckpt} is not a complete checkpoint (no {MARKER} marker)")
    state = json.loads((ckpt / "state.json").read_text())
    if model_config is not None:
        current = model_config.to_dict() if hasattr(model_config, "to_dict") else model_config
        stored = state.get("model_config")
        if json.loads(json.dumps(current)) != stored and not _same_model_config(current, stored):
            raise ValueError(f"{ckpt}: model config differs from the checkpoint's\n  now:  {current}\n  ckpt: {stored}")
    weights = load_file(str(ckpt / "model.safetensors"))
    device = next(iter(model.state_dict().values())).device if model.state_dict() else "cpu"
    model.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=True)
    tensors = load_file(str(ckpt / "optim.safetensors"))
    if optimizer is not None:
        optimizer_from_tensors(optimizer, tensors, state["optimizer"])
    if restore_global_rng:
        restore_rng(tensors, state["rng"])
    return state
