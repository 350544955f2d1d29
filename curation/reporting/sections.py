"""The HTML sections of ``curation.report`` that help choose thresholds: warnings, what-if, galleries.

``build_sections`` returns HTML fragments, Markdown lines and warning texts; ``curation.report`` puts
them between its summary table and its plots. Galleries: random kept images, examples per single drop
reason (``niqe>6`` and ``min_side<1024`` apart, not mixed), random kept patches.
"""

from __future__ import annotations

import html
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation import rawshards
from curation.reporting.gallery import (
    gallery_html,
    split_reasons,
    what_if,
    what_if_html,
    write_tiles,
)
from curation.reporting.grid import load_sources, read_patches
from curation.sharding.plan import raw_shard_id


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


def warnings_for(root: Path, decisions: list[dict], patches: int) -> list[str]:
    """Loud messages: the filter kept nothing, or the run has no patches (and why, from the manifest)."""
    if not decisions:
        return ["no score or decision table found: run curation.score and curation.filter first"]
    kept = sum(bool(r.get("kept")) for r in decisions)
    if not kept:
        top = Counter(split_reasons(r.get("drop_reason") or f"status:{r.get('status')}" for r in decisions))
        return [f"the filter kept NO image of {len(decisions)}; most common reasons: "
                + ", ".join(f"{k} ({v})" for k, v in top.most_common(3))
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


def build_sections(root: Path, out: Path, decisions: list[dict], decisions_table: pa.Table | None,
                   thresholds: dict[str, float], min_side: int, kept_patches: list[dict], rng: random.Random,
                   settings: SectionSettings = SectionSettings()) -> tuple[list[str], list[str], list[str]]:
    """(HTML sections, Markdown lines, warnings) for the report page."""
    warnings = warnings_for(root, decisions, len(kept_patches))
    parts = [f"<div class='warning'>⚠ {html.escape(w)}</div>" for w in warnings]
    md = [f"> **WARNING**: {w}" for w in warnings] + ([""] if warnings else [])
    if decisions_table is not None and decisions_table.num_rows and thresholds:
        parts.append(what_if_html(what_if(decisions_table, thresholds, min_side), decisions_table.num_rows))
    with_image = [r for r in decisions if r.get("raw_shard") is not None and r.get("key")]
    kept = [r for r in with_image if r.get("kept")]
    if kept:
        html_part, lines = _gallery("Random kept images", rng.sample(kept, min(settings.samples, len(kept))),
                                    root, out, "kept", settings, "left: fitted thumbnail (click for full size); "
                                    "right: 1:1 centre crop, to judge sharpness, noise and compression")
        parts.append(html_part)
        md += lines
    by_reason: dict[str, list[dict]] = {}
    for r in with_image:
        if not r.get("kept"):
            for reason in split_reasons([r.get("drop_reason") or f"status:{r.get('status')}"]):
                by_reason.setdefault(reason, []).append(r)
    for i, (reason, rows) in enumerate(sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0]))):
        chosen = rng.sample(rows, min(settings.per_reason, len(rows)))
        html_part, lines = _gallery(f"Dropped because {reason} ({len(rows)} image(s))", chosen, root, out,
                                    f"drop{i:02d}", settings)
        parts.append(html_part)
        md += lines
    if kept_patches:
        chosen = rng.sample(kept_patches, min(settings.samples, len(kept_patches)))
        entries = write_tiles([{**r, "path": r["key"]} for r in chosen], read_patches(root / "shards", chosen),
                              out / "thumbs", "patch", settings.thumb, settings.crop)
        parts.append(gallery_html(f"Random kept patches ({len(kept_patches)} in all)", entries, out))
    return parts, md, warnings
