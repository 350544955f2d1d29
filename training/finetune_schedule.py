"""Epoch <-> step bookkeeping of the fine-tuning schedule (the shared loop is step-based).

The epoch itself (how many samples, from which task) is :mod:`training.task_mix`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    max_steps: int  # the cosine reaches min_lr here
    warmup_steps: int
    stop_at_step: int | None  # training stops here (None = at max_steps)
    steps_per_epoch: int | None  # None for a step-based schedule


def resolve_schedule(*, max_steps: int, warmup_steps: int, stop_at_step: int | None, epochs: int,
                     warmup_epochs: int, stop_epoch: int | None, epoch_samples: int, global_batch: int) -> Schedule:
    """Step-based when ``max_steps > 0``, else epochs x ceil(epoch_samples / global_batch) steps."""
    if max_steps > 0:
        if warmup_steps >= max_steps:
            raise ValueError(f"--warmup-steps {warmup_steps} must be < --max-steps {max_steps}")
        return Schedule(max_steps, warmup_steps, stop_at_step, None)
    if epochs <= 0 or epoch_samples <= 0:
        raise ValueError("give --max-steps > 0, or --epochs > 0 with a non-empty training set")
    spe = max(1, math.ceil(epoch_samples / global_batch))
    if warmup_epochs >= epochs:
        raise ValueError(f"--warmup-epochs {warmup_epochs} must be < --epochs {epochs}")
    stop = stop_epoch * spe if stop_epoch and stop_epoch < epochs else None
    return Schedule(epochs * spe, warmup_epochs * spe, stop, spe)
