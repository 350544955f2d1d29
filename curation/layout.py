"""The curation's on-disk contract: metric table, table schemas, shard ids and paths, markers, manifest.

Every stage reads and writes its folders through the names defined here, so a format has one home:

- **Metric table** (:data:`METRIC_TABLE`): name, direction (lower- or higher-is-better), default
  threshold and column of each quality metric. Every schema below takes its metric columns from it;
  :mod:`curation.scoring.metrics` adds how each metric is computed; :mod:`curation.thresholds`
  takes the directions from it.
- **Schemas**: :data:`SCORE_SCHEMA` (``scores/NNNNN.parquet``), :data:`KEPT_SCHEMA` (``kept.parquet``),
  :data:`DECISIONS_SCHEMA` (``decisions.parquet``), :data:`PLAN_SCHEMA` (``shards/plan.parquet``),
  :data:`PATCH_SCHEMA` / :data:`DROPPED_SCHEMA` (``shards/patches-*.parquet`` / ``dropped-*.parquet``).
  The ``shard`` column is the patch shard's name (``patches-NNNNNN``, a string) in plan and patch
  tables alike; ``raw_shard`` is the raw shard's name (``NNNNN``).
- **Shard ids** (:class:`ShardId`): one type for raw shards (``NNNNN``, 5 digits, img2dataset's
  naming) and patch shards (``patches-NNNNNN``); it builds every path of a shard and says whether
  the shard is complete.
- **Completion markers** (one convention for every stage): a unit of work is complete when its
  marker exists, and the marker is the last file the unit writes, atomically (temp file + rename),
  after every other file of the unit is in place. So a killed writer leaves either a complete unit
  or one without marker, which the rerun redoes from scratch. The markers:

  ============  ===========================================  =======================================
  unit          files                                        marker (written last)
  ============  ===========================================  =======================================
  raw shard     ``raw/NNNNN.tar``, ``NNNNN.parquet``          ``raw/NNNNN_stats.json`` (img2dataset's)
  score shard   ``scores/NNNNN.parquet``                     the parquet itself (one file, renamed in)
  patch shard   ``shards/patches-NNNNNN.{tar,parquet}``,     ``shards/patches-NNNNNN.done.json``
                ``dropped-NNNNNN.parquet``
  shard stage   every patch shard                            ``shards/manifest.json``
  ============  ===========================================  =======================================

  The stage's own record (settings fingerprint, lock) is ``common.stagefolder``'s ``_stage.json``.
- **Manifest** (:class:`Manifest`): ``shards/manifest.json``, written by ``curation.shard`` only,
  read by the trainer (local path or any fsspec URL).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from common.atomic import atomic_write_json

# ---- the metric table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One quality metric as the tables see it: column name, direction, documented default threshold."""

    name: str
    lower_better: bool
    default_threshold: float

    @property
    def column(self) -> str:
        return self.name

    @property
    def keep_op(self) -> str:
        """How a value is kept: ``<=`` for lower-is-better, ``>=`` for higher-is-better."""
        return "<=" if self.lower_better else ">="


METRIC_TABLE: tuple[Metric, ...] = (
    Metric("niqe", lower_better=True, default_threshold=6.0),
    Metric("brisque", lower_better=True, default_threshold=45.0),
    Metric("nima", lower_better=False, default_threshold=4.5),
)
METRICS: dict[str, Metric] = {m.name: m for m in METRIC_TABLE}
METRIC_COLUMNS: tuple[str, ...] = tuple(m.column for m in METRIC_TABLE)


def metric(name: str) -> Metric:
    """The table entry for ``name``; a clear error naming the known metrics otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def _metric_fields() -> list[pa.Field]:
    return [pa.field(c, pa.float64()) for c in METRIC_COLUMNS]


# ---- table schemas -----------------------------------------------------------------------------

SCORE_METADATA_KEY = b"curation.score"
FILTER_METADATA_KEY = b"curation.filter"

SCORE_SCHEMA = pa.schema([
    ("key", pa.string()), ("raw_shard", pa.string()), ("source", pa.string()), ("url", pa.string()),
    ("sha256", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
    *_metric_fields(),
    ("status", pa.string()), ("error", pa.string()),
])
KEPT_SCHEMA = SCORE_SCHEMA.append(pa.field("kept", pa.bool_()))
DECISIONS_SCHEMA = KEPT_SCHEMA.append(pa.field("drop_reason", pa.string()))
# What curation.shard needs of a kept row, and what it plans (plan.parquet adds shard + duplicate_keys).
KEPT_REQUIRED = ("key", "raw_shard", "sha256", "width", "height")
PLAN_ROW_SCHEMA = pa.schema([
    ("key", pa.string()), ("raw_shard", pa.string()), ("source", pa.string()), ("url", pa.string()),
    ("sha256", pa.string()), ("width", pa.int64()), ("height", pa.int64()), *_metric_fields(),
])
PLAN_SCHEMA = PLAN_ROW_SCHEMA.append(pa.field("shard", pa.string())).append(
    pa.field("duplicate_keys", pa.list_(pa.string())))
PATCH_SCHEMA = pa.schema([
    ("key", pa.string()), ("source_key", pa.string()), ("source_sha256", pa.string()), ("url", pa.string()),
    ("source", pa.string()), ("raw_shard", pa.string()), ("shard", pa.string()), ("box", pa.list_(pa.int32())),
    ("flat_fraction", pa.float64()), *_metric_fields(),
    ("source_width", pa.int64()), ("source_height", pa.int64()), ("duplicate_keys", pa.list_(pa.string())),
    ("png_bytes", pa.int64()),
])
DROPPED_SCHEMA = pa.schema([
    ("key", pa.string()), ("source_key", pa.string()), ("raw_shard", pa.string()), ("shard", pa.string()),
    ("box", pa.list_(pa.int32())), ("flat_fraction", pa.float64()),
])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order, cast; absent columns become nulls."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


# ---- shard ids, paths and markers --------------------------------------------------------------

RAW, PATCHES = "raw", "patches"
RAW_MARKER_SUFFIX = "_stats.json"
PATCH_MARKER_SUFFIX = ".done.json"


@dataclass(frozen=True, order=True)
class ShardId:
    """A raw shard (``NNNNN``) or a patch shard (``patches-NNNNNN``): one integer, one formatting."""

    kind: str
    index: int

    @classmethod
    def raw(cls, index: int) -> ShardId:
        return cls(RAW, int(index))

    @classmethod
    def patches(cls, index: int) -> ShardId:
        return cls(PATCHES, int(index))

    @classmethod
    def parse(cls, value: str | int | ShardId) -> ShardId:
        """From a name (``"00042"``, ``"patches-000003"``, ``"patches-000003.tar"``), an int (raw) or a ShardId."""
        if isinstance(value, ShardId):
            return value
        if isinstance(value, int):
            return cls.raw(value)
        text = str(value).split("/")[-1].split(".")[0]
        if text.startswith(PATCHES + "-") and text[len(PATCHES) + 1:].isdigit():
            return cls.patches(int(text[len(PATCHES) + 1:]))
        if text.isdigit():
            return cls.raw(int(text))
        raise ValueError(f"not a shard name: {value!r} (expected NNNNN or patches-NNNNNN)")

    @property
    def name(self) -> str:
        # raw: img2dataset's oom_shard_count=5 naming (wider when needed); patches: six digits
        return f"{self.index:05d}" if self.kind == RAW else f"{PATCHES}-{self.index:06d}"

    def __str__(self) -> str:
        return self.name

    # raw shard files
    def raw_paths(self, folder: str | os.PathLike) -> tuple[Path, Path, Path]:
        """(tar, parquet, stats marker) of a raw shard."""
        root = Path(folder)
        return root / f"{self.name}.tar", root / f"{self.name}.parquet", root / f"{self.name}{RAW_MARKER_SUFFIX}"

    def score_path(self, scores_dir: str | os.PathLike) -> Path:
        """The score table of this raw shard (its own completion marker)."""
        return Path(scores_dir) / f"{self.name}.parquet"

    # patch shard files
    def tar_path(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / f"{self.name}.tar"

    def table_path(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / f"{self.name}.parquet"

    def dropped_path(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / f"dropped-{self.index:06d}.parquet"

    def marker_path(self, folder: str | os.PathLike) -> Path:
        """The completion marker (see the module docstring): ``_stats.json`` (raw), ``.done.json`` (patches)."""
        suffix = RAW_MARKER_SUFFIX if self.kind == RAW else PATCH_MARKER_SUFFIX
        return Path(folder) / f"{self.name}{suffix}"

    def is_complete(self, folder: str | os.PathLike) -> bool:
        """Marker and the unit's other files present (contents are checked by the stage that needs it)."""
        if self.kind == RAW:
            return all(p.exists() for p in self.raw_paths(folder))
        return all(p.exists() for p in (self.marker_path(folder), self.tar_path(folder), self.table_path(folder)))


def list_raw_shards(raw_dir: str | os.PathLike) -> list[ShardId]:
    """Raw shards whose marker, tar and parquet exist, sorted."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"raw folder {root} does not exist")
    ids = [p.name[: -len(RAW_MARKER_SUFFIX)] for p in root.glob(f"*{RAW_MARKER_SUFFIX}")]
    return sorted(sid for sid in (ShardId.raw(int(i)) for i in ids if i.isdigit()) if sid.is_complete(root))


def pending_scores(raw_ids: list[ShardId], scores_dir: str | os.PathLike) -> list[ShardId]:
    """The raw shards whose score table does not exist yet."""
    return [s for s in raw_ids if not s.score_path(scores_dir).exists()]


def pending_patches(out_dir: str | os.PathLike, n_shards: int) -> list[ShardId]:
    """The planned patch shards (0..n-1) without a complete marker."""
    return [s for s in (ShardId.patches(i) for i in range(n_shards)) if not s.is_complete(out_dir)]


# ---- manifest ----------------------------------------------------------------------------------

MANIFEST_NAME = "manifest.json"


@dataclass
class ManifestShard:
    name: str  # tar file name, relative to the manifest's folder
    samples: int
    bytes: int | None = None


@dataclass
class Manifest:
    """``shards/manifest.json``: the patch shards of a finished ``curation.shard`` run and its totals."""

    shards: list[ManifestShard]
    total_samples: int
    patch_size: int
    images_tiled: int | None = None
    tiles_total: int | None = None
    tiles_dropped_flat: int | None = None
    image_errors: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    plan_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shards"] = [{k: v for k, v in s.items() if v is not None} for s in out["shards"]]
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            shards = [ManifestShard(name=str(s["name"]), samples=int(s["samples"]), bytes=s.get("bytes"))
                      for s in data["shards"]]
            known = {f for f in cls.__dataclass_fields__ if f not in ("shards",)}
            return cls(shards=shards, **{k: v for k, v in data.items() if k in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a curation manifest ({type(exc).__name__}: {exc})") from None

    def write(self, folder: str | os.PathLike) -> Path:
        """Atomically write ``folder/manifest.json`` (the stage's last file)."""
        path = Path(folder) / MANIFEST_NAME
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def read(cls, location: str | os.PathLike) -> Manifest:
        """From a folder or a ``manifest.json`` path; local or any fsspec URL (``s3://…``, ``memory://…``)."""
        url = str(location)
        if not url.endswith(MANIFEST_NAME):
            url = url.rstrip("/") + "/" + MANIFEST_NAME
        import fsspec

        try:
            with fsspec.open(url, "rt") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{url}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None

    def shard_urls(self, base: str) -> list[str]:
        """The tar URLs, resolved against ``base`` (the manifest's folder)."""
        return [f"{base.rstrip('/')}/{s.name}" for s in self.shards]
