"""``python -m curation.score raw/ --out scores/``: NIQE / BRISQUE / NIMA for every image of every raw shard.

One Dask task per complete raw shard without a score table (``curation.layout.pending_scores``), run by
:func:`curation.scoring.shard_task.score_shard`; metrics are built once per worker process and reused.
Before any worker starts, the weight files of the requested metrics are checked
(``curation.weights.require``); a missing file stops the run with a message naming it.

Score measures, the filter decides: every decodable image gets its width, height and scores (no
size or aspect rule here; those are ``curation.filter``'s), so re-filtering never needs a rescore.

Resumable and idempotent: a shard whose ``scores/NNNNN.parquet`` exists is skipped; outputs are
written atomically, so a worker killed mid-task leaves nothing behind and Dask reruns the task
(``--retries``). The output folder is a stage folder (``common.stagefolder``): metrics, weight
hashes and ``--max-pixels`` are recorded in ``_stage.json``; a rerun with others exits 2 naming
them unless ``--overwrite`` (which deletes the score tables); a second concurrent run exits 2 naming
the holder. Prints a progress bar over shards, the dashboard address and a final summary;
``scores/_summary.json`` records the last run.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from dask.base import tokenize
from dask.distributed import Client, as_completed
from tqdm import tqdm

from common.atomic import atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import DEFAULT_MAX_PIXELS
from common.outputerrors import exit_on_write_error
from common.stagefolder import StageRefused, open_stage_folder, refuse_exit
from curation.cluster import DASHBOARD_HELP, DEFAULT_DASHBOARD, dask_client
from curation.layout import list_raw_shards, pending_scores
from curation.scoring.gpu import cuda_local_client, task_resources
from curation.scoring.isolation import isolate_shard
from curation.scoring.metrics import ENGINES, METRICS, parse_metrics, pyiqa_version
from curation.scoring.shard_task import (
    ScoreSettings,
    ShardResult,
    score_shard,
)
from curation.weights import MissingWeightsError, check, file_sha256, require

_LOG = logging.getLogger(__name__)


@dataclass
class ScoreConfig:
    """Score every image of every complete raw shard with NIQE / BRISQUE / NIMA (pyiqa) on Dask."""

    raw: str = field(metadata={"positional": True, "aliases": ["--raw"], "help": "raw shard folder (NNNNN.tar/.parquet/_stats.json), positional or --raw"})
    out: str = field(default="scores", metadata={"help": "output folder for NNNNN.parquet score tables"})
    metrics: str = field(default="niqe,brisque,nima", metadata={
        "help": "comma-separated metrics; e.g. niqe,brisque to run without NIMA weights"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when this machine has one) | cpu | cuda (metrics run there inside each worker)"})
    engine: str = field(default="fast", metadata={
        "help": "fast: our NIQE/BRISQUE engine (equal to pyiqa's scores, 8-16x faster per core, memory-bounded); "
                "pyiqa: pyiqa itself (the reference)"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={
        "help": "decompression-bomb guard: images with more pixels get status too_large (not decoded); "
                "size and aspect rules are curation.filter's"})
    nima_batch: int = field(default=16, metadata={"help": "images per NIMA forward pass"})
    scheduler: str | None = field(default=None, metadata={"help": "address of a running Dask scheduler (else a LocalCluster)"})
    workers: int = field(default=2, metadata={"help": "LocalCluster worker processes (1 thread each) when no --scheduler"})
    dashboard_address: str = field(default=DEFAULT_DASHBOARD, metadata={"help": DASHBOARD_HELP})
    retries: int = field(default=2, metadata={"help": "Dask retries per shard task (a killed worker is survived)"})
    overwrite: bool = field(default=False, metadata={
        "help": "when --out holds scores made with other settings (metrics, weights, --max-pixels): delete "
                "them and rescore (default: refuse with exit code 2, naming each difference)"})


@dataclass
class RunSummary:
    shards_total: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    shards_failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    images: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)  # address -> images, busy seconds

    def add(self, res: ShardResult) -> None:
        if res.skipped:
            self.shards_skipped += 1
        elif res.error:
            self.shards_failed[res.shard] = res.error
        elif res.written:
            self.shards_written += 1
            self.rows += res.rows
            self.images += res.images
            for k, v in res.statuses.items():
                self.statuses[k] = self.statuses.get(k, 0) + v
            for k, v in res.stage_seconds.items():
                self.stage_seconds[k] = self.stage_seconds.get(k, 0.0) + v
            w = self.workers.setdefault(res.worker or "local", {"images": 0, "seconds": 0.0})
            w["images"] += res.images
            w["seconds"] += res.seconds

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["images_per_s"] = round(self.images / self.seconds, 3) if self.seconds > 0 else None
        # per stage: images per second of that stage's own time (summed over workers, i.e. per worker core)
        out["stage_images_per_s"] = {k: round(self.images / v, 2) for k, v in self.stage_seconds.items() if v > 0}
        out["worker_images_per_s"] = {a: round(w["images"] / w["seconds"], 2) for a, w in self.workers.items()
                                      if w["seconds"] > 0}
        return out


def build_settings(metrics: Sequence[str], weight_paths: dict[str, str], *, device: str = "cpu",
                   max_pixels: int = DEFAULT_MAX_PIXELS, nima_batch: int = 16, engine: str = "fast") -> ScoreSettings:
    """Settings for the workers, with the run metadata (variants, versions, weight hashes) stored in outputs."""
    statuses = {s.metric: s for s in check(metrics)}
    meta = {"pyiqa_version": pyiqa_version(), "torch_version": torch.__version__, "engine": engine, "metrics": {}}
    for m in metrics:
        spec = METRICS[m]
        st = statuses[m]
        meta["metrics"][m] = {"pyiqa_name": spec.pyiqa_name, "variant": spec.variant,
                              "lower_better": spec.lower_better, "weight_file": spec.weight_file,
                              "weight_origin": st.origin, "weight_sha256": file_sha256(weight_paths[m]),
                              "test_only_weights": st.test_only}
    return ScoreSettings(metrics=tuple(metrics), weight_paths=tuple(sorted(weight_paths.items())), device=device,
                         max_pixels=max_pixels, nima_batch=nima_batch, engine=engine, run_metadata=json.dumps(meta))


def stage_settings(settings: ScoreSettings) -> dict:
    """What decides the score tables' content (recorded in ``scores/_stage.json``; not workers or device)."""
    meta = json.loads(settings.run_metadata).get("metrics", {})
    return {"metrics": list(settings.metrics), "max_pixels": settings.max_pixels, "engine": settings.engine,
            "weights_sha256": {m: meta.get(m, {}).get("weight_sha256") for m in settings.metrics}}


def clear_outputs(out_dir: Path) -> None:
    """``--overwrite``: delete the score tables and run records (called while holding the folder lock)."""
    for pattern in ("[0-9]*.parquet", ".*.tmp", "_summary.json", "_score_config.yaml"):
        for path in out_dir.glob(pattern):
            path.unlink(missing_ok=True)


def score_raw(raw_dir: str | Path, out_dir: str | Path, settings: ScoreSettings, client: Client,
              retries: int = 2, resources: dict[str, float] | None = None) -> RunSummary:
    """Submit one task per complete raw shard without a score file; wait with a progress bar."""
    raw_dir, out_dir = Path(raw_dir).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_ids = list_raw_shards(raw_dir)
    summary = RunSummary(shards_total=len(raw_ids))
    todo = [sid.name for sid in pending_scores(raw_ids, out_dir)]
    summary.shards_skipped = len(raw_ids) - len(todo)
    _LOG.info("%d complete raw shard(s); %d already scored, %d to score", len(raw_ids), summary.shards_skipped, len(todo))
    start = time.time()
    run_token = tokenize(str(out_dir), settings, time.time())  # distinct keys per run and output folder
    futures = {client.submit(score_shard, str(raw_dir), str(out_dir), s, settings, key=f"score-{s}-{run_token}",
                             retries=retries, pure=False, resources=resources): s for s in todo}
    with tqdm(total=len(futures), desc="scoring shards", unit="shard") as bar:
        for fut in as_completed(list(futures)):
            try:
                res = fut.result()
            except Exception as exc:  # the task failed after its retries (e.g. worker killed repeatedly)
                res = _isolate(client, raw_dir, out_dir, futures[fut], settings, exc, resources)
            summary.add(res)
            bar.update(1)
            bar.set_postfix(images=summary.images)
    summary.seconds = time.time() - start
    return summary


def _isolate(client: Client, raw_dir: Path, out_dir: Path, shard: str, settings: ScoreSettings,
             exc: BaseException, resources: dict[str, float] | None) -> ShardResult:
    """Rescore a shard whose task failed image by image (bisection); only the culprit image gets a status."""
    try:
        return isolate_shard(client, str(raw_dir), str(out_dir), shard, settings, exc, resources=resources)
    except Exception as inner:  # isolation itself failed: report the shard, as before
        return ShardResult(shard=shard, written=False, error=f"{type(exc).__name__}: {exc}; isolation: {inner}")


def _print_summary(summary: RunSummary, out_dir: Path) -> None:
    d = summary.as_dict()
    print(f"scored {d['images']} image(s) in {d['shards_written']} shard(s) "
          f"({d['shards_skipped']} skipped, {len(d['shards_failed'])} failed) in {d['seconds']:.1f} s "
          f"= {d['images_per_s']} images/s", flush=True)
    print("statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(d["statuses"].items())), flush=True)
    if d["stage_images_per_s"]:
        print("images/s per stage (one worker core): " + ", ".join(
            f"{k} {v}" for k, v in d["stage_images_per_s"].items()), flush=True)
    for addr, rate in sorted(d["worker_images_per_s"].items()):
        print(f"worker {addr}: {d['workers'][addr]['images']} image(s), {rate} images/s", flush=True)
    for shard, err in d["shards_failed"].items():
        print(f"FAILED shard {shard}: {err}", file=sys.stderr)
    atomic_write_json(out_dir / "_summary.json", d)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(ScoreConfig, argv)
    try:
        metrics = parse_metrics(cfg.metrics)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if cfg.engine not in ENGINES:
        raise SystemExit(f"error: unknown --engine {cfg.engine}; choose from {', '.join(ENGINES)}")
    if not Path(cfg.raw).is_dir():
        raise SystemExit(f"error: raw folder {cfg.raw} does not exist")
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but no CUDA device is available here")
    try:
        weight_paths = require(metrics)  # before any worker starts
    except MissingWeightsError as exc:
        raise SystemExit(f"error: missing metric weights\n{exc}") from exc
    settings = build_settings(metrics, weight_paths, device=cfg.device, max_pixels=cfg.max_pixels,
                              nima_batch=cfg.nima_batch, engine=cfg.engine)
    out_dir = Path(cfg.out).resolve()
    local_cuda = cfg.device.startswith("cuda") and not cfg.scheduler
    try:
        with exit_on_write_error("curation.score", out_dir), \
                open_stage_folder(out_dir, "score", stage_settings(settings), overwrite=cfg.overwrite,
                                  clear=clear_outputs):
            save_config(cfg, out_dir / "_score_config.yaml")  # only once the settings are known to apply
            with (cuda_local_client(cfg.workers, dashboard_address=cfg.dashboard_address) if local_cuda
                  else dask_client(cfg.scheduler, cfg.workers, dashboard_address=cfg.dashboard_address)) as client:
                if cfg.scheduler:
                    print(f"Dask dashboard: {client.dashboard_link}", flush=True)
                summary = score_raw(cfg.raw, out_dir, settings, client, retries=cfg.retries,
                                    resources=task_resources(cfg.device, cfg.scheduler))
            _print_summary(summary, out_dir)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    return 1 if summary.shards_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
