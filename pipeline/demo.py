"""The main job in one command: the real pipeline end to end on a small bundled sample.

``python -m pipeline.demo --demo [--out demo_out] [--workers 2] [--steps 300]`` runs, each through
its real command's ``main(argv)``: download (img2dataset from a loopback HTTP server, one broken URL)
→ local-folder ingest → metric-weight check → score (Dask LocalCluster) → filter → shard → CPU
pre-training of a tiny DyNet → a short denoise fine-tune → evaluation on held-out photographs (+ identity floor) → restore one
image → curation report. It prints every command, where each artefact is and how long each stage
took, and writes ``OUT/summary.json``.

Rerunning with the same ``--out`` skips the stages that finished (``OUT/.stages/NAME.json`` is written
last by each); a stage interrupted midway resumes through its own command's resume.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from curation.thresholds import DEFAULT_THRESHOLDS
from pipeline import demo_data
from pipeline.demo_stages import (
    DemoContext,
    stage_download,
    stage_filter,
    stage_ingest,
    stage_sample,
    stage_score,
    stage_shard,
    stage_weights,
)
from pipeline.demo_train import (
    stage_evaluate,
    stage_finetune,
    stage_pretrain,
    stage_report,
    stage_restore,
)

_LOG = logging.getLogger("pipeline.demo")
STAGES = ("sample", "download", "ingest", "weights", "score", "filter", "shard", "pretrain", "finetune", "evaluate",
          "restore", "report")


@dataclass
class PipelineConfig:
    """Run the whole pipeline (download → … → report) on the bundled demo sample."""

    demo: bool = field(default=False, metadata={"help": "run the end-to-end demo on the bundled sample (required: "
                                                        "the only mode so far)"})
    out: str = field(default="demo_out", metadata={"help": "output folder; rerun with the same folder to skip "
                                                           "finished stages (default demo_out)"})
    workers: int = field(default=2, metadata={"help": "Dask LocalCluster worker processes for download / score / "
                                                      "shard (default 2)"})
    sample: str = field(default="full", metadata={"help": "full: 4 served + 2 ingested + 2 held-out photographs; "
                                                          "small: 2 + 1 + 1 (the CI setting) (default full)"})
    min_side: int = field(default=256, metadata={"help": "minimum image side for download / filter; reduced "
                                                         "from the real 1024 because the sample photos are small "
                                                         "(default 256)"})
    thresholds: str = field(default=str(DEFAULT_THRESHOLDS), metadata={
        "help": "filter thresholds; metrics that were not scored are left out (default: the documented real "
                "defaults niqe=6,brisque=45,nima=4.5; on the full sample they drop 3 of the 6 photographs)"})
    patch: int = field(default=128, metadata={"help": "patch side for curation.shard; reduced from the real 512 for "
                                                      "the small sample (default 128)"})
    shard_size: str = field(default="1MB", metadata={"help": "target patch-shard size, small so the sample makes "
                                                             "several shards (default 1MB)"})
    steps: int = field(default=120, metadata={"help": "pre-training steps of the tiny model (default 120)"})
    finetune_steps: int = field(default=150, metadata={"help": "denoise fine-tuning steps after pre-training, on the "
                                                               "curated patches (0 = none) (default 150)"})
    batch_size: int = field(default=8, metadata={"help": "pre-training batch size (default 8)"})
    crop: int = field(default=64, metadata={"help": "pre-training crop from each patch (default 64; paper 128)"})
    threads: int = field(default=1, metadata={"help": "torch threads of the training process (default 1: no OpenMP "
                                                       "spin-waiting against the Dask workers on a small CPU)"})
    sigma: int = field(default=25, metadata={"help": "noise level of the held-out evaluation and the restore "
                                                     "input (default 25)"})
    variant: str = field(default="s", metadata={"help": "DyNet reuse vector used to evaluate / restore (default s)"})


def make_context(cfg: PipelineConfig) -> DemoContext:
    if cfg.sample not in demo_data.SAMPLES:
        raise SystemExit(f"--sample must be one of {', '.join(demo_data.SAMPLES)}")
    return DemoContext(out=Path(cfg.out).resolve(), sample=demo_data.SAMPLES[cfg.sample], workers=cfg.workers,
                       min_side=cfg.min_side, patch=cfg.patch, thresholds=cfg.thresholds, steps=cfg.steps,
                       batch_size=cfg.batch_size, crop=cfg.crop, finetune_steps=cfg.finetune_steps, threads=cfg.threads, sigma=cfg.sigma,
                       variant=cfg.variant, shard_size=cfg.shard_size)


def _check_same_config(cfg: PipelineConfig, out: Path) -> None:
    """A rerun into the same folder must use the same settings (finished stages are reused)."""
    path = out / "demo_config.json"
    now = {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers", "threads")}
    if path.exists():
        old = json.loads(path.read_text())
        if old != now:
            diff = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))
            raise SystemExit(f"{out} holds a demo run made with different settings ({', '.join(diff)}); "
                             "use a fresh --out folder or the same flags")
    else:
        atomic_write_json(path, now)


class StageRunner:
    """Runs stages in order, timing each, skipping those finished in an earlier run."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.marks = out / ".stages"
        self.records: dict[str, dict] = {}

    def run(self, name: str, fn: Callable[[], dict]) -> dict:
        mark = self.marks / f"{name}.json"
        if mark.exists():
            rec = json.loads(mark.read_text())
            rec["skipped"] = True
            print(f"\n=== {name}: done in an earlier run ({rec['seconds']:.1f} s then); skipped", flush=True)
            self.records[name] = rec
            return rec
        print(f"\n=== {name}", flush=True)
        t0 = time.perf_counter()
        result = fn()
        rec = {"stage": name, "seconds": round(time.perf_counter() - t0, 2), "skipped": False,
               "argv": [str(a) for a in result.get("argv", [])],
               "artefacts": {k: str(v) for k, v in result.get("artefacts", {}).items()},
               "info": result.get("info", {})}
        atomic_write_json(mark, rec)  # the completion marker, written last
        self.records[name] = rec
        print(f"=== {name}: {rec['seconds']:.1f} s", flush=True)
        return rec


def run_demo(cfg: PipelineConfig) -> dict:
    ctx = make_context(cfg)
    ctx.out.mkdir(parents=True, exist_ok=True)
    _check_same_config(cfg, ctx.out)
    print(f"demo: output in {ctx.out}; min side {cfg.min_side} px (real runs: 1024) and patch {cfg.patch} px "
          f"(real runs: 512), reduced for the small sample; {cfg.workers} Dask worker(s); {cfg.steps} CPU "
          "pre-training steps of a tiny DyNet", flush=True)
    runner = StageRunner(ctx.out)
    t0 = time.perf_counter()
    runner.run("sample", lambda: stage_sample(ctx))
    runner.run("download", lambda: stage_download(ctx))
    runner.run("ingest", lambda: stage_ingest(ctx))
    metrics = runner.run("weights", lambda: stage_weights(ctx))["info"]["metrics"]
    runner.run("score", lambda: stage_score(ctx, metrics))
    runner.run("filter", lambda: stage_filter(ctx, metrics))
    runner.run("shard", lambda: stage_shard(ctx))
    runner.run("pretrain", lambda: stage_pretrain(ctx))
    runner.run("finetune", lambda: stage_finetune(ctx))
    runner.run("evaluate", lambda: stage_evaluate(ctx))
    runner.run("restore", lambda: stage_restore(ctx))
    runner.run("report", lambda: stage_report(ctx))
    evaluation = runner.records["evaluate"]["info"]
    summary = {"out": str(ctx.out), "config": asdict(cfg), "metrics": metrics,
               "heldout_psnr": {"network": evaluation["network"]["psnr"], "identity": evaluation["identity"]["psnr"],
                                "sigma": cfg.sigma},
               "total_seconds": round(time.perf_counter() - t0, 2),
               "stages": [runner.records[s] for s in STAGES]}
    atomic_write_json(ctx.out / "summary.json", summary)
    print_table(summary)
    return summary


def print_table(summary: dict) -> None:
    print("\n" + "=" * 100)
    print(f"{'stage':10s} {'seconds':>8s}  artefacts")
    for rec in summary["stages"]:
        secs = f"{rec['seconds']:.1f}" + ("*" if rec.get("skipped") else "")
        arts = list(rec["artefacts"].items()) or [("", "")]
        for i, (label, path) in enumerate(arts):
            head = f"{rec['stage']:10s} {secs:>8s}" if i == 0 else " " * 19
            print(f"{head}  {label + ': ' if label else ''}{_rel(path, summary['out'])}")
    print(f"{'total':10s} {summary['total_seconds']:8.1f}  (this run; * = done in an earlier run, its time then)")
    held = summary.get("heldout_psnr")
    if held:
        print(f"held-out σ{held['sigma']} PSNR: network {held['network']:.2f} dB, identity floor {held['identity']:.2f} dB "
              f"({held['network'] - held['identity']:+.2f} dB)")
    print(f"summary: {Path(summary['out']) / 'summary.json'}")


def _rel(path: str, root: str) -> str:
    try:
        return os.path.relpath(path, Path(root).parent) if path else ""
    except ValueError:
        return path


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's per-worker chatter hides the stages
    cfg = parse_config(PipelineConfig, argv)
    if not cfg.demo:
        raise SystemExit("pipeline.demo: only the bundled demo exists so far: pass --demo (see --help); "
                         "full-scale runs use each stage's own command (README: 'A full-scale recipe')")
    try:
        return run_demo(cfg)
    except Exception as exc:  # stage failures: say which, keep finished stages for the rerun
        traceback.print_exc()
        raise SystemExit(f"pipeline.demo: the demo stopped: {type(exc).__name__}: {exc}\n"
                         "finished stages are kept; rerun the same command to continue") from exc


if __name__ == "__main__":
    main()
