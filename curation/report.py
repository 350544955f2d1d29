"""Curation report for choosing thresholds: ``python -m curation.report --root DIR --out report/``.

Writes PNG plots (Agg) of each metric's distribution (kept vs dropped, threshold marked), the
kept/dropped counts per reason, grids of random kept/dropped images and of kept/dropped (flat)
patches, the flat-fraction histogram, flat overlays on random kept images, and ``index.md`` +
``index.html`` linking them. Tables are found like ``curation.query`` finds them (decisions.parquet,
else scores/*.parquet; raw/; shards/). Thresholds: ``--thresholds`` > ``filter_stats.json``.
"""

from __future__ import annotations

import html
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from common.atomic import atomic_write_text
from common.cliconfig import parse_config
from curation import flatviz
from curation.query import table_sources
from curation.reporting.gallery import STYLE, split_reasons
from curation.reporting.grid import load_sources, patch_grid_from_tars, thumbnail_grid
from curation.reporting.sections import SectionSettings, build_sections
from curation.sharding import flat, tiling

_LOG = logging.getLogger("curation.report")
METRICS = ("niqe", "brisque", "nima")
HIGHER_IS_BETTER = {"niqe": False, "brisque": False, "nima": True}


@dataclass
class ReportConfig:
    """Plots and image grids of a curation run, to choose the filter and flat thresholds."""

    root: str = field(default=".", metadata={"help": "pipeline folder (raw/, scores/, decisions.parquet, kept.parquet, shards/); default ."})
    out: str = field(default="report", metadata={"help": "output folder for PNGs, index.md and index.html (default report)"})
    thresholds: str | None = field(default=None, metadata={
        "help": "niqe=…,brisque=…,nima=… to mark; default: read from filter_stats.json when present"})
    samples: int = field(default=16, metadata={"help": "images / patches per grid (default 16)"})
    seed: int = field(default=0, metadata={"help": "random seed for the grids (default 0)"})
    thumb: int = field(default=320, metadata={"help": "thumbnail side in pixels (default 320)"})
    crop: int = field(default=192, metadata={"help": "side of the 1:1 centre crop shown beside each thumbnail, "
                                                     "to judge sharpness (default 192)"})
    per_reason: int = field(default=6, metadata={"help": "example images per drop reason (default 6)"})


def parse_thresholds(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in METRICS:
            raise ValueError(f"bad threshold {part!r}: expected e.g. niqe=6,brisque=40,nima=4.5")
        out[name.strip()] = float(value)
    return out


def thresholds_from_stats(path: Path) -> dict[str, float]:
    """Metric thresholds from filter_stats.json: a ``thresholds`` dict of numbers or {max|min|value}."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    found = data.get("thresholds", data)
    out = {}
    for m in METRICS:
        v = found.get(m) if isinstance(found, dict) else None
        if isinstance(v, dict):
            v = next((v[k] for k in ("max", "min", "value", "threshold") if k in v), None)
        if isinstance(v, (int, float)):
            out[m] = float(v)
    return out


def _read(paths_or_glob: str, columns: list[str] | None = None) -> list[dict]:
    files = sorted(Path(paths_or_glob).parent.glob(Path(paths_or_glob).name))
    rows: list[dict] = []
    for f in files:
        names = pq.read_schema(f).names
        rows += pq.read_table(f, columns=[c for c in columns if c in names] if columns else None).to_pylist()
    return rows


def _arrow(paths_or_glob: str, columns: list[str]) -> pa.Table:
    """The table's columns (those present) as one Arrow table, for vectorised counts."""
    files = sorted(Path(paths_or_glob).parent.glob(Path(paths_or_glob).name))
    tables = [pq.read_table(f, columns=[c for c in columns if c in pq.read_schema(f).names]) for f in files]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def plot_metric(rows: list[dict], metric: str, threshold: float | None, out: Path) -> Path | None:
    values = [(r.get(metric), bool(r.get("kept"))) for r in rows if r.get(metric) is not None]
    if not values:
        return None
    kept = np.array([v for v, k in values if k], float)
    dropped = np.array([v for v, k in values if not k], float)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.histogram_bin_edges(np.array([v for v, _ in values], float), bins=40)
    ax.hist([kept, dropped], bins=bins, stacked=True, label=[f"kept ({kept.size})", f"dropped ({dropped.size})"],
            color=["tab:green", "tab:red"])
    if threshold is not None:
        side = "≥" if HIGHER_IS_BETTER[metric] else "≤"
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold: keep {side} {threshold:g}")
    ax.set_xlabel(f"{metric} ({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} is better)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"metric_{metric}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_reasons(rows: list[dict], out: Path) -> tuple[Path, dict[str, int]]:
    counts: dict[str, int] = {}
    for r in rows:  # one bar per single reason: an image dropped for two reasons counts in both
        labels = ["kept"] if r.get("kept") else split_reasons([r.get("drop_reason") or r.get("status") or "dropped"])
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    labels = sorted(counts, key=lambda k: (k != "kept", -counts[k], k))
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(labels) + 1.2))
    ax.barh(labels, [counts[k] for k in labels], color=["tab:green" if k == "kept" else "tab:red" for k in labels])
    for i, k in enumerate(labels):
        ax.text(counts[k], i, f" {counts[k]}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title("kept / dropped per reason (an image may have several)")
    fig.tight_layout()
    path = out / "reasons.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path, {k: counts[k] for k in labels}


def plot_flat_fractions(kept: list[dict], dropped: list[dict], max_flat: float | None, out: Path) -> Path | None:
    if not kept and not dropped:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 1, 21)
    ax.hist([[r["flat_fraction"] for r in kept], [r["flat_fraction"] for r in dropped]], bins=bins, stacked=True,
            color=["tab:green", "tab:red"], label=[f"kept patches ({len(kept)})", f"dropped as flat ({len(dropped)})"])
    if max_flat is not None:
        ax.axvline(max_flat, color="black", linestyle="--", label=f"--max-flat {max_flat:g}")
    ax.set_xlabel("flat fraction of the tile")
    ax.set_ylabel("tiles")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "flat_fraction.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _patch_grids(cfg: ReportConfig, shards_dir: Path, raw_dir: Path, out: Path, rng: random.Random,
                 kept: list[dict], dropped: list[dict]) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    if kept:
        chosen = rng.sample(kept, min(cfg.samples, len(kept)))
        paths["patches_kept"] = patch_grid_from_tars(shards_dir, chosen, out / "patches_kept.png", cfg.thumb,
                                                     "random kept patches (flat fraction)")
    if dropped:
        chosen = rng.sample(dropped, min(cfg.samples, len(dropped)))
        sources = load_sources(raw_dir, [{"key": d["source_key"], "raw_shard": d["raw_shard"]} for d in chosen])
        crops = [tiling.crop(sources[d["source_key"]], d["box"]) if d["source_key"] in sources else None for d in chosen]
        paths["patches_dropped"] = thumbnail_grid(crops, [f"{d['key']}\nflat {d['flat_fraction']:.2f}" for d in chosen],
                                                  out / "patches_dropped.png", cfg.thumb, "random patches dropped as flat")
    return paths


def _shard_params(shards_dir: Path) -> dict:
    path = shards_dir / "shard_config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _flat_overlays(decisions: list[dict], raw_dir: Path, params: dict, out: Path, rng: random.Random,
                   tiled: set[str]) -> Path | None:
    """Flat cells and kept/dropped tiles drawn on kept images that produced tiles (``tiled`` source keys)."""
    pool = [r for r in decisions if r.get("kept") and r.get("raw_shard") is not None and r.get("key") in tiled]
    chosen = rng.sample(pool, min(3, len(pool)))
    images = load_sources(raw_dir, chosen)
    shown = [(r["key"], images[r["key"]]) for r in chosen if r["key"] in images]
    if not shown:
        return None
    return flatviz.flat_figure(shown, out / "flat_overlays.png", int(params.get("patch", 512)),
                               int(params.get("flat_cell", flat.DEFAULT_CELL)),
                               float(params.get("flat_threshold", flat.DEFAULT_THRESHOLD)),
                               float(params.get("max_flat", 0.5)), dpi=70)


def write_index(out: Path, figures: dict[str, Path], summary: dict, sections: tuple[list[str], list[str]] = ((), ())
                ) -> None:
    lines = ["# Curation report", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    lines += ["", *sections[1]]
    parts = ["<html><head><meta charset='utf-8'><title>Curation report</title>", STYLE, "</head><body>",
             "<h1>Curation report</h1><table border='1' cellpadding='4'>"]
    parts += [f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items()]
    parts.append("</table>")
    parts += sections[0]
    for name, path in figures.items():
        lines += ["", f"## {name.replace('_', ' ')}", "", f"![{name}]({path.name})"]
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><a href='{path.name}'><img src='{path.name}' "
                     "style='max-width:100%'></a>")
    parts.append("</body></html>")
    for name, text in (("index.md", "\n".join(lines)), ("index.html", "\n".join(parts))):
        atomic_write_text(out / name, text + "\n")
        (out / name).chmod(0o644)  # temp files are created 0600


def build_report(cfg: ReportConfig) -> dict[str, Path]:
    root, out = Path(cfg.root), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = table_sources(root)
    rng = random.Random(cfg.seed)
    thresholds = thresholds_from_stats(Path(sources["kept"]).parent / "filter_stats.json") if "kept" in sources else {}
    thresholds.update(thresholds_from_stats(root / "filter_stats.json") if not thresholds else {})
    thresholds.update(parse_thresholds(cfg.thresholds) if cfg.thresholds else {})
    table = sources.get("decisions") or sources.get("scores")
    decisions = _read(table, ["key", "raw_shard", "kept", "drop_reason", "status", *METRICS]) if table else []
    if table == sources.get("scores"):  # no filter run yet: every scored image counts as not (yet) kept
        decisions = [{**r, "kept": False} for r in decisions]
    figures: dict[str, Path] = {}
    summary: dict[str, object] = {"images scored": len(decisions), "thresholds": thresholds or "none found"}
    if decisions:
        for m in METRICS:
            path = plot_metric(decisions, m, thresholds.get(m), out)
            if path:
                figures[f"metric_{m}"] = path
        figures["reasons"], counts = plot_reasons(decisions, out)
        summary.update({("images kept" if k == "kept" else f"images dropped: {k}"): v for k, v in counts.items()})
    shards_dir = root / "shards"
    kept_p = _read(sources["patches"], ["key", "shard", "flat_fraction", "source_key"]) if "patches" in sources else []
    dropped_p = _read(sources["dropped_tiles"]) if "dropped_tiles" in sources else []
    params = _shard_params(shards_dir)
    if kept_p or dropped_p:
        summary.update({"patches kept": len(kept_p), "tiles dropped as flat": len(dropped_p)})
        figures["flat_fraction"] = plot_flat_fractions(kept_p, dropped_p, params.get("max_flat"), out)
        figures.update(_patch_grids(cfg, shards_dir, root / "raw", out, rng, kept_p, dropped_p))
        tiled = {r["source_key"] for r in kept_p}
        overlay = _flat_overlays(decisions, root / "raw", params, out, rng, tiled) if decisions else None
        if overlay:
            figures["flat_overlays"] = overlay
    figures = {k: v for k, v in figures.items() if v is not None}
    stats_path = Path(sources["kept"]).parent / "filter_stats.json" if "kept" in sources else root / "filter_stats.json"
    min_side = int(json.loads(stats_path.read_text()).get("min_side", 0)) if stats_path.exists() else 0
    table_arrow = _arrow(table, ["key", "status", "width", "height", *METRICS]) if table else None
    sections = build_sections(root, out, decisions, table_arrow, thresholds, min_side, kept_p, rng,
                              SectionSettings(samples=cfg.samples, per_reason=cfg.per_reason, thumb=cfg.thumb,
                                              crop=cfg.crop))
    for warning in sections[2]:
        _LOG.warning("%s", warning)
    write_index(out, figures, summary, sections[:2])
    _LOG.info("wrote %d figure(s) and index.md/index.html to %s", len(figures), out)
    return figures


def main(argv: list[str] | None = None) -> dict[str, Path]:
    cfg = parse_config(ReportConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return build_report(cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"curation.report: {exc}") from exc


if __name__ == "__main__":
    main()
