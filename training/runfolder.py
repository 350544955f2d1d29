"""The stage contract for a trainer's run folder (pretrain, finetune, train_dsrir).

A run folder is written by one trainer at a time and continues only what produced it:

- into a folder that already holds a run's outputs, a trainer needs ``--resume`` (continue) or
  ``--overwrite`` (discard them and start again); otherwise it exits 2 — a fresh start beside old
  checkpoints would make a later ``--resume`` continue from the other run's weights;
- ``--resume`` with other content-deciding settings exits 2 naming each one (``common.stagefolder``),
  unless ``--overwrite`` (then the old outputs are cleared and training starts at step 0);
- the folder is locked for the whole run; a second trainer exits 2 at once naming the holder.

Under ``torchrun`` only rank 0 takes the lock and checks the settings; its verdict is broadcast so
that the other ranks stop too instead of waiting in the first collective.

Settings are the trainer's config minus :data:`NOT_SETTINGS` (paths of the run itself, throughput,
logging, devices, stop points) — a field added to a config counts as content-deciding by default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from common.stagefolder import STAGE_FILE, StageRefused, check_settings, folder_lock
from training.distributed import DistEnv

# Fields that never decide what a run folder contains: the run's own location and control flags,
# throughput (worker counts, threads, devices, compilation, memory layout), logging / progress,
# checkpoint retention, validation (it reads the weights, never writes them) and stop points
# (a run stopped early is continued with --resume and another stop point).
NOT_SETTINGS = frozenset({
    "out", "resume", "overwrite", "config",
    "workers", "num_workers", "threads", "device", "compile", "channels_last",
    "progress", "tensorboard", "log_every", "keep_last", "max_consecutive_nonfinite",
    "val_every", "val_samples", "val_shards", "val_sots", "val_rain100l", "val_bsd68", "val_gopro", "val_lol",
    "val_max_images",
    "stop_at_step", "stop_epoch",
})

# Everything a trainer writes into its run folder (cleared by --overwrite; the lock files stay) ...
RUN_OUTPUTS = ("checkpoints", "log.jsonl", "tb", "val", "model_final.safetensors", "config.yaml",
               "finetune_config.yaml", "finetune_data.json", "epoch_composition.json",
               "model_best.safetensors", "model_best.json", STAGE_FILE)
# ... and the ones that show training happened (a run that failed at start-up leaves none of them).
TRAINED_OUTPUTS = ("checkpoints", "log.jsonl", "model_final.safetensors")


def run_settings(cfg: Any, *, also_exclude: Iterable[str] = (), keep: Iterable[str] = ()) -> dict[str, Any]:
    """The content-deciding settings of a trainer config (a dataclass).

    ``keep`` names fields of :data:`NOT_SETTINGS` that do decide this trainer's outputs (e.g. the
    validation that picks DSRIR's ``model_best``).
    """
    skip = (NOT_SETTINGS - set(keep)) | set(also_exclude)
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}


def has_trained(folder: Path) -> bool:
    """True when ``folder`` holds the outputs of training steps (log lines, checkpoints, a final model)."""
    return any((folder / name).exists() for name in TRAINED_OUTPUTS)


def clear_run_outputs(folder: Path) -> None:
    """Remove every output of an earlier run (``--overwrite``)."""
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _check(folder: Path, stage: str, settings: dict, *, resume: bool, overwrite: bool) -> None:
    """Rank 0's verdict (raises :class:`StageRefused`); call while holding the folder lock."""
    if not resume:
        if has_trained(folder) and not overwrite:
            raise StageRefused(f"{folder} already holds a training run; pass --resume to continue it, "
                               "--overwrite to discard its outputs and start again, or choose another --out")
        clear_run_outputs(folder)  # a fresh start: nothing of a run that never trained survives either
    check_settings(folder, stage, settings, overwrite=overwrite, clear=clear_run_outputs)


def _agree(env: DistEnv, refused: bool) -> bool:
    """Broadcast rank 0's verdict (True = refused) to every rank; a no-op in one process."""
    if not env.distributed:
        return refused
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if refused else 0.0], device=env.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


@contextlib.contextmanager
def open_run_folder(out: str | Path, stage: str, settings: dict[str, Any], *, resume: bool, overwrite: bool,
                    env: DistEnv | None = None) -> Iterator[None]:
    """Lock, check and record ``out`` for a training run (rank 0); every rank raises on a refusal."""
    env = env or DistEnv()
    folder = Path(out)
    if not env.is_main:
        if _agree(env, False):
            raise StageRefused(f"rank 0 refused to write {folder} (its message says why)")
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(folder, stage))
            _check(folder, stage, settings, resume=resume, overwrite=overwrite)
        except BaseException:  # refused or failed: the other ranks must not wait for a verdict
            _agree(env, True)
            raise
        _agree(env, False)
        yield
