"""DSRIR training data: CSV pair lists -> random patches, on the progressive schedule, resumable.

:class:`PairPatchDataset` is indexed by a key ``(epoch, item, patch_size)``; everything random about
a sample (crop position, flip / rotation, noise level and noise) is drawn from a generator seeded by
``(seed, epoch, item)``, so a sample does not depend on the worker that builds it nor on where a
run was resumed. Per sample (as the official utils/dataset_RGB.py):

* a pair whose target and degraded paths are equal is a denoising pair: the input is
  ``uint8(clip(gt + N(0, 1) * sigma, 0, 255))`` with ``sigma`` uniform in ``0..sigma_max`` (55);
  the official code adds the noise to the whole image before cropping, we add it to the crop
  (the same distribution);
* images smaller than the patch are reflect-padded; the crop position is uniform;
* augmentation ``a`` uniform in ``0..8`` (as the official ``randint(0, 8)``): 0 and 8 identity,
  1 / 2 flips, 3-5 rotations by 90/180/270 degrees, 6 / 7 flip + rotation.

:class:`StepPlan` maps global steps onto (epoch, batch-in-epoch) for a
:class:`~training.dsrir.schedule.ProgressiveSchedule`: epoch ``e`` of phase ``i`` has
``floor(N / batch_i)`` steps (last partial batch dropped, as ``drop_last=True``), and its order is a
permutation seeded by ``(seed, e)``. :func:`progressive_batches` is the loop's data factory: it
builds one ``DataLoader`` per phase (rebuilt whenever the patch / batch size changes) starting at
any step.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training.augment import DSRIR_MODES, add_gaussian_noise, orient_mode
from training.dsrir.schedule import ProgressiveSchedule
from training.make_lists import PairEntry
from training.restoration_data import read_rgb

log = logging.getLogger(__name__)


def _augment(x: np.ndarray, a: int) -> np.ndarray:
    """HxWxC; the official mode numbering (flip(1) = vertical, flip(2) = horizontal on CHW)."""
    return orient_mode(x, a, DSRIR_MODES)


def _pad_to(x: np.ndarray, ps: int) -> np.ndarray:
    ph, pw = max(0, ps - x.shape[0]), max(0, ps - x.shape[1])
    if not (ph or pw):
        return x
    mode = "reflect" if ph < x.shape[0] and pw < x.shape[1] else "edge"
    return np.pad(x, ((0, ph), (0, pw), (0, 0)), mode=mode)


def _to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().div_(255)


class PairPatchDataset(Dataset):
    def __init__(self, *, entries: Sequence[PairEntry], train_dir: str | Path, seed: int = 0,
                 sigma_max: int = 55) -> None:
        if not entries:
            raise ValueError("empty training list")
        self.entries, self.root, self.seed, self.sigma_max = list(entries), Path(train_dir), seed, sigma_max

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        epoch, item, ps = key
        rng = np.random.default_rng([self.seed, epoch, item])
        e = self.entries[item]
        gt = read_rgb(self.root / e.target)
        synth = e.target == e.degraded
        lq = gt if synth else read_rgb(self.root / e.degraded)
        if lq.shape != gt.shape:
            raise ValueError(f"list line {e.line}: {e.degraded} is {lq.shape[:2]} but {e.target} is {gt.shape[:2]}")
        gt, lq = _pad_to(gt, ps), _pad_to(lq, ps)
        r = int(rng.integers(0, gt.shape[0] - ps + 1))
        c = int(rng.integers(0, gt.shape[1] - ps + 1))
        gt, lq = gt[r:r + ps, c:c + ps], lq[r:r + ps, c:c + ps]
        if synth:
            lq = add_gaussian_noise(gt, float(rng.integers(0, self.sigma_max + 1)), rng)
        a = int(rng.integers(0, 9))
        return {"lq": _to_tensor(_augment(lq, a)), "gt": _to_tensor(_augment(gt, a))}


@dataclass(frozen=True)
class StepPlan:
    schedule: ProgressiveSchedule
    num_items: int

    def steps_in_epoch(self, epoch: int) -> int:
        return self.num_items // self.schedule.batch_size(epoch)

    @functools.cached_property
    def epoch_starts(self) -> list[int]:
        """Global step at which each epoch starts (index e - 1), plus the total at the end."""
        starts, total = [], 0
        for e in range(1, self.schedule.total_epochs + 1):
            starts.append(total)
            total += self.steps_in_epoch(e)
        return starts + [total]

    @property
    def total_steps(self) -> int:
        return self.epoch_starts[-1]

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within it) of global step ``step``."""
        if not 0 <= step < self.total_steps:
            raise ValueError(f"step {step} outside 0..{self.total_steps - 1}")
        starts = self.epoch_starts
        e = bisect.bisect_right(starts, step) - 1
        return e + 1, step - starts[e]

    def validate(self) -> None:
        if self.num_items < max(self.schedule.batch_sizes):
            raise ValueError(f"{self.num_items} training pairs make no full batch of {max(self.schedule.batch_sizes)}")


class _PhaseKeys:
    """Batch sampler: the key batches of one phase, from (epoch, batch) on."""

    def __init__(self, plan: StepPlan, seed: int, epoch: int, first_batch: int) -> None:
        self.plan, self.seed, self.epoch, self.first = plan, seed, epoch, first_batch

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        s = self.plan.schedule
        phase, first = s.phase(self.epoch), self.first
        for e in range(self.epoch, s.total_epochs + 1):
            if s.phase(e) != phase:
                return
            bs, ps = s.batch_size(e), s.patch_size(e)
            order = np.random.default_rng([self.seed, e]).permutation(self.plan.num_items)
            for b in range(first, self.plan.steps_in_epoch(e)):
                yield [(e, int(i), ps) for i in order[b * bs:(b + 1) * bs]]
            first = 0


def progressive_batches(dataset: PairPatchDataset, plan: StepPlan, *, start_step: int, seed: int,
                        workers: int, pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Batches for global steps ``start_step, start_step + 1, ...`` until the schedule ends."""
    if start_step >= plan.total_steps:
        return
    epoch, batch = plan.locate(start_step)
    while epoch <= plan.schedule.total_epochs:
        s = plan.schedule
        log.info("epoch %d: patch %d, batch %d (data loader built for phase %d)", epoch, s.patch_size(epoch),
                 s.batch_size(epoch), s.phase(epoch))
        loader = DataLoader(dataset, batch_sampler=_PhaseKeys(plan, seed, epoch, batch), num_workers=workers,
                            pin_memory=pin_memory)
        yield from loader
        phase = s.phase(epoch)
        nxt = [e for e in range(epoch, s.total_epochs + 1) if s.phase(e) != phase]
        if not nxt:
            return
        epoch, batch = nxt[0], 0
