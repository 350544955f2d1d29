"""How fine-tuning samples are spread over tasks: the official epoch composition, or uniform.

``official`` (default) reproduces PromptIR/DyNet ``utils/dataset_utils.py``: one epoch is the
concatenation of one list per σ (each the clean denoise images ×3), Rain100L ×120 and the OTS pairs
×1 — with the official sets 3 × 15,432 + 24,000 + 72,135 = 142,431 samples, i.e. denoise 32.5 %,
derain 16.9 %, dehaze 50.6 % — visited in a fresh random order every epoch (a shuffled DataLoader).
The 5-task benchmark adds GoPro ×5 and LOL-v1 ×20 (AdaIR's ``dataset_utils.py``). The repeats are
applied to whatever the prepared sets contain, so a partial download keeps the official *recipe*
(and :func:`official_composition` records the resulting mix). Each list entry fixes its σ, as in
the official lists.

``uniform`` draws the task uniformly per sample, then a file (and σ) uniformly: the behaviour before
this option existed; derain then gets ≈ 2× its official exposure and dehaze ≈ 0.66×.

Both are pure functions of ``(seed, sample index)``, so resumed runs see the same samples.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIXES = ("official", "uniform")
# times each file appears in one epoch (denoise: per σ list); deblur/lowlight from AdaIR's 5-task code
OFFICIAL_REPEATS = {"denoise": 3, "derain": 120, "dehaze": 1, "deblur": 5, "lowlight": 20}


@dataclass(frozen=True)
class Block:
    """One concatenated list of the epoch: ``items`` files, each ``repeat`` times (one σ for denoise)."""
    task: str
    items: int
    repeat: int
    sigma: float | None = None

    @property
    def samples(self) -> int:
        return self.items * self.repeat


@dataclass(frozen=True)
class EpochComposition:
    mix: str
    blocks: tuple[Block, ...]

    @property
    def total(self) -> int:
        return sum(b.samples for b in self.blocks)

    def task_samples(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.blocks:
            out[b.task] = out.get(b.task, 0) + b.samples
        return out

    def fractions(self) -> dict[str, float]:
        if self.mix == "uniform":
            tasks = list(dict.fromkeys(b.task for b in self.blocks))
            return {t: 1.0 / len(tasks) for t in tasks}
        total = self.total
        return {t: n / total for t, n in self.task_samples().items()}

    def to_dict(self) -> dict:
        """The record written to the run folder (``epoch_composition.json``)."""
        return {"mix": self.mix, "epoch_samples": self.total, "task_fractions": self.fractions(),
                "task_samples_per_epoch": self.task_samples() if self.mix == "official" else None,
                "blocks": [{"task": b.task, "sigma": b.sigma, "files": b.items, "repeat": b.repeat,
                            "samples": b.samples} for b in self.blocks],
                "repeats": {t: OFFICIAL_REPEATS[t] for t in dict.fromkeys(b.task for b in self.blocks)}}


def official_composition(sizes: Mapping[str, int], tasks: Sequence[str], sigmas: Sequence[float],
                         mix: str = "official") -> EpochComposition:
    """The official epoch for these tasks and set sizes (the same blocks describe ``uniform``'s epoch length)."""
    if mix not in MIXES:
        raise ValueError(f"--task-mix must be one of {', '.join(MIXES)}, got {mix!r}")
    blocks: list[Block] = []
    for task in tasks:
        if task == "denoise":
            blocks += [Block("denoise", sizes["denoise"], OFFICIAL_REPEATS["denoise"], float(s)) for s in sigmas]
        else:
            blocks.append(Block(task, sizes[task], OFFICIAL_REPEATS[task]))
    empty = [b.task for b in blocks if b.items <= 0]
    if empty:
        raise ValueError(f"task(s) {sorted(set(empty))} have no training files")
    return EpochComposition(mix=mix, blocks=tuple(blocks))


class OfficialMix:
    """Sample ``i`` = entry ``perm_e[i mod N]`` of epoch ``e = i // N`` (N = epoch samples)."""

    def __init__(self, comp: EpochComposition, seed: int) -> None:
        self.comp, self.seed = comp, int(seed)
        self.starts = np.cumsum([0] + [b.samples for b in comp.blocks]).tolist()
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:  # cached per worker: one permutation per epoch
            self._perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.comp.total)
            self._epoch = epoch
        return self._perm

    def draw(self, index: int, rng: np.random.Generator) -> tuple[str, int, float | None]:
        epoch, pos = divmod(int(index), self.comp.total)
        k = int(self._permutation(epoch)[pos])
        b = bisect.bisect_right(self.starts, k) - 1
        block = self.comp.blocks[b]
        return block.task, (k - self.starts[b]) % block.items, block.sigma


class UniformMix:
    """Task uniform over ``tasks``, then a file uniformly; σ is drawn later by the dataset."""

    def __init__(self, tasks: Sequence[str], sizes: Mapping[str, int]) -> None:
        self.tasks, self.sizes = list(tasks), dict(sizes)

    def draw(self, index: int, rng: np.random.Generator) -> tuple[str, int, float | None]:
        task = self.tasks[int(rng.integers(len(self.tasks)))]
        return task, int(rng.integers(self.sizes[task])), None


def make_mix(comp: EpochComposition, *, tasks: Sequence[str], sizes: Mapping[str, int], seed: int):
    return OfficialMix(comp, seed) if comp.mix == "official" else UniformMix(tasks, sizes)
