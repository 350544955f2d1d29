"""One switchboard for the trainers' speed/memory options and the MFU figure.

Every trainer's config inherits :class:`AccelFlags` (``--compile``, ``--channels-last`` /
``--no-channels-last``, ``--checkpoint-activations``, ``--peak-tflops``) and hands an
:class:`Accelerator` to :class:`training.loop.Trainer`, which calls :meth:`Accelerator.prepare` on the
model before building the optimizer, :meth:`Accelerator.wrap` on the (DDP-wrapped) training module,
and :meth:`Accelerator.log_fields` at each log line. The entry points only build it.

MFU: the wrapper counts the training FLOPs (forward + backward, :func:`dynet_model.flops.count_train_flops`,
cached per input shape and forward arguments, e.g. the reuse vector) of every forward it runs with
gradients; the log line divides them by the window's wall time and by the peak of
:mod:`dynet_model.mfu`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dynet_model.compiled import (
    cached_graph_count,
    compile_model,
    set_activation_checkpointing,
)
from dynet_model.config import AnyConfig
from dynet_model.flops import count_train_flops
from dynet_model.memory_format import (
    input_channels_last,
    resolve_channels_last,
    to_channels_last,
)
from dynet_model.mfu import mfu, resolve_peak_tflops

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class AccelFlags:
    """Flags shared by pretrain, finetune and train_dsrir (mixed into their configs)."""

    compile: bool = field(default=False, metadata={
        "help": "torch.compile the model: one static graph per reuse vector and crop, traced on its first "
                "step and reused (the first steps take minutes; the log reports compile_graphs/recompiles)"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels_last memory format for the 4-D weights and each batch (--no-channels-last turns "
                "it off; default: on for CUDA, off on CPU)"})
    checkpoint_activations: bool = field(default=False, metadata={
        "help": "recompute each transformer block (DSRIR: each patch-attention block) in the backward pass "
                "instead of storing its activations: less memory for larger batches/crops, ~30 %% more compute"})
    peak_tflops: float = field(default=0.0, metadata={
        "help": "accelerator peak TFLOP/s for the logged MFU (0 = the built-in H100/H200/A100 table for the "
                "run's dtype; on CPU MFU is logged as null unless this is given)"})


class _Forward(nn.Module):
    """Training-time forward: batch to channels_last, FLOP tally, then the (compiled) model."""

    def __init__(self, model: nn.Module, run: nn.Module, accel: Accelerator) -> None:
        super().__init__()
        self.model = model
        self.run = run
        self._accel = [accel]  # a list: not registered as a submodule

    def forward(self, x: torch.Tensor, **kwargs: Any) -> Any:
        accel = self._accel[0]
        if accel.channels_last:
            x = input_channels_last(x)
        if torch.is_grad_enabled():
            accel.window_flops += accel.step_flops(x.shape, kwargs)
        return self.run(x, **kwargs)


class Accelerator:
    """Applies --compile / --channels-last / --checkpoint-activations and keeps the MFU tally."""

    def __init__(self, flags: AccelFlags, *, model_config: AnyConfig | None, device: str, amp: str = "bf16"):
        self.device = device
        cuda = torch.device(device).type == "cuda"
        self.compile = bool(flags.compile)
        self.channels_last = resolve_channels_last(flags.channels_last, device)
        self.checkpoint_activations = bool(flags.checkpoint_activations)
        self.dtype = "bf16" if (cuda and amp == "bf16") else "fp32"
        self.peak_tflops = resolve_peak_tflops(device, self.dtype, flags.peak_tflops)
        self.model_config = model_config
        self.window_flops = 0.0
        self._compiled_target: nn.Module | None = None
        self._flops_cache: dict[tuple, int] = {}

    def describe(self) -> dict:
        return {"compile": self.compile, "channels_last": self.channels_last,
                "checkpoint_activations": self.checkpoint_activations, "dtype": self.dtype,
                "peak_tflops": self.peak_tflops}

    def prepare(self, model: nn.Module) -> nn.Module:
        """In place, before the optimizer exists: memory format, checkpointing, cuDNN autotuning."""
        if self.channels_last:
            to_channels_last(model)
        if self.checkpoint_activations:
            blocks = set_activation_checkpointing(model, True)
            log.info("activation checkpointing on %d blocks", blocks)
        if torch.device(self.device).type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crops: the autotuned kernels are reused
        log.info("acceleration: %s", self.describe())
        return model

    def wrap(self, train_model: nn.Module) -> nn.Module:
        self._compiled_target = train_model
        run = compile_model(train_model, dynamic=False) if self.compile else train_model
        return _Forward(train_model, run, self)

    def step_flops(self, shape: torch.Size, kwargs: dict) -> int:
        """Training FLOPs (forward + backward) of one call on a batch of ``shape``; 0 without a config."""
        if self.model_config is None:
            return 0
        key = (tuple(shape[1:]), tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))
        if key not in self._flops_cache:
            _, _, h, w = shape
            self._flops_cache[key] = count_train_flops(self.model_config, h, w, batch=1, **kwargs)
        return self._flops_cache[key] * int(shape[0])

    def log_fields(self, elapsed_s: float) -> dict:
        """Fields for the log line closing a window of ``elapsed_s`` seconds (resets the tally)."""
        flops_per_s = self.window_flops / max(elapsed_s, 1e-9)
        self.window_flops = 0.0
        out = {"tflops_per_s": flops_per_s / 1e12, "mfu": mfu(flops_per_s, self.peak_tflops)}
        if self.compile:  # graphs held for the model's forward: one per reuse vector (and crop) drawn so far
            graphs = cached_graph_count(self._compiled_target)
            out.update(compile_graphs=graphs, compile_recompiles=None if graphs is None else max(0, graphs - 1))
        return out


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value
