"""``python -m curation.filter --scores scores/ --out kept.parquet``: every keep/drop rule of the curation.

Score measures, the filter decides. Reads the score tables only (never rescores: re-filtering with new
rules is cheap). An image is kept when its status is ``ok``, its shorter side is at least
``--min-side``, its long/short side ratio at most ``--max-aspect``, its pixel count at most
``--max-pixels``, and every metric given in ``--thresholds`` passes; the direction (lower-better NIQE
/ BRISQUE, higher-better NIMA) comes from the metric table in :mod:`curation.layout`, never from the
user (:class:`curation.thresholds.Thresholds`). A NaN / missing score drops the row.

Writes, atomically: ``kept.parquet`` (the passing rows, ``curation.layout.KEPT_SCHEMA``), beside it
``decisions.parquet`` (every row + ``kept`` + ``drop_reason``, reasons joined by ";",
``DECISIONS_SCHEMA``) and ``filter_stats.json`` (totals, counts per reason, counts per exact reason
combination; the combination counts add up to the dropped total). The rules are also recorded in
both tables' metadata; ``curation.shard`` decodes under the recorded ``max_pixels``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.atomic import atomic_write_bytes, atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import DEFAULT_MAX_PIXELS
from common.outputerrors import exit_on_write_error
from curation.layout import (
    DECISIONS_SCHEMA,
    FILTER_METADATA_KEY,
    METRICS,
    SCORE_METADATA_KEY,
    SCORE_SCHEMA,
    conform,
)
from curation.thresholds import DEFAULT_THRESHOLDS, Thresholds

_LOG = logging.getLogger(__name__)
METADATA_KEY = SCORE_METADATA_KEY


@dataclass
class FilterConfig:
    """Keep the images that pass every rule: status, size, aspect, pixels, NIQE / BRISQUE / NIMA thresholds."""

    scores: str = field(default="scores", metadata={"help": "folder of NNNNN.parquet score tables (curation.score)"})
    thresholds: str | None = field(default=None, metadata={
        "help": "metric=value list, e.g. niqe=6,brisque=45,nima=4.5 (directions from the metric table); default: "
                f"the documented defaults ({DEFAULT_THRESHOLDS}) for every metric present in the scores"})
    min_side: int = field(default=1024, metadata={"help": "drop images whose shorter side is below this"})
    max_aspect: float = field(default=4.0, metadata={"help": "drop images whose long/short side ratio is above this"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={
        "help": "drop images with more pixels than this (curation.shard decodes under this limit)"})
    out: str = field(default="kept.parquet", metadata={
        "help": "kept table; decisions.parquet and filter_stats.json are written beside it"})


@dataclass(frozen=True)
class Rules:
    """Every keep/drop rule of one filter run."""

    thresholds: Thresholds
    min_side: int = 1024
    max_aspect: float = 4.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def reasons(self, row: dict) -> list[str]:
        """Why one score row is dropped (empty list: kept)."""
        if row.get("status") != "ok":
            return [f"status:{row.get('status')}"]
        reasons = []
        w, h = row.get("width"), row.get("height")
        if w is None or h is None or min(w, h) < self.min_side:
            reasons.append(f"min_side<{self.min_side}")
        if w and h and max(w, h) / min(w, h) > self.max_aspect:
            reasons.append(f"aspect>{self.max_aspect:g}")
        if w and h and w * h > self.max_pixels:
            reasons.append(f"pixels>{self.max_pixels}")
        return reasons + self.thresholds.reasons(row)

    def decide(self, table: pa.Table) -> pa.Array:
        """Every row's drop reason (reasons joined by ";", null = kept), column at a time.

        Same reasons in the same order as :meth:`reasons`. Each row gets an integer code (its status,
        or one bit per size rule and per metric ok / nan / worse); the few distinct codes are spelled
        out once. A Python loop over 10^6 row dicts took ≈ 10^2 s on one core; this takes about a
        second (benchmarks/scale.py, docs/scale.md).
        """
        n = table.num_rows
        status = table.column("status").cast(pa.string()) if "status" in table.column_names else pa.nulls(n, pa.string())
        status = pc.fill_null(status, "None").combine_chunks().dictionary_encode()
        status_names = status.dictionary.to_pylist()
        status_idx = status.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        w, h = _numbers(table, "width"), _numbers(table, "height")
        sized = np.nan_to_num(w) != 0
        sized &= np.nan_to_num(h) != 0  # Python truthiness of w and h: present and non-zero
        with np.errstate(invalid="ignore", divide="ignore"):
            code = (np.isnan(w) | np.isnan(h) | (np.fmin(w, h) < self.min_side)).astype(np.int64)
            code += 2 * (sized & (np.fmax(w, h) / np.fmin(w, h) > self.max_aspect))
            code += 4 * (sized & (w * h > self.max_pixels))
            place = 8
            for name, limit in self.thresholds.limits:
                v = _numbers(table, name)
                worse = (v > limit) if METRICS[name].lower_better else (v < limit)
                code += place * np.where(~np.isfinite(v), 1, np.where(worse, 2, 0))
                place *= 3
        is_ok = np.array([s == "ok" for s in status_names], bool)[status_idx] if n else np.zeros(0, bool)
        code = np.where(is_ok, code, place + status_idx)
        uniq, inverse = np.unique(code, return_inverse=True)
        labels = [self._label(int(c), place, status_names) for c in uniq]
        indices = pa.array(inverse.astype(np.int32), mask=np.array([lab is None for lab in labels], bool)[inverse])
        return pa.DictionaryArray.from_arrays(indices, pa.array([lab or "" for lab in labels], pa.string())).cast(pa.string())

    def _label(self, code: int, place: int, status_names: list[str]) -> str | None:
        """The reason text of one code of :meth:`decide`."""
        if code >= place:
            return f"status:{status_names[code - place]}"
        reasons = [text for bit, text in ((1, f"min_side<{self.min_side}"), (2, f"aspect>{self.max_aspect:g}"),
                                          (4, f"pixels>{self.max_pixels}")) if code & bit]
        code //= 8
        for name, limit in self.thresholds.limits:
            code, state = divmod(code, 3)
            if state == 1:
                reasons.append(f"{name}:nan")
            elif state == 2:
                reasons.append(f"{name}>{limit:g}" if METRICS[name].lower_better else f"{name}<{limit:g}")
        return ";".join(reasons) or None

    def record(self) -> dict:
        return {"thresholds": self.thresholds.as_dict(), "directions": self.thresholds.directions(),
                "min_side": self.min_side, "max_aspect": self.max_aspect, "max_pixels": self.max_pixels}


def _numbers(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for nulls (all NaN when the column is absent)."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def parse_thresholds(text: str) -> dict[str, float]:
    """``niqe=6,brisque=45`` → {"niqe": 6.0, "brisque": 45.0} (see :class:`curation.thresholds.Thresholds`)."""
    return Thresholds.parse(text).as_dict()


def load_scores(scores_dir: str | Path) -> tuple[pa.Table, set[str]]:
    """All score tables concatenated, and the metrics that were actually scored (from the file metadata)."""
    paths = sorted(Path(scores_dir).glob("[0-9]*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no score tables (NNNNN.parquet) in {scores_dir}")
    tables, scored = [], set()
    for p in paths:
        t = pq.read_table(p)
        meta = json.loads((t.schema.metadata or {}).get(METADATA_KEY, b"{}"))
        scored.update(meta.get("metrics", {}))
        tables.append(t.replace_schema_metadata(None))
    return pa.concat_tables(tables, promote_options="default"), scored


def row_reasons(row: dict, thresholds: dict[str, float], min_side: int) -> list[str]:
    """Why one score row is dropped (empty list: kept), with the default aspect and pixel rules."""
    return Rules(Thresholds.of(thresholds), min_side=min_side).reasons(row)


def filter_scores(scores_dir: str | Path, out_path: str | Path, thresholds: dict[str, float] | Thresholds | None = None,
                  min_side: int = 1024, max_aspect: float = 4.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Decide every row, write kept / decisions / stats; return the stats."""
    table, scored = load_scores(scores_dir)
    if thresholds is None:
        limits = Thresholds.defaults(scored)
        if not limits.limits:
            raise ValueError(f"the score tables in {scores_dir} name no scored metric; pass --thresholds")
    else:
        limits = thresholds if isinstance(thresholds, Thresholds) else Thresholds.of(thresholds)
    absent = sorted(set(limits.names()) - scored)
    if absent:
        raise ValueError(f"--thresholds names {', '.join(absent)} but the scores in {scores_dir} only have "
                         f"{', '.join(sorted(scored)) or 'no metrics'}; rescore with --metrics including it or drop it")
    rules = Rules(limits, min_side=min_side, max_aspect=max_aspect, max_pixels=max_pixels)
    table = conform(table, SCORE_SCHEMA)
    reasons = rules.decide(table)
    kept = pc.is_null(reasons)
    decisions = table.append_column("kept", kept).append_column("drop_reason", reasons)
    decisions = conform(decisions, DECISIONS_SCHEMA)
    combos = Counter({r["values"]: r["counts"] for r in pc.value_counts(pc.drop_null(reasons)).to_pylist()})
    per_reason: Counter = Counter()
    for combo, count in combos.items():  # the reasons within one row are distinct
        for reason in combo.split(";"):
            per_reason[reason] += count
    n_kept = int(pc.sum(kept).as_py() or 0)
    stats = {"total": table.num_rows, "kept": n_kept, "dropped": table.num_rows - n_kept, **rules.record(),
             "dropped_by_reason": dict(sorted(per_reason.items())),
             "dropped_by_combination": dict(sorted(combos.items())), "scores": str(Path(scores_dir).resolve())}
    meta = {FILTER_METADATA_KEY: json.dumps(rules.record())}
    out_path = Path(out_path)
    _write_parquet(out_path, decisions.filter(kept).drop_columns(["drop_reason"]).replace_schema_metadata(meta))
    _write_parquet(out_path.with_name("decisions.parquet"), decisions.replace_schema_metadata(meta))
    atomic_write_json(out_path.with_name("filter_stats.json"), stats)
    return stats


def _write_parquet(path: Path, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(FilterConfig, argv)
    try:
        with exit_on_write_error("curation.filter", Path(cfg.out).parent):
            thresholds = Thresholds.parse(cfg.thresholds) if cfg.thresholds else None
            stats = filter_scores(cfg.scores, cfg.out, thresholds, cfg.min_side, cfg.max_aspect, cfg.max_pixels)
            save_config(cfg, Path(cfg.out).with_name("filter_config.yaml"))
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(f"kept {stats['kept']} of {stats['total']} ({stats['dropped']} dropped) with "
          + ", ".join(f"{m}{stats['directions'][m]}{v:g}" for m, v in stats["thresholds"].items())
          + f", min side {stats['min_side']}, max aspect {stats['max_aspect']:g}, max pixels {stats['max_pixels']}")
    for reason, n in stats["dropped_by_reason"].items():
        print(f"  {reason}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
