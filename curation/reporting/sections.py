"""The HTML sections of ``curation.report`` that help choose thresholds: warnings, what-if, galleries.

``build_sections`` returns HTML fragments, Markdown lines and warning texts; ``curation.report`` puts
them between its summary table and its plots. Galleries: random kept images, examples per single drop
reason (``niqe>6`` and ``min_side<1024`` apart, not mixed), random kept patches.
"""

from __future__ import annotations

import html
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation import rawshards
from curation.filter import Rules
from curation.reporting.gallery import (
    gallery_html,
    split_reasons,
    what_if,
    what_if_html,
    write_tiles,
)
from curation.reporting.grid import load_sources, read_patches
from curation.sharding.plan import raw_shard_id
from curation.thresholds import Thresholds


@dataclass(frozen=True)
class SectionSettings:
    samples: int = 16  # kept images / patches shown
    per_reason: int = 6  # examples per drop reason
    thumb: int = 320  # fitted thumbnail side
    crop: int = 192  # 1:1 centre crop side


def raw_meta(raw_dir: Path, rows: list[dict]) -> dict[str, dict]:
    """key -> {path, caption, url} from the raw parquet tables of the rows' shards (small reads)."""
    found: dict[str, dict] = {}
    keys = {r["key"] for r in rows}
    for sid in sorted({raw_shard_id(r["raw_shard"]) for r in rows if r.get("raw_shard") is not None}):
        table_path = rawshards.shard_paths(raw_dir, sid)[1]
        if not table_path.exists():
            continue
        names = pq.read_schema(table_path).names
        cols = [c for c in ("key", "path", "caption", "url") if c in names]
        for r in pq.read_table(table_path, columns=cols).to_pylist():
            if r["key"] in keys:
                found[r["key"]] = r
    return found


def _with_meta(rows: list[dict], meta: dict[str, dict]) -> list[dict]:
    return [{**meta.get(r["key"], {}), **{k: v for k, v in r.items() if v is not None}} for r in rows]


def _gallery(title: str, rows: list[dict], root: Path, out: Path, prefix: str, s: SectionSettings, note: str = ""):
    images = load_sources(root / "raw", rows)
    entries = write_tiles(_with_meta(rows, raw_meta(root / "raw", rows)), images, out / "thumbs", prefix,
                          s.thumb, s.crop)
    md = [f"## {title}", ""] + [f"- {e['row'].get('path') or e['row'].get('url') or e['row']['key']}"
                                + (f": ![]({e['thumb'].relative_to(out).as_posix()})" if e["thumb"] else "")
                                for e in entries] + [""]
    return gallery_html(title, entries, out, note), md


def _kept(table: pa.Table) -> np.ndarray:
    if "kept" not in table.column_names:
        return np.zeros(table.num_rows, bool)
    return pc.fill_null(table.column("kept"), False).to_numpy(zero_copy_only=False).astype(bool)


def _labels(table: pa.Table) -> pa.Array:
    """Each row's drop label: the drop reason, else ``status:…`` (null for kept rows is irrelevant)."""
    status = pc.binary_join_element_wise("status:", pc.fill_null(table.column("status").cast(pa.string()), "None"), "") \
        if "status" in table.column_names else pa.nulls(table.num_rows, pa.string())
    reason = table.column("drop_reason").cast(pa.string()) if "drop_reason" in table.column_names \
        else pa.nulls(table.num_rows, pa.string())
    return pc.coalesce(reason, status, "dropped").combine_chunks()


def reason_masks(table: pa.Table, dropped: np.ndarray) -> dict[str, np.ndarray]:
    """Single reason -> rows dropped for it (rows with ``niqe>6;brisque>45`` are in both); one group-by."""
    labels = _labels(table)
    combos = pc.unique(labels.filter(pa.array(dropped))).to_pylist()
    masks: dict[str, np.ndarray] = {}
    for combo in combos:
        rows = pc.equal(labels, combo).to_numpy(zero_copy_only=False) & dropped
        for reason in split_reasons([combo]):
            masks[reason] = masks.get(reason, np.zeros(table.num_rows, bool)) | rows
    return masks


def _sample(rng: random.Random, table: pa.Table, mask: np.ndarray, k: int) -> list[dict]:
    pool = np.flatnonzero(mask)
    chosen = rng.sample(range(pool.size), min(k, pool.size))
    return table.take(pa.array(pool[chosen], pa.int64())).to_pylist() if chosen else []


def warnings_for(root: Path, decisions: pa.Table, patches: int) -> list[str]:
    """Loud messages: the filter kept nothing, or the run has no patches (and why, from the manifest)."""
    if not decisions.num_rows:
        return ["no score or decision table found: run curation.score and curation.filter first"]
    kept = int(_kept(decisions).sum())
    if not kept:
        sizes = sorted(((int(m.sum()), r) for r, m in reason_masks(decisions, ~_kept(decisions)).items()), reverse=True)
        return [f"the filter kept NO image of {decisions.num_rows}; most common reasons: "
                + ", ".join(f"{r} ({n})" for n, r in sizes[:3])
                + " — see the what-if table for settings that would keep some"]
    if patches:
        return []
    manifest_path = root / "shards" / "manifest.json"
    if not manifest_path.exists():
        return [f"{kept} image(s) kept but no patch shards under {root / 'shards'} (curation.shard not run yet?)"]
    manifest = json.loads(manifest_path.read_text())
    why = []
    if manifest.get("too_small"):
        why.append(f"{len(manifest['too_small'])} kept image(s) are smaller than one {manifest.get('patch_size')}-px "
                   "patch (lower curation.shard --patch)")
    if manifest.get("tiles_dropped_flat"):
        why.append(f"{manifest['tiles_dropped_flat']} tile(s) dropped as flat (raise --max-flat)")
    return [f"this run produced NO patches from {kept} kept image(s)" + (": " + "; ".join(why) if why else "")]


def rules_from(thresholds: dict[str, float], stats: dict) -> Rules:
    """The filter run's rules, from the thresholds shown and filter_stats.json (defaults where absent)."""
    extra = {k: stats[k] for k in ("min_side", "max_aspect", "max_pixels") if stats.get(k) is not None}
    return Rules(Thresholds.of(thresholds), **extra)


def build_sections(root: Path, out: Path, decisions: pa.Table, thresholds: dict[str, float], stats: dict,
                   kept_patches: pa.Table, rng: random.Random, settings: SectionSettings = SectionSettings()
                   ) -> tuple[list[str], list[str], list[str]]:
    """(HTML sections, Markdown lines, warnings) for the report page."""
    warnings = warnings_for(root, decisions, kept_patches.num_rows)
    parts = [f"<div class='warning'>⚠ {html.escape(w)}</div>" for w in warnings]
    md = [f"> **WARNING**: {w}" for w in warnings] + ([""] if warnings else [])
    if decisions.num_rows and thresholds and "status" in decisions.column_names:
        parts.append(what_if_html(what_if(decisions, rules_from(thresholds, stats)), decisions.num_rows))
    located = np.zeros(decisions.num_rows, bool)
    if {"raw_shard", "key"} <= set(decisions.column_names):
        located = pc.is_valid(decisions.column("raw_shard")).to_numpy(zero_copy_only=False)
    kept = _kept(decisions) if decisions.num_rows else located
    if (located & kept).any():
        html_part, lines = _gallery("Random kept images", _sample(rng, decisions, located & kept, settings.samples),
                                    root, out, "kept", settings, "left: fitted thumbnail (click for full size); "
                                    "right: 1:1 centre crop, to judge sharpness, noise and compression")
        parts.append(html_part)
        md += lines
    masks = reason_masks(decisions, located & ~kept) if decisions.num_rows else {}
    for i, (reason, mask) in enumerate(sorted(masks.items(), key=lambda kv: (-int(kv[1].sum()), kv[0]))):
        html_part, lines = _gallery(f"Dropped because {reason} ({int(mask.sum())} image(s))",
                                    _sample(rng, decisions, mask, settings.per_reason), root, out, f"drop{i:02d}",
                                    settings)
        parts.append(html_part)
        md += lines
    if kept_patches.num_rows:
        chosen = _sample(rng, kept_patches, np.ones(kept_patches.num_rows, bool), settings.samples)
        entries = write_tiles([{**r, "path": r["key"]} for r in chosen], read_patches(root / "shards", chosen),
                              out / "thumbs", "patch", settings.thumb, settings.crop)
        parts.append(gallery_html(f"Random kept patches ({kept_patches.num_rows} in all)", entries, out))
    return parts, md, warnings
