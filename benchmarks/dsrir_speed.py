"""Inference speed and peak memory: DSRIR vs DyNet-S vs PromptIR, at 224^2 and 512^2, in one process.

    python -m benchmarks.dsrir_speed --out dsrir_speed.json [--sizes 224 512] [--repeats 5] [--device cuda]

Per (model, size): parameters, convolution GFLOPs (FlopCounterMode on the meta device, batch 1),
images/s (``--batch`` images per forward, ``torch.no_grad``, after ``--warmup`` forwards) and peak
memory of one forward. On CUDA the peak is ``torch.cuda.max_memory_allocated`` after a reset
(weights included); on CPU it is the peak rise of the process RSS during one extra forward above
its level just before it (freed heap returned to the OS first with glibc ``malloc_trim``), sampled
every millisecond by a thread: activations and temporaries, weights excluded, approximate. Models
run one after another in the same process, each freed before the next.
"""

from __future__ import annotations

import gc
import json
import platform
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from dynet_model.build import build_model
from dynet_model.config import DYNET_S, default_config

MODELS = {"dsrir": ("dsrir", None), "dynet-s": ("dynet", DYNET_S), "promptir": ("promptir", None)}


def _forward(model: torch.nn.Module, x: torch.Tensor, reuse) -> torch.Tensor:
    return model(x, reuse=reuse) if reuse is not None else model(x)


def conv_gflops(arch: str, reuse, size: int) -> float:
    with torch.device("meta"):
        model = build_model(default_config(arch))
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as fc:
        _forward(model, x, reuse)
    counts = fc.get_flop_counts()["Global"]
    return sum(v for k, v in counts.items() if "convolution" in str(k)) / 1e9


class _RssPeak:
    """Peak RSS (bytes) seen by a 1 ms sampling thread between start() and stop()."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._page = 4096

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def __enter__(self) -> _RssPeak:
        self.base = self._rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _trim_heap() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(name: str, size: int, *, batch: int, warmup: int, repeats: int, device: str) -> dict:
    arch, reuse = MODELS[name]
    torch.manual_seed(0)
    model = build_model(default_config(arch)).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            _forward(model, x, reuse)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            _forward(model, x, reuse)
        sync()
        elapsed = time.perf_counter() - t0
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            _forward(model, x, reuse)
            sync()
            rss, peak_mib = None, torch.cuda.max_memory_allocated() / 2**20
        else:
            _trim_heap()
            with _RssPeak() as rss:
                _forward(model, x, reuse)
            peak_mib = (rss.peak - rss.base) / 2**20
    result = {"model": name, "size": size, "batch": batch, "params": sum(p.numel() for p in model.parameters()),
              "conv_gflops": round(conv_gflops(arch, reuse, size), 2),
              "images_per_s": batch * repeats / elapsed, "seconds_per_forward": elapsed / repeats,
              "peak_memory_mib": round(peak_mib, 1),
              "peak_memory_kind": "cuda_max_allocated" if rss is None else "cpu_rss_rise"}
    del model, x
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


@dataclass
class BenchConfig:
    """DSRIR vs DyNet-S vs PromptIR: images/s and peak memory (JSON to --out)."""

    out: str = field(metadata={"help": "JSON results file"})
    models: list[str] = field(default_factory=lambda: list(MODELS), metadata={"help": "dsrir dynet-s promptir"})
    sizes: list[int] = field(default_factory=lambda: [224, 512], metadata={"help": "square input sizes"})
    batch: int = field(default=1, metadata={"help": "images per forward"})
    warmup: int = field(default=1, metadata={"help": "untimed forwards first"})
    repeats: int = field(default=3, metadata={"help": "timed forwards"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:i]"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rows = []
    for size in cfg.sizes:
        for name in cfg.models:
            row = measure(name, size, batch=cfg.batch, warmup=cfg.warmup, repeats=cfg.repeats, device=device)
            print(json.dumps(row), flush=True)
            rows.append(row)
    env = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version.split()[0]}
    atomic_write_json(cfg.out, {"environment": env, "config": vars(cfg), "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
