"""HTML galleries and the what-if table of ``curation.report``: what a person needs to choose thresholds.

Why HTML instead of one matplotlib grid per set: a caption must be readable (the file name or the
source caption, the scores, the drop reason) and a thumbnail must be large enough to judge sharpness.
Each image gets a fitted thumbnail (``side`` px) *and* a 1:1 centre crop (no resampling: blur, noise
and JPEG blocks show as they are), written as PNG files under ``report/thumbs/``.

The what-if table counts the images kept if one threshold (or the minimum side) were moved, the
others fixed, with the filter's own column-at-a-time rules (:meth:`curation.filter.Rules.decide`) over
the whole decisions table: the same rule the filter applies, never a second copy of it.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from curation.filter import Rules
from curation.layout import METRICS
from curation.thresholds import Thresholds

WHAT_IF_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.25)
WHAT_IF_MIN_SIDES = (256, 512, 768, 1024, 1536)


def display_name(row: dict) -> str:
    """The file name (ingest path or URL's last segment), else the key."""
    for column in ("path", "url"):
        value = row.get(column)
        if value:
            return str(value).rstrip("/").rsplit("/", 1)[-1] or str(value)
    return str(row.get("key"))


def _save_png(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG", compress_level=3)
    path.chmod(0o644)


def write_tiles(rows: list[dict], images: dict[str, np.ndarray], folder: Path, prefix: str, side: int,
                crop: int) -> list[dict]:
    """Thumbnail + 1:1 crop files for each row's image; entries for :func:`gallery_html`."""
    entries = []
    for i, row in enumerate(rows):
        entry = {"row": row, "thumb": None, "crop": None}
        rgb = images.get(row.get("key"))
        if rgb is not None:
            thumb = Image.fromarray(rgb)
            thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
            h, w = rgb.shape[:2]
            y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            entry["thumb"] = folder / f"{prefix}_{i:03d}.png"
            entry["crop"] = folder / f"{prefix}_{i:03d}_crop.png"
            _save_png(np.asarray(thumb), entry["thumb"])
            _save_png(np.ascontiguousarray(rgb[y0:y0 + crop, x0:x0 + crop]), entry["crop"])
        entries.append(entry)
    return entries


def _caption(row: dict) -> str:
    scores = " ".join(f"{m}={row[m]:.2f}" for m in METRICS if isinstance(row.get(m), float))
    size = f"{row['width']}×{row['height']}" if row.get("width") and row.get("height") else ""
    parts = [f"<b>{html.escape(display_name(row))}</b>"]
    if row.get("caption"):
        parts.append(f"<i>{html.escape(str(row['caption'])[:120])}</i>")
    parts.append(html.escape(" · ".join(p for p in (size, scores) if p)))
    if row.get("drop_reason") or (row.get("status") and row.get("status") != "ok"):
        parts.append(f"<span class='why'>{html.escape(str(row.get('drop_reason') or row.get('status')))}</span>")
    if row.get("flat_fraction") is not None:
        parts.append(f"flat {float(row['flat_fraction']):.2f}")
    return "<br>".join(parts)


def gallery_html(title: str, entries: list[dict], base: Path, note: str = "") -> str:
    """One ``<section>``: a figure per entry (fitted thumbnail, 1:1 crop, readable caption)."""
    figs = []
    for e in entries:
        if e["thumb"] is None:
            pics = "<div class='missing'>image not decodable / not in the raw shards</div>"
        else:
            thumb, crop = e["thumb"].relative_to(base).as_posix(), e["crop"].relative_to(base).as_posix()
            pics = (f"<a href='{thumb}'><img class='thumb' src='{thumb}' alt='thumbnail'></a>"
                    f"<img class='crop' src='{crop}' alt='1:1 centre crop' title='1:1 centre crop (no resampling)'>")
        figs.append(f"<figure>{pics}<figcaption>{_caption(e['row'])}</figcaption></figure>")
    body = "".join(figs) or "<p>none</p>"
    return (f"<section><h2>{html.escape(title)}</h2>"
            + (f"<p class='note'>{html.escape(note)}</p>" if note else "") + f"<div class='gallery'>{body}</div></section>")


def split_reasons(reasons: Iterable[str | None]) -> list[str]:
    return [r for value in reasons if value for r in str(value).split(";") if r]


def kept_count(table: pa.Table, rules: Rules) -> int:
    """Rows ``rules`` keeps (``decide`` gives null for a kept row)."""
    return int(rules.decide(table).null_count)


def what_if(table: pa.Table, rules: Rules) -> list[dict]:
    """Kept counts with one setting moved: rows {setting, value, kept, change, current}."""
    now = kept_count(table, rules)
    limits = rules.thresholds.as_dict()
    rows = []
    for m, t in limits.items():
        for f in WHAT_IF_FACTORS:
            value = round(t * f, 3)
            moved = dataclasses.replace(rules, thresholds=Thresholds.of({**limits, m: value}))
            n = now if f == 1.0 else kept_count(table, moved)
            rows.append({"setting": m, "value": value, "kept": n, "change": n - now, "current": f == 1.0})
    for side in sorted(set(WHAT_IF_MIN_SIDES) | {rules.min_side}):
        n = now if side == rules.min_side else kept_count(table, dataclasses.replace(rules, min_side=side))
        rows.append({"setting": "min_side", "value": side, "kept": n, "change": n - now,
                     "current": side == rules.min_side})
    return rows


def what_if_html(rows: list[dict], total: int) -> str:
    if not rows:
        return ""
    head = ("<section><h2>What if: images kept at other thresholds</h2><p class='note'>One setting moved, the "
            f"others as filtered; {total} image(s) in all. Rerun <code>curation.filter</code> with the value you "
            "like (seconds), then <code>curation.shard</code>.</p><table class='whatif'><tr><th>setting</th>"
            "<th>keep when</th><th>kept</th><th>change</th></tr>")
    cells = []
    for r in rows:
        if r["setting"] == "min_side":
            rule = f"shorter side ≥ {r['value']:g}"
        else:
            rule = f"{r['setting']} {'≤' if METRICS[r['setting']].lower_better else '≥'} {r['value']:g}"
        cls = " class='current'" if r["current"] else ""
        cells.append(f"<tr{cls}><td>{r['setting']}</td><td>{html.escape(rule)}{' (current)' if r['current'] else ''}"
                     f"</td><td>{r['kept']}</td><td>{r['change']:+d}</td></tr>")
    return head + "".join(cells) + "</table></section>"


STYLE = """<style>
body{font-family:sans-serif;margin:1.5em;max-width:1600px}
.gallery{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid #ccc;padding:6px;max-width:560px;background:#fafafa}
figure img{vertical-align:top;margin-right:4px}
img.thumb{max-width:320px;max-height:320px}
figcaption{font-size:14px;line-height:1.35;margin-top:4px;word-break:break-all}
.why{color:#b00020;font-weight:bold}
.missing{width:320px;height:120px;background:#ddd;display:flex;align-items:center;justify-content:center}
.warning{background:#fff3cd;border:3px solid #d39e00;padding:12px;font-size:18px;margin:12px 0}
table.whatif td,table.whatif th{border:1px solid #bbb;padding:3px 8px;text-align:right}
tr.current{font-weight:bold;background:#e8f4e8}
.note{color:#444}
</style>"""
