"""The demo's stages: each calls a real command's ``main(argv)`` with the demo's flags.

A stage function takes the run's :class:`DemoContext` and returns ``{"artefacts": {label: path},
"info": {...}, "argv": [...]}``; :mod:`pipeline.demo` times it, records it and skips it on a rerun.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from curation.layout import METRIC_COLUMNS
from curation.thresholds import Thresholds
from pipeline import demo_data
from pipeline.httpserve import serve_folder

_LOG = logging.getLogger("pipeline.demo")


@dataclass(frozen=True)
class DemoContext:
    out: Path
    sample: demo_data.Sample
    workers: int
    min_side: int
    patch: int
    thresholds: str
    steps: int
    finetune_steps: int
    batch_size: int
    crop: int
    threads: int
    sigma: int
    variant: str
    shard_size: str

    def p(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)


def _cmd(label: str, argv: list[str]) -> list[str]:
    print(f"\n$ python -m {label} {' '.join(argv)}", flush=True)
    return argv


def stage_sample(ctx: DemoContext) -> dict:
    served = demo_data.copy_photos(ctx.sample.download, ctx.p("sample", "served"))
    ingest = demo_data.copy_photos(ctx.sample.ingest, ctx.p("sample", "local"))
    heldout = demo_data.write_heldout(ctx.sample.heldout, ctx.p("sample", "heldout"), ctx.sample.heldout_crop)
    noisy = demo_data.write_noisy(heldout[0], ctx.p("sample", "restore_input", f"{heldout[0].stem}_sigma{ctx.sigma}.png"),
                                  ctx.sigma)
    lic = demo_data.licences(ctx.sample)
    (ctx.p("sample", "LICENCES.json")).write_text(json.dumps(lic, indent=1) + "\n")
    print(f"sample: {len(served)} photographs to serve over HTTP, {len(ingest)} for the local-folder ingest, "
          f"{len(heldout)} held back for evaluation (never curated or trained on); from {demo_data.skimage_data_dir()}")
    return {"artefacts": {"served photos": ctx.p("sample", "served"), "ingest folder": ctx.p("sample", "local"),
                          "held-out test set": ctx.p("sample", "heldout"), "restore input": noisy,
                          "licences": ctx.p("sample", "LICENCES.json")},
            "info": {"download": [p.name for p in served], "ingest": [p.name for p in ingest],
                     "heldout": [p.name for p in heldout]}}


def _previous_port(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["port"])
    except (OSError, ValueError, KeyError):
        return 0


def stage_download(ctx: DemoContext) -> dict:
    from curation import download

    urls, state = ctx.p("urls", "laion_hr_demo.parquet"), ctx.p("urls", "server.json")
    with serve_folder(ctx.p("sample", "served"), port=_previous_port(state)) as base:
        port = int(base.rsplit(":", 1)[1])
        if _previous_port(state) != port or not urls.exists():
            demo_data.write_url_parquet(ctx.sample.download, base, urls)
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"port": port}) + "\n")
        print(f"loopback HTTP server at {base}; URL parquet {urls} (Laion-HR columns; one broken URL)")
        argv = _cmd("curation.download", [
            "--urls", str(urls), "--out", str(ctx.p("raw")), "--min-side", str(ctx.min_side),
            "--workers", str(ctx.workers), "--thread-count", "4", "--timeout", "10", "--slice-size", "100",
            "--encode-format", "png", "--encode-quality", "3", "--slice-timeout", "300",
            "--allow-private-addresses"])  # the demo's server is on loopback, refused by default
        summary = download.main(argv)
    if summary.get("failed_slices"):
        raise RuntimeError(f"download slices failed: {summary['failed_slices']}")
    return {"argv": argv, "artefacts": {"URL parquet": urls, "raw shards": ctx.p("raw")},
            "info": _jsonable(summary)}


def stage_ingest(ctx: DemoContext) -> dict:
    from curation import ingest

    argv = _cmd("curation.ingest", ["--folder", str(ctx.p("sample", "local")), "--source", "skimage-local",
                                    "--out", str(ctx.p("raw")), "--shard-size", "100"])
    summary = ingest.main(argv)
    return {"argv": argv, "artefacts": {"raw shards": ctx.p("raw")}, "info": _jsonable(summary)}


def stage_weights(ctx: DemoContext) -> dict:
    from curation import weights

    argv = _cmd("curation.weights", ["check", "--metrics", ",".join(METRIC_COLUMNS)])
    rc = weights.main(argv)
    statuses = weights.check(list(METRIC_COLUMNS))
    present = [s.metric for s in statuses if s.present and not s.test_only]
    for s in statuses:
        if s.present and s.test_only:
            print(f"-> {s.metric}: the installed weights are TEST-ONLY ({s.path}); not used by the demo")
    missing = [m for m in METRIC_COLUMNS if m not in present]
    if missing:
        print(f"-> metric weights missing for {', '.join(missing)}: the demo scores with the smaller metric set "
              f"--metrics {','.join(present)} (no score is invented for the missing metric)")
    else:
        print(f"-> all metric weights present: scoring with {','.join(METRIC_COLUMNS)}")
    return {"argv": argv, "artefacts": {}, "info": {"exit_code": rc, "metrics": present, "missing": missing}}


def stage_score(ctx: DemoContext, metrics: list[str]) -> dict:
    from curation import score

    argv = _cmd("curation.score", [str(ctx.p("raw")), "--out", str(ctx.p("scores")), "--metrics", ",".join(metrics),
                                   "--workers", str(ctx.workers)])  # score measures; the filter applies --min-side
    rc = score.main(argv)
    if rc != 0:
        raise RuntimeError(f"curation.score exited with {rc} (see its log above)")
    rows = [r for f in sorted(ctx.p("scores").glob("[0-9]*.parquet"))
            for r in pq.read_table(f, columns=["status"]).to_pylist()]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"argv": argv, "artefacts": {"score tables": ctx.p("scores")},
            "info": {"metrics": metrics, "rows": len(rows), "statuses": statuses}}


def thresholds_for(thresholds: str, metrics: list[str]) -> str:
    """The demo thresholds restricted to the metrics that were scored (the filter's threshold syntax)."""
    return str(Thresholds.parse(thresholds).only(metrics))


def stage_filter(ctx: DemoContext, metrics: list[str]) -> dict:
    from curation import filter as filt

    argv = _cmd("curation.filter", ["--scores", str(ctx.p("scores")), "--thresholds",
                                    thresholds_for(ctx.thresholds, metrics), "--min-side", str(ctx.min_side),
                                    "--out", str(ctx.p("kept.parquet"))])
    filt.main(argv)
    stats = json.loads(ctx.p("filter_stats.json").read_text())
    if not stats.get("kept"):
        raise RuntimeError("the filter kept no image; loosen --thresholds")
    return {"argv": argv, "artefacts": {"kept table": ctx.p("kept.parquet"),
                                        "decisions": ctx.p("decisions.parquet"),
                                        "filter stats": ctx.p("filter_stats.json")},
            "info": {k: stats.get(k) for k in ("total", "kept", "dropped", "thresholds", "dropped_by_reason")}}


def stage_shard(ctx: DemoContext) -> dict:
    from curation import shard

    argv = _cmd("curation.shard", ["--kept", str(ctx.p("kept.parquet")), "--raw", str(ctx.p("raw")),
                                   "--out", str(ctx.p("shards")), "--patch", str(ctx.patch),
                                   "--shard-size", ctx.shard_size, "--workers", str(ctx.workers)])
    shard.main(argv)
    manifest = json.loads(ctx.p("shards", "manifest.json").read_text())
    if not manifest.get("total_samples"):
        raise RuntimeError("no patches were written (every patch flat?)")
    return {"argv": argv, "artefacts": {"patch shards": ctx.p("shards"), "manifest": ctx.p("shards", "manifest.json")},
            "info": {"shards": len(manifest["shards"]), "total_samples": manifest["total_samples"],
                     "patch_size": manifest.get("patch_size")}}


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))
