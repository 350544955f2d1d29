"""FLOP counting with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no compute).

FlopCounterMode counts 2 FLOPs per multiply-add. "Convolution FLOPs" = the convolution ops only
(what the DyNet / PromptIR papers report as GFLOPs); "total" adds the matrix products (the
attention q.k^T and attn.v, and the prompt generators' linear layers).
"""

from __future__ import annotations

import math
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


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _tensors(item)]
    return []


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Input gradient + weight gradient, each costing what the forward convolution costs.

    torch's own formula ignores ``groups`` and so counts a depthwise convolution's backward
    ``channels`` times too high (the forward formula is right: the weight shape carries C_in/groups).
    """
    forward = 2 * math.prod(w_shape) * grad_out_shape[0] * math.prod((x_shape if transposed else grad_out_shape)[2:])
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_train_flops(cfg: AnyConfig, height: int, width: int | None = None, *, batch: int = 1,
                      **forward_kwargs) -> int:
    """FLOPs of one training step's forward + backward (all ops, 2 per multiply-add) on the meta device.

    This is the numerator of the model-FLOPs utilisation (MFU) the trainers log: exact for our graph
    (the first convolution's input gradient, never needed, is not counted), with the optimizer
    update and the loss left out as usual.
    """
    width = height if width is None else width
    with torch.device("meta"):
        model = build_model(cfg).train()
        x = torch.empty(batch, cfg.in_channels, height, width)
    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})
    with counter:
        outputs = _tensors(model(x, **forward_kwargs))
        torch.stack([o.float().sum() for o in outputs]).sum().backward()
    return int(counter.get_total_flops())
