"""Read Laion-HR-style URL parquet files and pre-filter them before any request is made.

Laion-HR columns are ``URL, TEXT, WIDTH, HEIGHT, similarity, hash, punsafe, pwatermark, ...``; other
dumps spell them in lower case, so every column is looked up case-insensitively. Rows are dropped
(and counted per reason) when the URL is empty or not http(s) (urllib would happily read
``file://`` URLs from a hostile list), when the declared size is below ``min_side`` or the watermark / NSFW
probabilities exceed their thresholds (only where those columns exist), or repeat an earlier row's
URL in the same file. The kept rows become a
normalised table: ``url, caption, declared_width, declared_height, pwatermark, punsafe, source,
url_file, url_row`` (the last two point back to the input row).
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class UrlColumns:
    """Input column names (matched case-insensitively); an empty caption name means no caption."""

    url: str = "URL"
    caption: str = "TEXT"
    width: str = "WIDTH"
    height: str = "HEIGHT"
    pwatermark: str = "pwatermark"
    punsafe: str = "punsafe"


@dataclass(frozen=True)
class Prefilter:
    """Row filter applied before downloading; thresholds apply only where the column exists."""

    min_side: int = 1024
    max_pwatermark: float = 0.8
    max_punsafe: float = 0.5


def resolve_inputs(pattern: str) -> list[Path]:
    """A parquet file, a folder of ``*.parquet`` or a glob -> sorted list of files; raises if none."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(pattern))
    files = [f for f in files if f.is_file()]
    if not files:
        raise FileNotFoundError(f"no URL parquet file matches {pattern!r}")
    return files


def find_column(names: list[str], wanted: str) -> str | None:
    """The actual column name matching ``wanted`` case-insensitively (exact match preferred)."""
    if not wanted:
        return None
    if wanted in names:
        return wanted
    lowered = {n.lower(): n for n in names}
    return lowered.get(wanted.lower())


def _float_column(table: pa.Table, name: str | None) -> pa.Array:
    if name is None:
        return pa.nulls(table.num_rows, pa.float64())
    return pc.cast(table.column(name), pa.float64()).combine_chunks()


def _drop(keep: pa.Array, bad: pa.Array) -> tuple[pa.Array, int]:
    """keep AND NOT bad (nulls in ``bad`` count as not bad); returns (new mask, rows newly dropped)."""
    bad = pc.fill_null(bad, False)
    newly = pc.and_(keep, bad)
    return pc.and_(keep, pc.invert(bad)), int(pc.sum(pc.cast(newly, pa.int64())).as_py() or 0)


def _repeated(urls: pa.Array, keep: pa.Array) -> pa.Array:
    """True for a kept row whose URL already appeared in an earlier kept row (first one wins)."""
    seen: set[str] = set()
    out = []
    for url, kept in zip(urls.to_pylist(), keep.to_pylist()):
        if not kept:
            out.append(False)
            continue
        out.append(url in seen)
        seen.add(url)
    return pa.array(out, pa.bool_())


def load_url_file(path: Path, columns: UrlColumns, prefilter: Prefilter, source: str) -> tuple[pa.Table, dict]:
    """Read one URL parquet, pre-filter it; return (normalised kept rows, counts per drop reason)."""
    names = pq.read_schema(path).names
    url_name = find_column(names, columns.url) or find_column(names, "url")
    if url_name is None:
        raise ValueError(f"{path}: no URL column {columns.url!r} (columns: {names})")
    found = {field: find_column(names, getattr(columns, field))
             for field in ("caption", "width", "height", "pwatermark", "punsafe")}
    if found["width"] is None or found["height"] is None:
        _LOG.warning("%s: no %s/%s columns; the size pre-filter is skipped (img2dataset still checks the "
                     "decoded size)", path, columns.width, columns.height)
    table = pq.read_table(path, columns=[url_name] + sorted({c for c in found.values() if c}))
    n = table.num_rows
    width, height = _float_column(table, found["width"]), _float_column(table, found["height"])
    wm, unsafe = _float_column(table, found["pwatermark"]), _float_column(table, found["punsafe"])
    urls = pc.cast(table.column(url_name), pa.string()).combine_chunks()

    keep = pa.array([True] * n, pa.bool_())
    stats = {"file": path.name, "rows": n}
    keep, stats["no_url"] = _drop(keep, pc.or_kleene(pc.is_null(urls), pc.equal(pc.utf8_trim_whitespace(urls), "")))
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(urls))
    web = pc.or_(pc.starts_with(lowered, "http://"), pc.starts_with(lowered, "https://"))
    keep, stats["not_http"] = _drop(keep, pc.invert(web))  # file://, ftp://, data: ... are never fetched
    small = pc.or_kleene(pc.less(width, prefilter.min_side), pc.less(height, prefilter.min_side))
    keep, stats["below_min_side"] = _drop(keep, small)
    keep, stats["watermark"] = _drop(keep, pc.greater(wm, prefilter.max_pwatermark))
    keep, stats["unsafe"] = _drop(keep, pc.greater(unsafe, prefilter.max_punsafe))
    keep, stats["duplicate_url"] = _drop(keep, _repeated(urls, keep))
    stats["size_unknown_kept"] = int(pc.sum(pc.cast(pc.and_(keep, pc.or_kleene(
        pc.is_null(width), pc.is_null(height))), pa.int64())).as_py() or 0)
    stats["kept"] = int(pc.sum(pc.cast(keep, pa.int64())).as_py() or 0)
    stats["prefiltered"] = n - stats["kept"]

    caption = (pc.cast(table.column(found["caption"]), pa.string()).combine_chunks() if found["caption"]
               else pa.nulls(n, pa.string()))
    normalised = pa.table({
        "url": urls,
        "caption": caption,
        "declared_width": pc.cast(width, pa.int64(), safe=False),
        "declared_height": pc.cast(height, pa.int64(), safe=False),
        "pwatermark": wm,
        "punsafe": unsafe,
        "source": pa.array([source] * n, pa.string()),
        "url_file": pa.array([path.name] * n, pa.string()),
        "url_row": pa.array(range(n), pa.int64()),
    })
    return normalised.filter(keep), stats


def file_fingerprint(path: Path) -> str:
    """Cheap identity of an input file: name and size (content hashing would read terabytes)."""
    return f"{path.name}:{os.path.getsize(path)}"
