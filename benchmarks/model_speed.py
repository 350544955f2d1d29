"""Inference speed of DyNet-S, DyNet-L and PromptIR in one process: images/s and the S/PromptIR ratio.

    python benchmarks/model_speed.py --out benchmarks/results/model_speed_cpu.json
    python benchmarks/model_speed.py --device cuda --out benchmarks/results/model_speed_gpu.json
    python benchmarks/model_speed.py --compile ...   # eager and torch.compile'd side by side

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
from dynet_model.compiled import compile_model
from dynet_model.config import ModelConfig, default_config
from dynet_model.flops import count_flops
from dynet_model.measure import (
    compiled_vs_eager,
    parse_model_name,
    prepare_model,
    time_forward,
)
from dynet_model.memory_format import resolve_channels_last
from dynet_model.mfu import mfu, resolve_peak_tflops
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
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels_last weights and input, 4-D tensors only (default: on for cuda, off on cpu)"})
    compile: bool = field(default=False, metadata={
        "help": "also time torch.compile'd networks beside eager (compile time, max |compiled - eager| per "
                "model and the compiled/eager ratio go into the JSON)"})
    peak_tflops: float = field(default=0.0, metadata={
        "help": "device peak TFLOP/s for the MFU column (0 = H100/H200/A100 table; null on cpu)"})
    tiny: bool = field(default=False, metadata={"help": "ModelConfig.tiny() networks (tests; figures meaningless)"})


def _model_config(cfg: SpeedConfig, arch: str):
    return ModelConfig.tiny(arch) if cfg.tiny and arch != "dsrir" else default_config(arch)


def _build(cfg: SpeedConfig, specs, channels_last: bool) -> tuple[dict, dict]:
    """Eager networks (one per arch: DyNet-S/L share weights) and, with --compile, their compiled twins."""
    eager, compiled = {}, {}
    for arch in dict.fromkeys(s.arch for s in specs):
        torch.manual_seed(0)
        eager[arch] = prepare_model(build_model(_model_config(cfg, arch)), cfg.device, channels_last)
        if cfg.compile:
            compiled[arch] = compile_model(eager[arch], dynamic=False)
    return eager, compiled


def _row(spec, size: int, cfg: SpeedConfig, mode: str, times: list[float], peak: float, peak_tflops) -> dict:
    median = statistics.median(times)
    flops = count_flops(_model_config(cfg, spec.arch), size, reuse=spec.reuse)
    flops_per_s = flops.total * cfg.batch / median
    return {"model": spec.name, "mode": mode, "size": size, "batch": cfg.batch,
            "images_per_s": cfg.batch / median, "median_ms": median * 1e3, "times_ms": [v * 1e3 for v in times],
            "peak_mem_mb": peak, "conv_gflops": flops.conv_g, "total_gflops": flops.total_g,
            "tflops_per_s": flops_per_s / 1e12, "mfu": mfu(flops_per_s, peak_tflops)}


def run(cfg: SpeedConfig) -> dict:
    cuda = cfg.device.startswith("cuda")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if cuda else "fp32")
    channels_last = resolve_channels_last(cfg.channels_last, cfg.device)
    peak_tflops = resolve_peak_tflops(cfg.device, dtype, cfg.peak_tflops)
    specs = [parse_model_name(m) for m in cfg.models]
    eager, compiled = _build(cfg, specs, channels_last)
    modes = {"eager": eager, **({"compiled": compiled} if cfg.compile else {})}
    results = []
    for size in cfg.sizes:
        first = {}
        if cfg.compile:  # compile (first call per reuse vector and size) and check against eager
            for spec in specs:
                diff, seconds = compiled_vs_eager(eager[spec.arch], compiled[spec.arch], spec, size,
                                                  device=cfg.device, dtype=dtype, channels_last=channels_last,
                                                  batch=cfg.batch)
                first[spec.name] = {"compile_s": seconds, "max_abs_diff_vs_eager": diff}
                print(f"{size:>5}  {spec.name:>9}  compiled in {seconds:.1f} s, max |compiled - eager| {diff:.2e}",
                      flush=True)
        # round-robin over models and modes (S, L, PromptIR, S compiled, ...) so that a change in machine
        # load during the run affects every entry alike and the ratios stay meaningful
        times = {(m, s.name): [] for m in modes for s in specs}
        peaks = {(m, s.name): 0.0 for m in modes for s in specs}
        for rep in range(max(1, cfg.repeats)):
            for mode, nets in modes.items():
                for spec in specs:
                    t = time_forward(nets[spec.arch], spec, size, batch=cfg.batch, repeats=1,
                                     warmup=cfg.warmup if rep == 0 else 0, device=cfg.device, dtype=dtype,
                                     channels_last=channels_last)
                    times[mode, spec.name] += t.times_s
                    peaks[mode, spec.name] = max(peaks[mode, spec.name], t.peak_mem_mb)
        for mode in modes:
            for spec in specs:
                row = _row(spec, size, cfg, mode, times[mode, spec.name], peaks[mode, spec.name], peak_tflops)
                if mode == "compiled":
                    row.update(first[spec.name])
                print(f"{size:>5}  {spec.name:>9}  {mode:>8}  {row['images_per_s']:9.4f} img/s  "
                      f"{row['median_ms']:10.1f} ms  {row['peak_mem_mb']:8.0f} MB", flush=True)
                results.append(row)
    ratios = _ratios(cfg, results)
    for name, value in ratios.items():
        print(f"speed ratio {name}: {value:.3f}")
    return {"config": config_to_dict(cfg), "dtype": dtype, "channels_last": channels_last,
            "peak_tflops": peak_tflops, "environment": environment(cfg.device), "results": results,
            "ratios": ratios}


def _ratios(cfg: SpeedConfig, results: list[dict]) -> dict:
    ratios = {}
    for size in cfg.sizes:
        ips = {r["model"]: r["images_per_s"] for r in results if r["size"] == size and r["mode"] == "eager"}
        for a, b in (("dynet-s", "promptir"), ("dynet-l", "promptir"), ("dynet-s", "dynet-l")):
            if a in ips and b in ips:
                ratios[f"{a}/{b}@{size}"] = ips[a] / ips[b]
        comp = {r["model"]: r["images_per_s"] for r in results if r["size"] == size and r["mode"] == "compiled"}
        for name, value in comp.items():
            ratios[f"{name}@{size} compiled/eager"] = value / ips[name]
    return ratios


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
