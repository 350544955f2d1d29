"""Inference speed of DyNet-S, DyNet-L and PromptIR in one process: images/s and the S/PromptIR ratio.

    python benchmarks/model_speed.py --out benchmarks/results/model_speed_cpu.json
    python benchmarks/model_speed.py --device cuda --out benchmarks/results/model_speed_gpu.json

On CUDA the defaults are bf16 autocast + channels_last (``--dtype fp32 --no-channels-last`` to
turn them off). DyNet-S and DyNet-L run the same weights with different reuse vectors. Random
weights: the cost does not depend on their values.
"""

from __future__ import annotations

import logging
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from common.atomic import atomic_write_json
from common.cliconfig import config_to_dict, parse_config
from dynet_model.build import build_model
from dynet_model.config import default_config
from dynet_model.flops import count_flops
from dynet_model.measure import parse_model_name, prepare_model, time_forward
from dynet_model.profile import environment

_LOG = logging.getLogger("model_speed")


@dataclass
class SpeedConfig:
    """Measure images/s of DyNet-S, DyNet-L and PromptIR at several square sizes."""

    out: str = field(default="benchmarks/results/model_speed.json", metadata={"help": "JSON result file"})
    models: list[str] = field(default_factory=lambda: ["dynet-s", "dynet-l", "promptir"],
                              metadata={"help": "networks (dynet-s, dynet-l, dynet-A,B,C,D, promptir)"})
    sizes: list[int] = field(default_factory=lambda: [224, 512], metadata={"help": "square input sizes"})
    batch: int = field(default=1, metadata={"help": "images per forward"})
    repeats: int = field(default=3, metadata={"help": "timed forwards per model and size (median)"})
    warmup: int = field(default=1, metadata={"help": "untimed forwards first"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    dtype: str = field(default="auto", metadata={"help": "fp32, bf16 or fp16 autocast; auto = bf16 on cuda, fp32 on cpu"})
    channels_last: bool | None = field(default=None, metadata={"help": "channels_last (default: on for cuda)"})


def run(cfg: SpeedConfig) -> dict:
    cuda = cfg.device.startswith("cuda")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if cuda else "fp32")
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last
    specs = [parse_model_name(m) for m in cfg.models]
    nets = {}
    for arch in dict.fromkeys(s.arch for s in specs):
        torch.manual_seed(0)
        nets[arch] = prepare_model(build_model(default_config(arch)), cfg.device, channels_last)
    results = []
    for size in cfg.sizes:
        # round-robin over the models (S, L, PromptIR, S, L, ...) so that a change in machine load
        # during the run affects every model alike and the ratios stay meaningful
        times: dict[str, list[float]] = {s.name: [] for s in specs}
        peaks: dict[str, float] = {s.name: 0.0 for s in specs}
        for rep in range(max(1, cfg.repeats)):
            for spec in specs:
                t = time_forward(nets[spec.arch], spec, size, batch=cfg.batch, repeats=1,
                                 warmup=cfg.warmup if rep == 0 else 0, device=cfg.device, dtype=dtype,
                                 channels_last=channels_last)
                times[spec.name] += t.times_s
                peaks[spec.name] = max(peaks[spec.name], t.peak_mem_mb)
        for spec in specs:
            median = statistics.median(times[spec.name])
            flops = count_flops(default_config(spec.arch), size, reuse=spec.reuse)
            row = {"model": spec.name, "size": size, "batch": cfg.batch, "images_per_s": cfg.batch / median,
                   "median_ms": median * 1e3, "times_ms": [v * 1e3 for v in times[spec.name]],
                   "peak_mem_mb": peaks[spec.name], "conv_gflops": flops.conv_g, "total_gflops": flops.total_g}
            print(f"{size:>5}  {spec.name:>9}  {row['images_per_s']:9.4f} img/s  {row['median_ms']:10.1f} ms  "
                  f"{row['peak_mem_mb']:8.0f} MB", flush=True)
            results.append(row)
    ratios = {}
    for size in cfg.sizes:
        ips = {r["model"]: r["images_per_s"] for r in results if r["size"] == size}
        if "dynet-s" in ips and "promptir" in ips:
            ratios[f"dynet-s/promptir@{size}"] = ips["dynet-s"] / ips["promptir"]
        if "dynet-l" in ips and "promptir" in ips:
            ratios[f"dynet-l/promptir@{size}"] = ips["dynet-l"] / ips["promptir"]
        if "dynet-s" in ips and "dynet-l" in ips:
            ratios[f"dynet-s/dynet-l@{size}"] = ips["dynet-s"] / ips["dynet-l"]
    for name, value in ratios.items():
        print(f"speed ratio {name}: {value:.3f}")
    return {"config": config_to_dict(cfg), "dtype": dtype, "channels_last": channels_last,
            "environment": environment(cfg.device), "results": results, "ratios": ratios}


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(SpeedConfig, argv)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but no CUDA device is available")
    report = run(cfg)
    atomic_write_json(cfg.out, report)
    print(f"wrote {cfg.out}")
    return report


if __name__ == "__main__":
    main()
