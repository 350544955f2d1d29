"""Latency and peak-memory measurement shared by ``dynet_model.profile`` and the benchmark."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Self

import torch
from torch import nn

from .memory_format import to_channels_last
from .variants import parse_reuse


@dataclass(frozen=True)
class ModelSpec:
    """A named network to measure: ``dynet-s``, ``dynet-l``, ``dynet-2,2,2,2`` or ``promptir``."""

    name: str
    arch: str
    reuse: tuple[int, ...] | None  # None: the architecture's own (PromptIR block counts)


def parse_model_name(name: str) -> ModelSpec:
    key = name.strip().lower()
    if key in ("promptir", "dsrir"):
        return ModelSpec(name=key, arch=key, reuse=None)
    spec = key.removeprefix("dynet-").removeprefix("dynet:")
    return ModelSpec(name=key, arch="dynet", reuse=parse_reuse(spec))


class PeakRSS:
    """Peak resident-memory increase of this process while the block runs (sampled every 2 ms)."""

    def __init__(self, interval: float = 0.002):
        import psutil  # a dependency of dask.distributed

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.baseline = self.peak = 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> Self:
        self.baseline = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def increase_bytes(self) -> int:
        return self.peak - self.baseline


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_context(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return torch.autocast(device_type=device.type, dtype=torch_dtype)


@dataclass
class Timing:
    median_s: float
    times_s: list[float]
    peak_mem_mb: float  # CUDA: max allocated above the resting state; CPU: peak RSS increase

    @property
    def images_per_s_per_batch(self) -> float:
        return 1.0 / self.median_s


def time_forward(model: nn.Module, spec: ModelSpec, size: int, *, batch: int = 1, repeats: int = 3,
                 warmup: int = 1, device: str | torch.device = "cpu", dtype: str = "fp32",
                 channels_last: bool = False) -> Timing:
    """Median wall time of ``repeats`` inference forwards (after ``warmup``) of a batch of size^2 images."""
    device = torch.device(device)
    x = torch.rand(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    kwargs = {"reuse": spec.reuse} if spec.reuse is not None else {}
    times: list[float] = []
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with torch.inference_mode(), autocast_context(device, dtype), PeakRSS() as rss:
        for _ in range(warmup):
            model(x, **kwargs)
        _sync(device)
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            model(x, **kwargs)
            _sync(device)
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = rss.increase_bytes
    return Timing(median_s=statistics.median(times), times_s=times, peak_mem_mb=peak / 2**20)


def prepare_model(model: nn.Module, device: str | torch.device, channels_last: bool = False) -> nn.Module:
    """Move to ``device`` in eval mode; channels_last converts the 4-D tensors only (the 5-D prompt
    bank makes ``model.to(memory_format=torch.channels_last)`` raise)."""
    model = model.to(device).eval()
    if channels_last:
        to_channels_last(model)
    return model


def compiled_vs_eager(eager: nn.Module, compiled: nn.Module, spec: ModelSpec, size: int, *,
                      device: str | torch.device = "cpu", dtype: str = "fp32", channels_last: bool = False,
                      batch: int = 1) -> tuple[float, float]:
    """(max |compiled - eager| on one random batch, seconds of the compiled call) — same weights,
    input and autocast. The compiled call is the first one for this shape/reuse: its time is the compile."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    kwargs = {"reuse": spec.reuse} if spec.reuse is not None else {}
    with torch.inference_mode(), autocast_context(device, dtype):
        start = time.perf_counter()
        out = compiled(x, **kwargs)
        _sync(device)
        seconds = time.perf_counter() - start
        return float((out.float() - eager(x, **kwargs).float()).abs().max()), seconds
