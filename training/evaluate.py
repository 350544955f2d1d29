"""Evaluate a restoration model by the DyNet/PromptIR all-in-one protocol (paper Table 1).

    python -m training.evaluate --checkpoint runs/x/model_final.safetensors --variant s \\
        --sots test/dehaze --rain100l test/derain/Rain100L --bsd68 test/denoise/bsd68 --json out.json
    python -m training.evaluate --model identity --rain100l ...          # the degraded-input floor
    python -m training.evaluate --checkpoint model.ckpt --arch promptir --bsd68 ...   # an official release
    python -m training.evaluate --checkpoint x.safetensors --sweep-depths 1,1,1,1 2,3,3,4 4,6,6,8 ...
    python -m training.evaluate --benchmark 5task --checkpoint x.safetensors --sots ... --rain100l ... \
        --bsd68 ... --gopro test/deblur/gopro --lol test/lowlight/lol     # the 5-task table

See docs/training-finetune-evaluate.md and training/protocols.py for the exact protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common.atomic import atomic_write_json, atomic_write_text
from common.cliconfig import parse_config
from training import restoration_data as rd
from training.evaluation import report as eval_report
from training.evaluation.metrics import mean_or_nan, score_pair, to_float01
from training.evaluation.protocols import Protocol, get_benchmark, get_protocol
from training.evaluation.restorers import Restorer, load_restorer

log = logging.getLogger("training.evaluate")


@dataclass
class EvalConfig:
    """Evaluate a restoration model on SOTS / Rain100L / BSD68 (and Urban100) by the paper's protocol."""
    checkpoint: str | None = field(default=None, metadata={"help": "model weights: our .safetensors (from training / save_model, or a checkpoints/step_N folder) or an official DyNet/PromptIR/DSRIR .ckpt/.pth (read with weights_only=True, mapped by dynet_model's key map)"})
    official_checkpoint: str | None = field(default=None, metadata={"help": "old spelling of --checkpoint (kept as an alias)"})
    arch: str | None = field(default=None, metadata={"help": "architecture of an official .ckpt/.pth: dynet | promptir | dsrir (default: detected from its keys; ours carry their config)"})
    model: str = field(default="network", metadata={"help": "'network' (a checkpoint) or 'identity' (score the degraded inputs themselves: the floor)"})
    variant: str | None = field(default=None, metadata={"help": "DyNet reuse vector: s | l | 'f1,f2,f3,f4' (default: the checkpoint's own)"})
    bsd68: str | None = field(default=None, metadata={"help": "folder of clean BSD68 images (denoise; noise added per --sigmas)"})
    urban100: str | None = field(default=None, metadata={"help": "folder of clean Urban100 images (denoise, reported beside Table 1)"})
    rain100l: str | None = field(default=None, metadata={"help": "Rain100L test folder: {input,target} (same names or rain-N/norain-N) or {rain,norain}"})
    sots: str | None = field(default=None, metadata={"help": "SOTS outdoor test folder: {input/ID_*.jpg, target/ID.png}"})
    gopro: str | None = field(default=None, metadata={"help": "GoPro test folder (5-task deblur): {input,target} or {blur,sharp}, same file names"})
    lol: str | None = field(default=None, metadata={"help": "LOL-v1 test folder (5-task low-light): {input,target}, {low,high} or {low,gt}, same file names"})
    benchmark: str = field(default="3task", metadata={"help": "table to report and average: 3task (Table 1: SOTS, Rain100L, BSD68 sigma 15/25/50) | 5task (SOTS, Rain100L, BSD68 sigma 25, GoPro, LOL)"})
    sigmas: list[int] | None = field(default=None, metadata={"help": "denoise noise levels (default: the benchmark's, 15 25 50 for 3task, 25 for 5task)"})
    protocol: str = field(default="dynet", metadata={"help": "scoring convention: dynet (DyNet/PromptIR, RGB, crop x16) | dsrir (Rain100L on Y, crop x8)"})
    noise_seed: int = field(default=0, metadata={"help": "seed of the denoise test noise (official: 0)"})
    noise_seeding: str = field(default="per-sigma", metadata={"help": "per-sigma: np.random.seed(noise_seed) afresh for every (set, sigma); stream: seeded once, sigmas drawn one after another (what the official test.py process does)"})
    max_images: int | None = field(default=None, metadata={"help": "score only the first N images of each set (sorted); for quick looks, recorded in the JSON"})
    device: str = field(default="auto", metadata={"help": "torch device: auto (cuda when available) | cpu | cuda | cuda:N"})
    save_images: str | None = field(default=None, metadata={"help": "write restored PNGs to DIR/<model>/<column>/<name>.png"})
    json: str | None = field(default=None, metadata={"help": "write results (per image + means) as JSON here, and the markdown table beside it (.md)"})
    sweep_depths: list[str] | None = field(default=None, metadata={"help": "DyNet reuse vectors ('2,3,3,4' or s/l) to evaluate in turn: PSNR-vs-latency table + PNG plot"})
    table_from: list[str] | None = field(default=None, metadata={"help": "merge earlier --json results (one row each, named by file stem) into one --benchmark table; no model is run"})
    sweep_plot: str | None = field(default=None, metadata={"help": "PNG path for the sweep plot (default: beside --json, else sweep_depths.png)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the network (automatic dynamic shapes across image sizes; the first images wait for the compile, so per-image seconds then include it)"})
    channels_last: bool | None = field(default=None, metadata={"help": "channels_last weights (--no-channels-last turns off; default: on for cuda, off on cpu)"})


@dataclass
class TestSets:
    """Validated test sets, keyed by table column family."""
    denoise: dict[str, list[Path]]  # "BSD68" / "Urban100" -> clean files
    pairs: dict[str, tuple[str, list[rd.Pair]]]  # "SOTS" / "Rain100L" -> (task, pairs)


def collect_test_sets(*, bsd68: str | None, urban100: str | None, rain100l: str | None,
                      sots: str | None, max_images: int | None = None, gopro: str | None = None,
                      lol: str | None = None) -> TestSets:
    """List and validate every given set up front (raises DatasetLayoutError with a clear message)."""
    cut = (lambda xs: xs[:max_images]) if max_images else (lambda xs: xs)
    denoise = {name: cut(rd.list_images(p, what=f"{name} (--{name.lower()})"))
               for name, p in (("BSD68", bsd68), ("Urban100", urban100)) if p}
    pairs = {}
    if sots:
        pairs["SOTS"] = ("dehaze", cut(rd.list_dehaze_pairs(sots, what="SOTS (--sots)")))
    if rain100l:
        pairs["Rain100L"] = ("derain", cut(rd.list_derain_pairs(rain100l, what="Rain100L (--rain100l)")))
    for column, task, folder in (("GoPro", "deblur", gopro), ("LOL", "lowlight", lol)):
        if folder:
            pairs[column] = (task, cut(rd.list_same_name_pairs(folder, rd.TASK_PAIR_DIRS[task],
                                                                what=f"{column} (--{column.lower()})")))
    if not denoise and not pairs:
        raise rd.DatasetLayoutError("no test set given: pass at least one of --sots --rain100l --bsd68 --urban100 --gopro --lol")
    return TestSets(denoise=denoise, pairs=pairs)


def _to_tensor(img: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(to_float01(img)).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def _run_one(restorer: Restorer, lq: np.ndarray, device: str) -> tuple[np.ndarray, float]:
    x = _to_tensor(lq, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = restorer(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    arr = np.clip(out[0].float().cpu().numpy().transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)
    return arr, dt


def score_column(restorer: Restorer, items, *, column: str, y_channel: bool, device: str,
                 save_dir: Path | None, total: int, warmup: bool = False) -> dict:
    """Restore and score every (name, lq, gt) of one column; per-image rows + means.

    ``warmup`` runs the first image once untimed first (allocator / kernel selection).
    """
    rows, times = [], []
    for name, lq, gt in tqdm(items, total=total, desc=column, leave=False):
        if warmup and restorer.model is not None:
            _run_one(restorer, lq, device)
            warmup = False
        out, dt = _run_one(restorer, lq, device)
        p, s = score_pair(to_float01(gt), out, y_channel=y_channel)
        rows.append({"name": name, "psnr": p, "ssim": s})
        times.append(dt)
        if save_dir is not None:
            dest = save_dir / column.replace(" σ", "_sigma").replace(" ", "_") / f"{name}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(out * 255.0).astype(np.uint8)).save(dest)
    return {"psnr": mean_or_nan([r["psnr"] for r in rows]), "ssim": mean_or_nan([r["ssim"] for r in rows]),
            "n": len(rows), "seconds_per_image": mean_or_nan(times), "per_image": rows}


def evaluate(restorer: Restorer, sets: TestSets, *, protocol: Protocol, sigmas: list[int],
             noise_seed: int = 0, noise_seeding: str = "per-sigma", device: str = "cpu",
             save_images: str | None = None, warmup: bool = True, benchmark: str = "3task") -> dict:
    """All columns for one restorer. Column names: 'SOTS', 'Rain100L', 'BSD68 σ15', ..."""
    if noise_seeding not in ("per-sigma", "stream"):
        raise ValueError(f"--noise-seeding must be per-sigma or stream, got {noise_seeding!r}")
    save_dir = Path(save_images) / restorer.name.replace("/", "_").replace(":", "_") if save_images else None
    columns: dict[str, dict] = {}
    for column, (task, pairs) in sets.pairs.items():
        columns[column] = score_column(
            restorer, rd.iter_pair_set(pairs, protocol.crop_base), column=column,
            y_channel=protocol.derain_y_channel and task == "derain", device=device,
            save_dir=save_dir, total=len(pairs), warmup=warmup and not columns)
    stream = np.random.RandomState(noise_seed)
    for set_name, files in sets.denoise.items():
        for sigma in sigmas:
            rng = stream if noise_seeding == "stream" else np.random.RandomState(noise_seed)
            column = f"{set_name} σ{sigma}"
            columns[column] = score_column(
                restorer, rd.iter_denoise_set(files, sigma, protocol.crop_base, rng), column=column,
                y_channel=False, device=device, save_dir=save_dir, total=len(files), warmup=warmup and not columns)
    return {"model": restorer.name, "arch": restorer.arch,
            "reuse": list(restorer.reuse) if restorer.reuse else None,
            "protocol": protocol.name, "protocol_description": protocol.description,
            "noise_seed": noise_seed, "noise_seeding": noise_seeding,
            "columns": columns, "table1_average": eval_report.table1_average(columns),
            "benchmark": benchmark,
            "benchmark_average": eval_report.table1_average(columns, get_benchmark(benchmark).columns)}


def _merged_table(cfg: EvalConfig, bench) -> dict:
    """One table from several result files (e.g. DyNet-S and -L rows, pre-trained vs from scratch)."""
    runs = eval_report.load_runs(cfg.table_from)
    for r in runs:
        r["benchmark_average"] = eval_report.table1_average(r["columns"], bench.columns)
    md = eval_report.table1_markdown(runs, bench.columns, "benchmark_average")
    md += f"\nBenchmark: **{bench.name}** — {bench.description}"
    print(md)
    if cfg.json:
        atomic_write_text(Path(cfg.json).with_suffix(".md"), md + "\n")
        atomic_write_json(cfg.json, eval_report.json_safe({"table_from": cfg.table_from, "runs": runs}))
    return {"runs": runs, "markdown": md}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(EvalConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    protocol, bench = get_protocol(cfg.protocol), get_benchmark(cfg.benchmark)
    cfg.sigmas = list(cfg.sigmas or bench.sigmas)
    if cfg.table_from:
        return _merged_table(cfg, bench)
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    sets = collect_test_sets(bsd68=cfg.bsd68, urban100=cfg.urban100, rain100l=cfg.rain100l,
                             sots=cfg.sots, max_images=cfg.max_images, gopro=cfg.gopro, lol=cfg.lol)
    log.info("test sets: %s", ", ".join([f"{k} {len(v[1])} pairs" for k, v in sets.pairs.items()]
                                        + [f"{k} {len(v)} images x sigmas {list(cfg.sigmas)}" for k, v in sets.denoise.items()]))
    restorer = load_restorer(model=cfg.model, checkpoint=cfg.checkpoint,
                             official_checkpoint=cfg.official_checkpoint, arch=cfg.arch,
                             variant=cfg.variant, device=cfg.device)
    if restorer.model is not None and (cfg.compile or cfg.channels_last is not False):
        from dynet_model.compiled import accelerate_for_inference
        restorer = dataclasses.replace(restorer, model=accelerate_for_inference(
            restorer.model, device=cfg.device, compile=cfg.compile, channels_last=cfg.channels_last))
    log.info("model %s (arch %s); protocol %s", restorer.name, restorer.arch, protocol.name)
    kwargs = {"protocol": protocol, "sigmas": list(cfg.sigmas), "noise_seed": cfg.noise_seed,
              "noise_seeding": cfg.noise_seeding, "device": cfg.device, "save_images": cfg.save_images,
              "benchmark": bench.name}
    if cfg.sweep_depths:
        from dynet_model.variants import parse_reuse
        vectors = [tuple(parse_reuse(v)) for v in cfg.sweep_depths]
        runs = [evaluate(restorer.with_reuse(v), sets, **kwargs) for v in vectors]
        md = eval_report.sweep_markdown(runs)
        plot = cfg.sweep_plot or (str(Path(cfg.json).with_suffix(".sweep.png")) if cfg.json else "sweep_depths.png")
        eval_report.sweep_plot(runs, plot)
        result = {"sweep": runs, "plot": plot, "max_images": cfg.max_images}
        log.info("sweep plot written to %s", plot)
    else:
        run = evaluate(restorer, sets, **kwargs)
        md = eval_report.table1_markdown([run], bench.columns, "benchmark_average")
        md += f"\nBenchmark: **{bench.name}** — {bench.description}"
        result = {**run, "max_images": cfg.max_images}
    print(md)
    if cfg.json:
        atomic_write_json(cfg.json, eval_report.json_safe(result))
        atomic_write_text(Path(cfg.json).with_suffix(".md"), md + "\n")
        log.info("results written to %s (+ .md)", cfg.json)
    return result


if __name__ == "__main__":
    main()
