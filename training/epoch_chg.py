"""Derive DSRIR's ``--epoch-chg`` from a target number of iterations per phase.

Formula (that of the official utils/get_epoch_chg.py): for phase ``i`` with batch size ``b_i`` and
target iterations ``I_i``, on a list of ``N`` training pairs,

    iterations per epoch  e_i = N / b_i               (``--drop-last``: floor(N / b_i))
    epochs in the phase   n_i = floor(I_i / e_i)
    epoch_chg[i]          = n_0 + ... + n_i           (cumulative)

The official defaults - 400K iterations split 128K / 112K / 96K / 64K over batch sizes 16 / 14 / 12 /
8, on the 15,144-pair all-in-one list - give 135 238 314 347. ``N`` comes from ``--num-images`` or
from counting the pairs of ``--list`` (a ``training.make_lists`` CSV).

    python -m training.epoch_chg --list datasets/train/train_all_in_one.csv
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.atomic import atomic_write_json
from common.cliconfig import parse_config


def derive_epoch_chg(num_images: int, iterations: tuple[int, ...], batch_sizes: tuple[int, ...],
                     *, drop_last: bool = False) -> tuple[int, ...]:
    if num_images <= 0:
        raise ValueError("num_images must be positive")
    if len(iterations) != len(batch_sizes) or not iterations:
        raise ValueError("iterations and batch sizes must be equally long and non-empty")
    chg, total = [], 0
    for iters, bs in zip(iterations, batch_sizes):
        per_epoch = (num_images // bs) if drop_last else num_images / bs
        if per_epoch <= 0:
            raise ValueError(f"{num_images} images give no full batch of {bs}")
        n = math.floor(iters / per_epoch)
        if n < 1:
            raise ValueError(f"{iters} iterations at batch {bs} is less than one epoch of {num_images} images")
        total += n
        chg.append(total)
    return tuple(chg)


@dataclass
class EpochChgConfig:
    """Print (and optionally save) --epoch-chg for DSRIR training from iterations per phase."""

    num_images: int | None = field(default=None, metadata={"help": "training pairs per epoch (or use --list)"})
    list: str | None = field(default=None, metadata={"help": "a training CSV list; its pairs give N"})
    iterations: tuple[int, ...] = field(default=(128_000, 112_000, 96_000, 64_000), metadata={
        "help": "target iterations of each phase (official: 400K in all)"})
    batch_size: tuple[int, ...] = field(default=(16, 14, 12, 8), metadata={"help": "batch size of each phase"})
    drop_last: bool = field(default=False, metadata={
        "help": "count whole batches per epoch (floor(N/b)); the official formula uses N/b"})
    out: str | None = field(default=None, metadata={"help": "also write the result as JSON here"})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(EpochChgConfig, argv)
    n = cfg.num_images
    if cfg.list:
        from training.make_lists import read_pair_list

        n = len(read_pair_list(Path(cfg.list)))
    if not n:
        print("ERROR: give --num-images or --list", file=sys.stderr)
        return 2
    chg = derive_epoch_chg(n, tuple(cfg.iterations), tuple(cfg.batch_size), drop_last=cfg.drop_last)
    print("--epoch-chg " + " ".join(map(str, chg)))
    if cfg.out:
        atomic_write_json(cfg.out, {"num_images": n, "iterations": list(cfg.iterations),
                                    "batch_size": list(cfg.batch_size), "drop_last": cfg.drop_last,
                                    "epoch_chg": list(chg)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
