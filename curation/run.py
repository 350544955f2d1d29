"""Curate folders of your own photos in one command: ingest → score → filter → shard → report.

    python -m curation.run ~/photos ~/more_photos --out RUN [--metrics niqe,brisque] [--thresholds niqe=6]
        [--min-side 1024] [--patch 512] [--workers 2 | --scheduler tcp://host:8786]

Each step is the stage's own command (``curation.ingest``, ``score``, ``filter``, ``shard``,
``report``) run with the flags printed before it, so any step can be rerun or scaled up by hand. One
Dask LocalCluster (or the ``--scheduler`` given) serves every step. Rerunning the same command
resumes: ingest and score skip finished shards, the filter is recomputed (seconds), shard skips
finished patch shards, the report is rewritten.

Why it exists: with the stages' defaults (min side 1024, patch 512) ordinary photos are all dropped
or give no patch, and the stages only say so in a log line. This command prints what it kept and why
after each step and warns loudly, naming the flag to change, when a setting drops everything.

Layout of RUN: ``raw/`` ``scores/`` ``kept.parquet`` ``decisions.parquet`` ``filter_stats.json``
``shards/`` ``report/index.html`` and ``run_summary.json``. Exit status: 0 when patches were written,
1 when the run produced no patch (the warning says why), 2 for bad arguments.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from common.atomic import atomic_write_json
from common.cliconfig import parse_config, save_config

_LOG = logging.getLogger("curation.run")
ALL_METRICS = ("niqe", "brisque", "nima")


@dataclass
class RunConfig:
    """Curate folders of images end to end (ingest, score, filter, shard, report) on one Dask cluster."""

    folders: list[str] = field(metadata={"positional": True, "help": "folders of images (searched recursively); "
                                                                    "each becomes one `source`, named after it"})
    out: str = field(metadata={"help": "run folder: raw/ scores/ kept.parquet shards/ report/ (resumable)"})
    metrics: str = field(default="auto", metadata={
        "help": "comma-separated metrics of niqe, brisque, nima; auto = every metric whose weights are "
                "installed (NIQE/BRISQUE ship; NIMA needs `python -m curation.weights fetch`) (default auto)"})
    thresholds: str | None = field(default=None, metadata={
        "help": "metric=value list for curation.filter, e.g. niqe=6,brisque=45 (default: the documented "
                "defaults of the scored metrics)"})
    min_side: int = field(default=1024, metadata={
        "help": "drop images whose shorter side is below this (the paper's 1024; lower it for ordinary photos)"})
    patch: int = field(default=512, metadata={"help": "patch side of the shards (the paper's 512); an image "
                                                      "smaller than one patch gives none"})
    max_flat: float = field(default=0.5, metadata={"help": "drop patches whose flat area fraction is above this"})
    shard_size: str = field(default="1GB", metadata={"help": "target patch-shard size (1GB, 200MB, ...)"})
    workers: int = field(default=2, metadata={"help": "LocalCluster worker processes (ignored with --scheduler)"})
    scheduler: str | None = field(default=None, metadata={"help": "address of a running Dask scheduler "
                                                                 "(tcp://host:8786); default: a LocalCluster"})
    report_samples: int = field(default=16, metadata={"help": "images / patches per report grid"})


def source_name(folder: Path, used: set[str]) -> str:
    """A `source` value from the folder's name (lower case, [a-z0-9_-]), unique within the run."""
    base = re.sub(r"[^a-z0-9_-]+", "-", folder.resolve().name.lower()).strip("-") or "local"
    name, n = base, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return name


def resolve_metrics(spec: str) -> list[str]:
    from curation.weights import check

    if spec.strip().lower() != "auto":
        return [m.strip().lower() for m in spec.split(",") if m.strip()]
    statuses = check(list(ALL_METRICS))
    present = [s.metric for s in statuses if s.present and not s.test_only]
    missing = [m for m in ALL_METRICS if m not in present]
    if missing:
        print(f"--metrics auto: scoring with {','.join(present)}; no weights for {','.join(missing)} "
              "(python -m curation.weights fetch installs them)", flush=True)
    return present


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _cmd(module: str, argv: list[str]) -> list[str]:
    print(f"$ python -m {module} {' '.join(argv)}", flush=True)
    return argv


def warn(lines: Sequence[str]) -> None:
    """A warning nobody can miss: a framed block on stderr (and the log)."""
    bar = "!" * 100
    print("\n".join([bar, *(f"!! {line}" for line in lines), bar]), file=sys.stderr, flush=True)
    for line in lines:
        _LOG.warning("%s", line)


def shorter_sides(table_path: Path) -> list[int]:
    if not table_path.exists():
        return []
    rows = pq.read_table(table_path, columns=["width", "height"]).to_pylist()
    return sorted(min(r["width"], r["height"]) for r in rows if r["width"] and r["height"])


def explain_filter(stats: dict, sides: list[int], cfg: RunConfig) -> list[str]:
    """Warning lines when the filter kept nothing (empty list: it kept something)."""
    if stats.get("kept"):
        return []
    lines = [f"the filter kept NONE of {stats.get('total', 0)} image(s); reasons: "
             + ", ".join(f"{k} ({v})" for k, v in stats.get("dropped_by_reason", {}).items())]
    too_small = sum(v for k, v in stats.get("dropped_by_reason", {}).items()
                    if k.startswith("min_side") or k == "status:too_small")
    if too_small and sides:
        lines.append(f"{too_small} image(s) are smaller than --min-side {cfg.min_side}: your largest shorter side "
                     f"is {sides[-1]} px; rerun with e.g. --min-side {sides[len(sides) // 2]} (keeps about half by size)")
    if any(k.split(">")[0].split("<")[0] in ALL_METRICS for k in stats.get("dropped_by_reason", {})):
        lines.append("quality thresholds dropped images: look at report/index.html and loosen --thresholds")
    return lines


def explain_shard(manifest: dict, kept_sides: list[int], cfg: RunConfig) -> list[str]:
    """Warning lines when the shards hold no patch, and a note when some kept images gave none."""
    lines = []
    too_small = len(manifest.get("too_small", []))
    if manifest.get("total_samples"):
        if too_small:
            print(f"note: {too_small} kept image(s) are smaller than one {cfg.patch}-px patch and gave no patch",
                  flush=True)
        return lines
    lines.append(f"NO PATCHES were written from {len(kept_sides)} kept image(s)")
    if too_small:
        lines.append(f"{too_small} kept image(s) are smaller than one --patch {cfg.patch} patch (largest shorter "
                     f"side {kept_sides[-1] if kept_sides else '?'} px): rerun with --patch "
                     f"{max(64, (kept_sides[-1] // 64) * 64) if kept_sides else 256} or smaller, in a fresh --out")
    if manifest.get("tiles_dropped_flat"):
        lines.append(f"{manifest['tiles_dropped_flat']} tile(s) were dropped as flat (> {cfg.max_flat:g} flat area): "
                     "raise --max-flat to keep them")
    return lines


def _ingest(cfg: RunConfig, run: Path, scheduler: str) -> dict:
    from curation import ingest

    used: set[str] = set()
    summaries = {}
    for folder in cfg.folders:
        src = source_name(Path(folder), used)
        argv = _cmd("curation.ingest", ["--folder", folder, "--source", src, "--out", str(run / "raw"),
                                        "--scheduler", scheduler])
        summaries[src] = ingest.main(argv)
    return summaries


def _stages(cfg: RunConfig, run: Path, scheduler: str, metrics: list[str]) -> dict:
    from curation import filter as filt
    from curation import report, score, shard

    summary: dict = {"metrics": metrics}
    _banner("ingest")
    summary["ingest"] = {k: v.get("new_rows_by_status") for k, v in _ingest(cfg, run, scheduler).items()}
    _banner("score")
    rc = score.main(_cmd("curation.score", [str(run / "raw"), "--out", str(run / "scores"), "--metrics",
                                            ",".join(metrics), "--scheduler", scheduler]))
    if rc:
        raise SystemExit(f"curation.run: curation.score failed (exit {rc}); rerun the same command to retry")
    _banner("filter")
    filt_argv = ["--scores", str(run / "scores"), "--min-side", str(cfg.min_side), "--out", str(run / "kept.parquet")]
    filt.main(_cmd("curation.filter", filt_argv + (["--thresholds", cfg.thresholds] if cfg.thresholds else [])))
    stats = json.loads((run / "filter_stats.json").read_text())
    summary["filter"] = {k: stats.get(k) for k in ("total", "kept", "dropped", "thresholds", "dropped_by_reason")}
    problems = explain_filter(stats, shorter_sides(run / "decisions.parquet"), cfg)
    manifest: dict = {"total_samples": 0}
    if not problems:
        _banner("shard")
        manifest = shard.main(_cmd("curation.shard", [
            "--kept", str(run / "kept.parquet"), "--raw", str(run / "raw"), "--out", str(run / "shards"),
            "--patch", str(cfg.patch), "--max-flat", str(cfg.max_flat), "--shard-size", cfg.shard_size,
            "--scheduler", scheduler]))
        problems = explain_shard(manifest, shorter_sides(run / "kept.parquet"), cfg)
        summary["shard"] = {k: manifest.get(k) for k in ("total_samples", "images_tiled", "tiles_total",
                                                         "tiles_dropped_flat")}
        summary["shard"]["too_small"] = len(manifest.get("too_small", []))
    _banner("report")
    report.main(_cmd("curation.report", ["--root", str(run), "--out", str(run / "report"),
                                         "--samples", str(cfg.report_samples)]))
    summary.update(patches=manifest.get("total_samples", 0), warnings=problems,
                   report=str(run / "report" / "index.html"))
    return summary


def run(cfg: RunConfig) -> dict:
    missing = [f for f in cfg.folders if not Path(f).is_dir()]
    if missing:
        raise SystemExit(f"curation.run: not a folder: {', '.join(missing)}")
    if cfg.patch <= 0 or cfg.min_side < 0:
        raise SystemExit("curation.run: --patch must be > 0 and --min-side >= 0")
    run_dir = Path(cfg.out).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "run_config.yaml")
    metrics = resolve_metrics(cfg.metrics)
    if not metrics:
        raise SystemExit("curation.run: no metric to score with (see python -m curation.weights check)")
    logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's per-worker chatter hides the steps
    from curation.cluster import dask_client

    with dask_client(cfg.scheduler, cfg.workers) as client:
        summary = _stages(cfg, run_dir, cfg.scheduler or client.scheduler.address, metrics)
    atomic_write_json(run_dir / "run_summary.json", summary)
    _print_outcome(summary)
    return summary


def _print_outcome(summary: dict) -> None:
    f = summary["filter"]
    print(f"\nkept {f['kept']} of {f['total']} image(s) with {f['thresholds']}; dropped: "
          + (", ".join(f"{k} ({v})" for k, v in f["dropped_by_reason"].items()) or "none"), flush=True)
    print(f"patches: {summary['patches']}; report: {summary['report']}", flush=True)
    if summary["warnings"]:
        warn(summary["warnings"])


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(RunConfig, argv)
    summary = run(cfg)
    return 0 if summary["patches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
