"""torch.compile, activation checkpointing and the compile statistics, for every entry point.

DyNet's depth is a forward argument (the reuse vector), and its loops unroll at trace time, so
every reuse vector is a different graph. We compile with ``dynamic=False`` for training: the
vector's integers become constants guarded by equality, each distinct vector is traced ONCE and
its graph is reused on every later step that draws it (S/L training = two graphs, not one per
step). Inference over images of many sizes (restore, evaluate) passes ``dynamic=None`` so
torch's automatic dynamic shapes take over after the second size instead of recompiling per size.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# graphs kept per compiled function before torch falls back to eager; a run that draws many
# reuse vectors or sizes needs more than torch's default of 8
RECOMPILE_LIMIT = 64


def _raise_recompile_limit(limit: int = RECOMPILE_LIMIT) -> None:
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(int(getattr(dynamo_config, name)), limit))
            return


def compile_model(model: nn.Module, *, dynamic: bool | None = False, mode: str | None = None) -> nn.Module:
    """``torch.compile(model)`` with a recompile limit that fits many reuse vectors / sizes.

    ``dynamic=False`` (training, fixed crop): one static graph per (reuse vector, shape);
    ``dynamic=None`` (inference on varying sizes): torch's automatic dynamic shapes.
    The returned module shares the parameters of ``model`` (state_dict keys gain ``_orig_mod.``;
    save the original module, not this one).
    """
    _raise_recompile_limit()
    return torch.compile(model, dynamic=dynamic, mode=mode)


def compile_counts() -> dict[str, int]:
    """Process-wide dynamo statistics: frames compiled, distinct graphs, recompilations.

    ``recompiles`` counts compilations of an already-compiled frame caused by a failed guard (a new
    reuse vector, a new shape); with one graph per reuse vector it stays at (distinct vectors - 1)
    per compiled model however long the run.
    """
    from torch._dynamo.utils import counters

    stats, frames = counters["stats"], counters["frames"]
    unique = int(stats.get("unique_graphs", 0))
    compiled = int(frames.get("ok", 0))
    return {"graphs": unique, "frames_compiled": compiled,
            "recompiles": int(sum(counters["recompiles"].values())) if "recompiles" in counters else 0}


def reset_compile_counts() -> None:
    from torch._dynamo.utils import counters

    counters.clear()


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn per-block activation checkpointing on/off; returns the number of blocks it applies to.

    Every module class that declares a ``checkpoint_activations`` attribute supports it (DyNet /
    PromptIR transformer blocks, DSRIR patch-attention groups).
    """
    count = 0
    for module in model.modules():
        if hasattr(type(module), "checkpoint_activations"):
            module.checkpoint_activations = bool(enabled)
            count += 1
    return count


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def accelerate_for_inference(model: nn.Module, *, device: str | torch.device, compile: bool = False,
                             channels_last: bool | None = None) -> nn.Module:
    """restore / evaluate / profile: channels_last weights (auto: on CUDA), then torch.compile with
    automatic dynamic shapes (images of many sizes share graphs instead of one compile per size)."""
    from .memory_format import resolve_channels_last, to_channels_last

    if resolve_channels_last(channels_last, device):
        to_channels_last(model)
    if compile:
        model = compile_model(model, dynamic=None)
    return model
