"""channels_last for networks that also hold non-4-D tensors.

``model.to(memory_format=torch.channels_last)`` raises on DyNet/PromptIR: the prompt generators'
component bank is a 5-D parameter (1 x length x dim x size x size) and channels_last is defined for
4-D tensors only. Convolution weights and feature maps are what benefit (cuDNN's NHWC kernels,
bf16 tensor cores), so we convert exactly the 4-D parameters and buffers, in place (the Parameter
objects stay the same, so an optimizer built before or after still points at them), and leave every
other tensor as it is.
"""

from __future__ import annotations

import torch
from torch import nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert every 4-D parameter/buffer of ``model`` to channels_last in place; returns ``model``."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
        for module in model.modules():
            for name, buf in module.named_buffers(recurse=False):
                if buf is not None and buf.dim() == 4:
                    setattr(module, name, buf.contiguous(memory_format=torch.channels_last))
    return model


def to_contiguous(model: nn.Module) -> nn.Module:
    """Undo :func:`to_channels_last` (every parameter/buffer back to the default contiguous layout)."""
    with torch.no_grad():
        for param in model.parameters():
            param.data = param.data.contiguous()
        for module in model.modules():
            for name, buf in module.named_buffers(recurse=False):
                if buf is not None:
                    setattr(module, name, buf.contiguous())
    return model


def is_channels_last(model: nn.Module) -> bool:
    """True when every 4-D parameter is channels_last (and there is at least one)."""
    four_d = [p for p in model.parameters() if p.dim() == 4]
    return bool(four_d) and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)


def input_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D batch in channels_last (other ranks unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def resolve_channels_last(flag: bool | None, device: str | torch.device) -> bool:
    """``--channels-last`` tri-state: None (auto) = on for CUDA, off elsewhere.

    CUDA: cuDNN's NHWC kernels with bf16 tensor cores (issue 15's GPU figures use channels_last;
    benchmarks/gpu_suite.sh measures training with and without it). CPU: paper-size DyNet-S inference
    at 96² took 0.92x the contiguous time in one run on the loaded 2-core machine - not enough evidence
    to change what the CPU tests and demos run, so auto leaves it off there.
    """
    if flag is not None:
        return bool(flag)
    return torch.device(device).type == "cuda"
