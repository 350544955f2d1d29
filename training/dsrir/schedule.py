"""DSRIR's progressive training schedule (official train.py): patch / batch size and LR per epoch.

Epochs are 1-based, as in the official code. Phase ``i`` covers epochs
``epoch_chg[i-1] + 1 .. epoch_chg[i]`` (phase 0 starts at epoch 1) and trains on ``patch_sizes[i]``
crops in batches of ``batch_sizes[i]``; the dataloader is rebuilt on the first epoch of every phase
(:meth:`ProgressiveSchedule.rebuilds_loader`). Defaults: patches 128/160/192/256, batches
16/14/12/8, changes after epochs 135/238/314/347 (347 epochs in all).

Learning rate per epoch (:meth:`ProgressiveSchedule.lr`): linear warm-up ``base * e / warmup`` for
``e <= warmup`` (3 epochs), then cosine from ``base`` to ``min_lr`` over the remaining epochs
(``CosineAnnealingLR(T_max = total - warmup)``), the behaviour of the official GradualWarmupScheduler
(multiplier 1) + CosineAnnealingLR, stepped once per epoch.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressiveSchedule:
    patch_sizes: tuple[int, ...] = (128, 160, 192, 256)
    batch_sizes: tuple[int, ...] = (16, 14, 12, 8)
    epoch_chg: tuple[int, ...] = (135, 238, 314, 347)
    base_lr: float = 2e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 3

    def __post_init__(self) -> None:
        n = len(self.epoch_chg)
        if not n or len(self.patch_sizes) != n or len(self.batch_sizes) != n:
            raise ValueError(f"patch_sizes {self.patch_sizes}, batch_sizes {self.batch_sizes} and "
                             f"epoch_chg {self.epoch_chg} must be non-empty and equally long")
        if any(b <= a for a, b in zip((0,) + tuple(self.epoch_chg), self.epoch_chg)):
            raise ValueError(f"epoch_chg {self.epoch_chg} must be positive and strictly increasing")
        if min(self.patch_sizes) <= 0 or min(self.batch_sizes) <= 0:
            raise ValueError("patch and batch sizes must be positive")
        if not 0 <= self.warmup_epochs < self.total_epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must be in [0, {self.total_epochs})")

    @property
    def total_epochs(self) -> int:
        return self.epoch_chg[-1]

    def phase(self, epoch: int) -> int:
        if not 1 <= epoch <= self.total_epochs:
            raise ValueError(f"epoch {epoch} outside 1..{self.total_epochs}")
        return bisect.bisect_left(self.epoch_chg, epoch)

    def patch_size(self, epoch: int) -> int:
        return self.patch_sizes[self.phase(epoch)]

    def batch_size(self, epoch: int) -> int:
        return self.batch_sizes[self.phase(epoch)]

    def rebuilds_loader(self, epoch: int) -> bool:
        """True on the first epoch of a phase (epoch 1 and ``epoch_chg[i] + 1``)."""
        p = self.phase(epoch)
        return epoch == (1 if p == 0 else self.epoch_chg[p - 1] + 1)

    def lr(self, epoch: int) -> float:
        self.phase(epoch)  # range check
        if epoch <= self.warmup_epochs:
            return self.base_lr * epoch / self.warmup_epochs
        t, span = epoch - self.warmup_epochs, self.total_epochs - self.warmup_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / span)) / 2
