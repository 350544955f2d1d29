"""Pre-training speed: loader vs model throughput, data-wait fraction, dynamic vs S + L steps.

    python benchmarks/train_speed.py --out benchmarks/results/train_speed_cpu.json

Sections (``--sections``):
- ``loader``: samples/s of the real WebDataset pipeline (decode 512² PNG, crop, flips, corruption) in
  ONE process (= per worker, no model), and with ``--workers`` DataLoader workers;
- ``model``: samples/s of one training step (forward + backward + Adam) for DyNet-S and DyNet-L, with
  peak memory and MFU; ``--compile`` adds torch.compile'd steps and ``--checkpoint-activations``
  checkpointed ones, all in the same run (ratios ``*_over_eager``);
- ``datawait``: the data-wait fraction of a short real ``training.pretrain`` run;
- ``dynamic``: wall time of N dynamic steps (S or L drawn per step) vs N S steps + N L steps on a
  fixed batch — the paper's "one run at ~50 % of the cost of two" claim (eager, and compiled with
  ``--compile``: one graph per reuse vector, so the dynamic run compiles exactly twice).
On a CPU the model sections are scaled down (``--model-batch``, ``--dynamic-steps``, ``--tiny-dynamic``);
the JSON records exactly what ran.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from dynet_model.build import build_model
from dynet_model.compiled import (
    cached_graph_count,
    compile_counts,
    compile_model,
    set_activation_checkpointing,
)
from dynet_model.config import ModelConfig
from dynet_model.flops import count_train_flops
from dynet_model.measure import PeakRSS
from dynet_model.memory_format import (
    input_channels_last,
    resolve_channels_last,
    to_channels_last,
)
from dynet_model.mfu import mfu, resolve_peak_tflops
from dynet_model.variants import parse_reuse
from training.data import BatchStream, build_pipeline, resolve_shards
from training.degrade import DegradeConfig
from training.pretrain import DynamicDepthStep
from training.synthetic import write_synthetic_shards


@dataclass
class BenchConfig:
    """Pre-training throughput benchmark (JSON output)."""

    out: str = field(default="benchmarks/results/train_speed.json", metadata={"help": "JSON result file"})
    sections: list[str] = field(default_factory=lambda: ["loader", "model", "datawait", "dynamic"],
                                metadata={"help": "loader model datawait dynamic"})
    shards: str | None = field(default=None, metadata={"help": "real shards to read (default: synthetic 512² shards)"})
    crop: int = field(default=128, metadata={"help": "crop size"})
    batch_size: int = field(default=32, metadata={"help": "loader batch size"})
    loader_batches: int = field(default=10, metadata={"help": "batches timed per loader measurement"})
    workers: int = field(default=2, metadata={"help": "DataLoader workers for the multi-worker loader figure"})
    model_batch: int = field(default=32, metadata={"help": "batch of the model-throughput section"})
    model_steps: int = field(default=3, metadata={"help": "timed steps per variant (model section)"})
    warmup: int = field(default=1, metadata={"help": "untimed warm-up steps"})
    dynamic_steps: int = field(default=100, metadata={"help": "N of the dynamic vs S+L comparison"})
    tiny_dynamic: bool = field(default=False, metadata={"help": "use ModelConfig.tiny() for the dynamic section"})
    dynamic_crop: int = field(default=128, metadata={"help": "crop of the dynamic section"})
    dynamic_batch: int = field(default=32, metadata={"help": "batch of the dynamic section"})
    datawait_steps: int = field(default=20, metadata={"help": "steps of the short real run (tiny model)"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    compile: bool = field(default=False, metadata={"help": "model/dynamic sections: also time torch.compile'd "
                                                           "steps beside eager in the same run"})
    checkpoint_activations: bool = field(default=False, metadata={
        "help": "model section: also time eager steps with per-block activation checkpointing (memory vs speed)"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels_last weights and batches (default: on for cuda, off on cpu)"})
    tiny_model: bool = field(default=False, metadata={"help": "use ModelConfig.tiny() for the model section"})
    reuse_s: str = field(default="2,3,3,4", metadata={"help": "reuse vector timed as 'S' (a shorter one keeps CPU "
                                                             "compile times down; the JSON records it)"})
    reuse_l: str = field(default="4,6,6,8", metadata={"help": "reuse vector timed as 'L'"})
    peak_tflops: float = field(default=0.0, metadata={
        "help": "device peak TFLOP/s for MFU (0 = H100/H200/A100 table; null on cpu)"})


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _shards(cfg: BenchConfig, scratch: Path) -> list[str]:
    if cfg.shards:
        return resolve_shards(cfg.shards).urls
    root = write_synthetic_shards(scratch / "shards", shards=4, per_shard=24, size=512)
    return resolve_shards(str(root)).urls


def bench_loader(cfg: BenchConfig, urls: list[str]) -> dict:
    out = {}
    for workers in (0, cfg.workers):
        pipe = build_pipeline(urls, crop=cfg.crop, batch_size=cfg.batch_size, degrade=DegradeConfig(),
                              shuffle_buffer=64)
        stream = BatchStream(pipe, num_workers=workers)
        next(stream)  # warm-up: worker start, shuffle buffer fill
        t0 = time.perf_counter()
        for _ in range(cfg.loader_batches):
            next(stream)
        rate = cfg.loader_batches * cfg.batch_size / (time.perf_counter() - t0)
        stream.close()
        key = "per_worker_samples_per_s" if workers == 0 else f"workers_{workers}_samples_per_s"
        out[key] = round(rate, 2)
    return out


def _step_time(model, opt, x, y, reuse, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        loss = (model(x, reuse=reuse).float() - y).abs().mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - t0


def _modes(cfg: BenchConfig) -> list[tuple[str, bool, bool]]:
    """(name, compiled?, activation checkpointing?) of every configuration timed in one run."""
    modes = [("eager", False, False)]
    if cfg.checkpoint_activations:  # eager only: a compiled+ckpt mode would cost two more compiles
        modes.append(("eager+ckpt", False, True))
    if cfg.compile:  # last: if the compile overruns a time limit, the other figures are already saved
        modes.append(("compiled", True, False))
    return modes


def _setup(cfg: BenchConfig, mcfg: ModelConfig, device: str, compiled: bool, ckpt: bool):
    """(eager module, module to call, optimizer, input): one weight init for every mode (seed 0)."""
    torch.manual_seed(0)
    model = build_model(mcfg).to(device).train()
    if resolve_channels_last(cfg.channels_last, device):
        to_channels_last(model)
    set_activation_checkpointing(model, ckpt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    return model, (compile_model(model, dynamic=False) if compiled else model), opt


def _batch(cfg: BenchConfig, batch: int, crop: int, device: str) -> torch.Tensor:
    x = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(1)).to(device)
    return input_channels_last(x) if resolve_channels_last(cfg.channels_last, device) else x


class _Peak:
    """Peak memory of a block: CUDA max allocated, CPU peak RSS increase (MB)."""

    def __init__(self, device: str):
        self.device, self.mb = device, 0.0

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._rss = PeakRSS().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._rss.__exit__(*exc)
            self.mb = self._rss.increase_bytes / 2**20


def bench_model(cfg: BenchConfig, device: str, save=None) -> dict:
    """Training-step throughput of S and L per mode (eager / compiled / +ckpt), with peak memory and MFU."""
    mcfg = ModelConfig.tiny("dynet") if cfg.tiny_model else ModelConfig.dynet()
    dtype = "bf16" if device.startswith("cuda") else "fp32"
    peak = resolve_peak_tflops(device, dtype, cfg.peak_tflops)
    x = _batch(cfg, cfg.model_batch, cfg.crop, device)
    out = {"model": "tiny" if cfg.tiny_model else "dynet (paper size)", "S": cfg.reuse_s, "L": cfg.reuse_l,
           "batch": cfg.model_batch, "crop": cfg.crop,
           "timed_steps": cfg.model_steps, "dtype": dtype, "peak_tflops": peak,
           "channels_last": resolve_channels_last(cfg.channels_last, device)}
    for mode, compiled, ckpt in _modes(cfg):
        model, run, opt = _setup(cfg, mcfg, device, compiled, ckpt)
        for name, reuse in (("S", parse_reuse(cfg.reuse_s)), ("L", parse_reuse(cfg.reuse_l))):
            with _Peak(device) as mem:
                t0 = time.perf_counter()
                for _ in range(max(cfg.warmup, 1 if compiled else 0)):  # compiled: the first step compiles
                    _step_time(run, opt, x, x, reuse, device)
                first_s = time.perf_counter() - t0
                times = [_step_time(run, opt, x, x, reuse, device) for _ in range(cfg.model_steps)]
            step = statistics.median(times)
            flops = count_train_flops(mcfg, cfg.crop, batch=cfg.model_batch, reuse=reuse)
            key = name if mode == "eager" else f"{name}_{mode}"
            out[f"{key}_step_s"] = round(step, 4)
            out[f"{key}_samples_per_s"] = round(cfg.model_batch / step, 3)
            out[f"{key}_peak_mem_mb"] = round(mem.mb, 1)
            out[f"{key}_tflops_per_s"] = round(flops / step / 1e12, 4)
            out[f"{key}_mfu"] = mfu(flops / step, peak)
            if compiled:
                out[f"{key}_warmup_s"] = round(first_s, 1)  # includes the compile of this reuse vector
        if compiled:  # graphs held for DyNet.forward (one per reuse vector) and dynamo's process totals
            out[f"{mode}_compile_counts"] = {"graphs_cached": cached_graph_count(model), **compile_counts()}
        del model, run, opt
        if save is not None:
            save(out)
    for mode, _, _ in _modes(cfg)[1:]:
        for name in ("S", "L"):
            base = out[f"{name}_samples_per_s"]
            out[f"{name}_{mode}_over_eager"] = round(out[f"{name}_{mode}_samples_per_s"] / base, 3)
    return out


def bench_dynamic(cfg: BenchConfig, device: str) -> dict:
    """N dynamic steps (S or L drawn per step) vs N S steps + N L steps, per mode (eager / compiled)."""
    mcfg = ModelConfig.tiny("dynet") if cfg.tiny_dynamic else ModelConfig.dynet()
    x = _batch(cfg, cfg.dynamic_batch, cfg.dynamic_crop, device)
    small, large = parse_reuse(cfg.reuse_s), parse_reuse(cfg.reuse_l)
    picker = DynamicDepthStep([small, large], seed=0)
    n = cfg.dynamic_steps
    picks = [picker.variants[picker.pick(s)] for s in range(n)]
    frac_l = sum(r == large for r in picks) / n
    out = {"model": "tiny" if cfg.tiny_dynamic else "dynet (paper size)", "S": cfg.reuse_s, "L": cfg.reuse_l, "steps": n, "batch": cfg.dynamic_batch,
           "crop": cfg.dynamic_crop, "dynamic_L_fraction": round(frac_l, 3)}
    for mode, compiled, _ in [m for m in _modes(cfg) if not m[2]]:
        model, run, opt = _setup(cfg, mcfg, device, compiled, False)
        before = compile_counts()
        for reuse in (small, large):  # warm-up (and, compiled, the one compile per reuse vector)
            for _ in range(max(cfg.warmup, 1)):
                _step_time(run, opt, x, x, reuse, device)
        dyn = sum(_step_time(run, opt, x, x, r, device) for r in picks)
        s_only = sum(_step_time(run, opt, x, x, small, device) for _ in range(n))
        l_only = sum(_step_time(run, opt, x, x, large, device) for _ in range(n))
        p = "" if mode == "eager" else f"{mode}_"
        out.update({f"{p}dynamic_s": round(dyn, 3), f"{p}S_s": round(s_only, 3), f"{p}L_s": round(l_only, 3),
                    f"{p}dynamic_over_S_plus_L": round(dyn / (s_only + l_only), 3),
                    # what the drawn S/L mix predicts from the S-only and L-only times (0.5 for a 50/50 draw)
                    f"{p}expected_from_mix": round((frac_l * l_only + (1 - frac_l) * s_only) / (s_only + l_only), 3)})
        if compiled:  # the dynamic run must not add graphs beyond one per reuse vector
            out[f"{p}graphs_cached"] = cached_graph_count(model)
            out[f"{p}frames_compiled_in_section"] = compile_counts()["frames_compiled"] - before["frames_compiled"]
        del model, run, opt
    return out


def bench_datawait(cfg: BenchConfig, scratch: Path) -> dict:
    from training.pretrain import main as pretrain_main

    out = scratch / "run"
    crop = min(cfg.crop, 64)
    pretrain_main(["--shards", str(scratch / "shards") if not cfg.shards else cfg.shards, "--out", str(out),
                   "--tiny", "--crop", str(crop), "--batch-size", "8", "--degrade-block", "32",
                   "--mask-block", "16", "--workers", "1", "--max-steps", str(cfg.datawait_steps),
                   "--log-every", "5", "--ckpt-every", str(cfg.datawait_steps), "--no-progress",
                   "--no-tensorboard", "--shuffle-buffer", "32", "--threads", str(cfg.threads)])
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "loss" in line]
    rows = rows[1:] or rows  # first window includes worker start-up
    return {"model": "tiny", "crop": crop, "batch": 8, "workers": 1, "steps": cfg.datawait_steps,
            "data_wait_frac": round(statistics.mean(r["data_wait_frac"] for r in rows), 4),
            "samples_per_s": round(statistics.mean(r["samples_per_s"] for r in rows), 2)}


def main(argv=None) -> None:
    cfg = parse_config(BenchConfig, argv)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(), "device": device,
                          "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                          "loadavg_start": os.getloadavg()},
              "config": vars(cfg)}
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        scratch = Path(tmp)
        needs_data = {"loader", "datawait"} & set(cfg.sections)
        urls = _shards(cfg, scratch) if needs_data else []
        for section in cfg.sections:
            t0 = time.perf_counter()
            if section == "loader":
                result["loader"] = bench_loader(cfg, urls)
            elif section == "model":
                result["model"] = bench_model(cfg, device, save=lambda part: atomic_write_json(
                    cfg.out, {**result, "model": part, "partial": True}))
            elif section == "datawait":
                result["datawait"] = bench_datawait(cfg, scratch)
            elif section == "dynamic":
                result["dynamic"] = bench_dynamic(cfg, device)
            else:
                raise SystemExit(f"unknown section {section!r}")
            result.setdefault("section_wall_s", {})[section] = round(time.perf_counter() - t0, 1)
            atomic_write_json(cfg.out, {**result, "partial": True})  # a later section may overrun a time limit
            print(section, json.dumps(result.get(section)), flush=True)
    result["machine"]["loadavg_end"] = os.getloadavg()
    atomic_write_json(cfg.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
