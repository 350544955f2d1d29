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
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from common.atomic import atomic_write_text
from common.cliconfig import parse_config
from common.outputerrors import exit_on_write_error
from curation import flatviz
from curation.layout import METRIC_COLUMNS
from curation.layout import METRICS as METRIC_TABLE
from curation.query import table_sources
from curation.reporting.gallery import STYLE, split_reasons
from curation.reporting.grid import load_sources, patch_grid_from_tars, thumbnail_grid
from curation.reporting.sections import SectionSettings, build_sections
from curation.sharding import flat, tiling
from curation.thresholds import Thresholds

_LOG = logging.getLogger("curation.report")
METRICS = METRIC_COLUMNS
HIGHER_IS_BETTER = {m.name: not m.lower_better for m in METRIC_TABLE.values()}


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
    """``--thresholds`` (:class:`curation.thresholds.Thresholds`, the filter's syntax) as a dict."""
    return Thresholds.parse(text).as_dict()


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


def _read(paths_or_glob: str, columns: list[str] | None = None) -> pa.Table:
    """The files of a glob as one Arrow table (columns a file lacks are null); never Python row dicts."""
    files = sorted(Path(paths_or_glob).parent.glob(Path(paths_or_glob).name))
    tables = []
    for f in files:
        names = pq.read_schema(f).names
        cols = [c for c in columns if c in names] if columns else None
        tables.append(pq.read_table(f, columns=cols).replace_schema_metadata(None))
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, NaN for nulls; all NaN when absent."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _kept(table: pa.Table) -> np.ndarray:
    if "kept" not in table.column_names:
        return np.zeros(table.num_rows, bool)
    return pc.fill_null(table.column("kept"), False).to_numpy(zero_copy_only=False).astype(bool)


def _sample(rng: random.Random, table: pa.Table, mask: np.ndarray, k: int) -> list[dict]:
    """``rng.sample`` over the rows where ``mask`` holds, as dicts: only the chosen rows leave Arrow."""
    pool = np.flatnonzero(mask)
    chosen = rng.sample(range(pool.size), min(k, pool.size))
    return table.take(pa.array(pool[chosen], pa.int64())).to_pylist() if chosen else []


def _stacked_hist(ax, kept: np.ndarray, dropped: np.ndarray, bins: np.ndarray, labels: list[str]) -> None:
    """Counts come from np.histogram; matplotlib draws only the bins (cheap at any row count)."""
    counts = [np.histogram(v, bins=bins)[0] for v in (kept, dropped)]
    ax.hist([bins[:-1], bins[:-1]], bins=bins, weights=counts, stacked=True, label=labels, color=["tab:green", "tab:red"])


def plot_metric(table: pa.Table, metric: str, threshold: float | None, out: Path) -> Path | None:
    values, kept = _floats(table, metric), _kept(table)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    kept_v, dropped_v = values[finite & kept], values[finite & ~kept]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.histogram_bin_edges(values[finite], bins=40)
    _stacked_hist(ax, kept_v, dropped_v, bins, [f"kept ({kept_v.size})", f"dropped ({dropped_v.size})"])
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


def reason_counts(table: pa.Table) -> dict[str, int]:
    """Images per label: "kept", else the drop reason, else the status, else "dropped" (an Arrow group-by)."""
    cols = {c: (table.column(c).cast(pa.string()) if c in table.column_names else pa.nulls(table.num_rows, pa.string()))
            for c in ("drop_reason", "status")}
    keys = pa.table({"kept": pa.array(_kept(table)), **cols})
    counts: dict[str, int] = {}
    for g in keys.group_by(["kept", "drop_reason", "status"]).aggregate([([], "count_all")]).to_pylist():
        labels = ["kept"] if g["kept"] else split_reasons([g["drop_reason"] or g["status"] or "dropped"])
        for label in labels:  # one bar per single reason: an image dropped for two reasons counts in both
            counts[label] = counts.get(label, 0) + g["count_all"]
    return counts


def plot_reasons(table: pa.Table, out: Path) -> tuple[Path, dict[str, int]]:
    counts = reason_counts(table)
    labels = sorted(counts, key=lambda k: (k != "kept", -counts[k], k))
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(labels) + 1.2))
    ax.barh(labels, [counts[k] for k in labels], color=["tab:green" if k == "kept" else "tab:red" for k in labels])
    for i, k in enumerate(labels):
        ax.text(counts[k], i, f" {counts[k]}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title("kept / dropped per reason")
    fig.tight_layout()
    path = out / "reasons.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path, {k: counts[k] for k in labels}


def plot_flat_fractions(kept: pa.Table, dropped: pa.Table, max_flat: float | None, out: Path) -> Path | None:
    if not kept.num_rows and not dropped.num_rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _stacked_hist(ax, _floats(kept, "flat_fraction"), _floats(dropped, "flat_fraction"), np.linspace(0, 1, 21),
                  [f"kept patches ({kept.num_rows})", f"dropped as flat ({dropped.num_rows})"])
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


def _located(table: pa.Table) -> np.ndarray:
    """Rows that name a raw shard and a key (only those can be shown)."""
    if "raw_shard" not in table.column_names or "key" not in table.column_names:
        return np.zeros(table.num_rows, bool)
    key_ok = pc.fill_null(pc.greater(pc.utf8_length(table.column("key").cast(pa.string())), 0), False)
    return (pc.is_valid(table.column("raw_shard")).to_numpy(zero_copy_only=False)
            & key_ok.to_numpy(zero_copy_only=False))


def _patch_grids(cfg: ReportConfig, shards_dir: Path, raw_dir: Path, out: Path, rng: random.Random,
                 kept: pa.Table, dropped: pa.Table) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    if kept.num_rows:
        chosen = _sample(rng, kept, np.ones(kept.num_rows, bool), cfg.samples)
        paths["patches_kept"] = patch_grid_from_tars(shards_dir, chosen, out / "patches_kept.png", cfg.thumb,
                                                     "random kept patches (flat fraction)")
    if dropped.num_rows:
        chosen = _sample(rng, dropped, np.ones(dropped.num_rows, bool), cfg.samples)
        sources = load_sources(raw_dir, [{"key": d["source_key"], "raw_shard": d["raw_shard"]} for d in chosen])
        crops = [_crop(sources.get(d["source_key"]), d["box"]) for d in chosen]
        paths["patches_dropped"] = thumbnail_grid(crops, [f"{d['key']}\nflat {d['flat_fraction']:.2f}" for d in chosen],
                                                  out / "patches_dropped.png", cfg.thumb, "random patches dropped as flat")
    return paths


def _crop(rgb: np.ndarray | None, box) -> np.ndarray | None:
    """The tile's pixels, or None (a grey square) when the raw image no longer covers the recorded box."""
    if rgb is None:
        return None
    x0, y0, x1, y1 = box
    return tiling.crop(rgb, box) if 0 <= x0 < x1 <= rgb.shape[1] and 0 <= y0 < y1 <= rgb.shape[0] else None


def _shard_params(shards_dir: Path) -> dict:
    path = shards_dir / "shard_config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _flat_overlays(decisions: pa.Table, raw_dir: Path, params: dict, out: Path, rng: random.Random,
                   tiled: pa.Array) -> Path | None:
    """The detector overlay on up to three kept images that produced tiles (``tiled``: their keys)."""
    located = pc.is_valid(decisions.column("raw_shard")).to_numpy(zero_copy_only=False) \
        if "raw_shard" in decisions.column_names else np.zeros(decisions.num_rows, bool)
    has_tiles = pc.is_in(decisions.column("key").cast(pa.string()), value_set=tiled.cast(pa.string()))
    chosen = _sample(rng, decisions, _kept(decisions) & located & has_tiles.to_numpy(zero_copy_only=False), 3)
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
    decisions = _read(table, ["key", "raw_shard", "kept", "drop_reason", "status", "width", "height", "url",
                              *METRICS]) if table else pa.table({})
    if table == sources.get("scores") and decisions.num_rows:  # no filter run yet: every scored image is not (yet) kept
        decisions = decisions.append_column("kept", pa.array(np.zeros(decisions.num_rows, bool)))
    figures: dict[str, Path] = {}
    summary: dict[str, object] = {"images scored": decisions.num_rows, "thresholds": thresholds or "none found"}
    if decisions.num_rows:
        for m in METRICS:
            path = plot_metric(decisions, m, thresholds.get(m), out)
            if path:
                figures[f"metric_{m}"] = path
        figures["reasons"], counts = plot_reasons(decisions, out)
        summary.update({("images kept" if k == "kept" else f"images dropped: {k}"): v for k, v in counts.items()})
    shards_dir = root / "shards"
    kept_p = _read(sources["patches"], ["key", "shard", "flat_fraction", "source_key"]) if "patches" in sources else pa.table({})
    dropped_p = _read(sources["dropped_tiles"]) if "dropped_tiles" in sources else pa.table({})
    params = _shard_params(shards_dir)
    if kept_p.num_rows or dropped_p.num_rows:
        summary.update({"patches kept": kept_p.num_rows, "tiles dropped as flat": dropped_p.num_rows})
        figures["flat_fraction"] = plot_flat_fractions(kept_p, dropped_p, params.get("max_flat"), out)
        figures.update(_patch_grids(cfg, shards_dir, root / "raw", out, rng, kept_p, dropped_p))
        tiled = pc.unique(kept_p.column("source_key")) if "source_key" in kept_p.column_names else pa.array([], pa.string())
        overlay = _flat_overlays(decisions, root / "raw", params, out, rng, tiled) if decisions.num_rows else None
        if overlay:
            figures["flat_overlays"] = overlay
    figures = {k: v for k, v in figures.items() if v is not None}
    stats_path = Path(sources["kept"]).parent / "filter_stats.json" if "kept" in sources else root / "filter_stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    sections = build_sections(root, out, decisions, thresholds, stats, kept_p, rng,
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
    if not Path(cfg.root).is_dir():  # a typo must not produce an empty report that looks like a result
        print(f"curation.report: --root {cfg.root} is not a folder", file=sys.stderr)
        raise SystemExit(2)
    try:
        with exit_on_write_error("curation.report", cfg.out):
            return build_report(cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"curation.report: {exc}") from exc


if __name__ == "__main__":
    main()
