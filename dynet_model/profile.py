"""Profile the networks: parameters, convolution / total GFLOPs, median latency, peak memory.

    python -m dynet_model.profile --models dynet-s dynet-l promptir --size 224 --repeats 3 --json out.json

All DyNet variants share one set of weights (one model is built for them). FLOPs are counted on
the meta device (exact, instant); latency and memory are measured with random weights, which
does not change the cost.
"""

from __future__ import annotations

import json as _json
import logging
import os
import platform
from dataclasses import dataclass, field

import torch

from common.atomic import atomic_write_json
from common.cliconfig import parse_config

from .build import OFFICIAL_PARAMS, build_model, count_params
from .compiled import compile_model
from .config import default_config
from .flops import count_flops
from .measure import compiled_vs_eager, parse_model_name, prepare_model, time_forward
from .memory_format import resolve_channels_last

_LOG = logging.getLogger("dynet_model.profile")


@dataclass
class ProfileConfig:
    """Print a table of parameters, GFLOPs, latency and peak memory for DyNet-S/L and PromptIR."""

    models: list[str] = field(default_factory=lambda: ["dynet-s", "dynet-l", "promptir"],
                              metadata={"help": "networks: dynet-s, dynet-l, dynet-A,B,C,D (any reuse vector) "
                                                "or promptir"})
    size: int = field(default=224, metadata={"help": "square input size (the papers use 224)"})
    batch: int = field(default=1, metadata={"help": "batch size of the timed forwards"})
    repeats: int = field(default=3, metadata={"help": "timed forwards per model (median reported)"})
    warmup: int = field(default=1, metadata={"help": "untimed forwards before timing"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when available) | cpu | cuda"})
    dtype: str = field(default="fp32", metadata={"help": "fp32, or bf16 / fp16 autocast"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels_last weights and input (4-D tensors only; default: on for cuda, off on cpu)"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile each network (compile time and max |compiled - eager| are reported)"})
    flops_only: bool = field(default=False, metadata={"help": "skip latency/memory (FLOPs are instant)"})
    json: str | None = field(default=None, metadata={"help": "also write the results to this JSON file"})


def profile_models(cfg: ProfileConfig) -> list[dict]:
    specs = [parse_model_name(m) for m in cfg.models]
    channels_last = resolve_channels_last(cfg.channels_last, cfg.device)
    nets: dict[str, torch.nn.Module] = {}
    eager: dict[str, torch.nn.Module] = {}
    rows = []
    for spec in specs:
        mcfg = default_config(spec.arch)
        with torch.device("meta"):
            params = count_params(build_model(mcfg))
        flops = count_flops(mcfg, cfg.size, reuse=spec.reuse, batch=1)
        row = {"model": spec.name, "arch": spec.arch, "reuse": list(spec.reuse or getattr(mcfg, "reuse", ())),
               "params": params, "params_official": OFFICIAL_PARAMS[spec.arch], "size": cfg.size,
               "conv_gflops": round(flops.conv_g, 3), "total_gflops": round(flops.total_g, 3)}
        if not cfg.flops_only:
            if spec.arch not in nets:
                torch.manual_seed(0)
                eager[spec.arch] = prepare_model(build_model(mcfg), cfg.device, channels_last)
                nets[spec.arch] = compile_model(eager[spec.arch]) if cfg.compile else eager[spec.arch]
            if cfg.compile:  # the first call compiles this reuse vector / size: timed apart
                diff, seconds = compiled_vs_eager(
                    eager[spec.arch], nets[spec.arch], spec, cfg.size, device=cfg.device, dtype=cfg.dtype,
                    channels_last=channels_last, batch=cfg.batch)
                row.update(max_abs_diff_vs_eager=diff, compile_s=round(seconds, 2))
            t = time_forward(nets[spec.arch], spec, cfg.size, batch=cfg.batch, repeats=cfg.repeats,
                             warmup=cfg.warmup, device=cfg.device, dtype=cfg.dtype,
                             channels_last=channels_last)
            row.update(batch=cfg.batch, median_ms=round(t.median_s * 1e3, 2),
                       images_per_s=round(cfg.batch / t.median_s, 3), peak_mem_mb=round(t.peak_mem_mb, 1),
                       times_ms=[round(v * 1e3, 2) for v in t.times_s])
        _LOG.info("%s: %s", spec.name, row)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    head = ["model", "params", "official params", "conv GFLOPs", "total GFLOPs", "median ms", "img/s", "peak MB"]
    lines = [head]
    for r in rows:
        timed = "median_ms" in r
        lines.append([r["model"], f"{r['params']:,}", f"{r['params_official']:,}", f"{r['conv_gflops']:.2f}",
                      f"{r['total_gflops']:.2f}", f"{r['median_ms']:.1f}" if timed else "-",
                      f"{r['images_per_s']:.3f}" if timed else "-", f"{r['peak_mem_mb']:.0f}" if timed else "-"])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "platform": platform.platform(), "cpu": platform.processor(),
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "device": device,
           "loadavg_1_5_15min": [round(v, 2) for v in os.getloadavg()]}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def main(argv: list[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(ProfileConfig, argv)
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but no CUDA device is available")
    rows = profile_models(cfg)
    print(f"input 1x3x{cfg.size}x{cfg.size}, device {cfg.device}, dtype {cfg.dtype}; FLOPs per image "
          "(2 per multiply-add; conv = convolutions only, the papers' figure; total adds attention matmuls)")
    print(format_table(rows))
    if cfg.json:
        atomic_write_json(cfg.json, {"config": _json.loads(_json.dumps(cfg.__dict__)),
                                     "environment": environment(cfg.device), "results": rows})
        print(f"wrote {cfg.json}")
    return rows


if __name__ == "__main__":
    main()
