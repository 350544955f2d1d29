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
    """Process-wide dynamo statistics: distinct graphs captured and frame compilations (first
    compiles + recompiles, all compiled models together)."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"].get("unique_graphs", 0)),
            "frames_compiled": int(counters["frames"].get("ok", 0))}


def cached_graph_count(module: nn.Module) -> int | None:
    """Graphs torch.compile holds for ``module``'s forward: one per reuse vector (and shape) when every
    vector's graph is reused, so ``count - 1`` is the number of recompilations; None if unknown.

    Read from dynamo's per-code cache (``_debug_get_cache_entry_list``, present since torch 2.1).
    """
    try:
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list

        return len(_debug_get_cache_entry_list(type(module).forward))
    except (ImportError, AttributeError, RuntimeError, TypeError):  # a torch without the helper: unknown
        return None


def reset_compile_counts() -> None:
    """Forget compiled graphs and statistics (tests; a fresh count for a benchmark section)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
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
