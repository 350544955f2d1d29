"""FLOP counting with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no compute).

FlopCounterMode counts 2 FLOPs per multiply-add. "Convolution FLOPs" = the convolution ops only
(what the DyNet / PromptIR papers report as GFLOPs); "total" adds the matrix products (the
attention q.k^T and attn.v, and the prompt generators' linear layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .build import build_model
from .config import AnyConfig


@dataclass
class FlopCount:
    conv: int
    total: int
    by_op: dict[str, int]

    @property
    def conv_g(self) -> float:
        return self.conv / 1e9

    @property
    def total_g(self) -> float:
        return self.total / 1e9


def count_flops(cfg: AnyConfig, height: int = 224, width: int | None = None,
                reuse: Sequence[int] | None = None, batch: int = 1) -> FlopCount:
    """FLOPs of one forward pass of ``cfg``'s network on a ``batch x 3 x height x width`` input."""
    width = height if width is None else width
    with torch.device("meta"):
        model = build_model(cfg).eval()
        x = torch.empty(batch, cfg.in_channels, height, width)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, reuse=reuse) if reuse is not None else model(x)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    conv = sum(n for op, n in by_op.items() if "convolution" in op)
    return FlopCount(conv=conv, total=int(counter.get_total_flops()), by_op=by_op)
