"""``python -m curation.filter --scores scores/ --out kept.parquet``: keep images by quality thresholds.

Reads the score tables only (never rescores: re-filtering with new thresholds is cheap). An image is
kept when its status is ``ok``, its shorter side is at least ``--min-side`` and every metric given in
``--thresholds`` passes; the direction (lower-better NIQE / BRISQUE, higher-better NIMA) comes from
the metric table in :mod:`curation.scoring.metrics`, never from the user. A NaN / missing score drops the row.

Writes, atomically: ``kept.parquet`` (the passing rows, score columns + ``kept``), beside it
``decisions.parquet`` (every row + ``kept`` + ``drop_reason``, reasons joined by ";") and
``filter_stats.json`` (totals, counts per reason, counts per exact reason combination; the
combination counts add up to the dropped total).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from common.atomic import atomic_write_bytes, atomic_write_json
from common.cliconfig import parse_config, save_config
from common.outputerrors import exit_on_write_error
from curation.scoring.metrics import METRICS
from curation.scoring.shard_task import METADATA_KEY

_LOG = logging.getLogger(__name__)
DEFAULT_THRESHOLDS = ",".join(f"{m.name}={m.default_threshold:g}" for m in METRICS.values())


@dataclass
class FilterConfig:
    """Keep the images whose NIQE / BRISQUE / NIMA pass the thresholds (directions from the metric table)."""

    scores: str = field(default="scores", metadata={"help": "folder of NNNNN.parquet score tables (curation.score)"})
    thresholds: str | None = field(default=None, metadata={
        "help": "metric=value list, e.g. niqe=6,brisque=45,nima=4.5; default: the documented defaults "
                f"({DEFAULT_THRESHOLDS}) for every metric present in the scores"})
    min_side: int = field(default=1024, metadata={"help": "drop images whose shorter side is below this"})
    out: str = field(default="kept.parquet", metadata={
        "help": "kept table; decisions.parquet and filter_stats.json are written beside it"})


def parse_thresholds(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in METRICS:
            raise ValueError(f"bad threshold {part!r}: expected METRIC=VALUE with METRIC in {', '.join(METRICS)}")
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise ValueError(f"bad threshold value in {part!r}") from exc
        if not math.isfinite(out[name]):
            raise ValueError(f"threshold {part!r} is not a finite number")
    if not out:
        raise ValueError("no thresholds given")
    return out


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
    """Why one score row is dropped (empty list: kept)."""
    if row.get("status") != "ok":
        return [f"status:{row.get('status')}"]
    reasons = []
    w, h = row.get("width"), row.get("height")
    if w is None or h is None or min(w, h) < min_side:
        reasons.append(f"min_side<{min_side}")
    for name, limit in thresholds.items():
        value = row.get(name)
        if value is None or not math.isfinite(value):
            reasons.append(f"{name}:nan")
        elif METRICS[name].lower_better and value > limit:
            reasons.append(f"{name}>{limit:g}")
        elif not METRICS[name].lower_better and value < limit:
            reasons.append(f"{name}<{limit:g}")
    return reasons


def filter_scores(scores_dir: str | Path, out_path: str | Path, thresholds: dict[str, float] | None = None,
                  min_side: int = 1024) -> dict:
    """Decide every row, write kept / decisions / stats; return the stats."""
    table, scored = load_scores(scores_dir)
    if thresholds is None:
        thresholds = {m: METRICS[m].default_threshold for m in METRICS if m in scored}
        if not thresholds:
            raise ValueError(f"the score tables in {scores_dir} name no scored metric; pass --thresholds")
    absent = sorted(set(thresholds) - scored)
    if absent:
        raise ValueError(f"--thresholds names {', '.join(absent)} but the scores in {scores_dir} only have "
                         f"{', '.join(sorted(scored)) or 'no metrics'}; rescore with --metrics including it or drop it")
    rows = table.to_pylist()
    reasons = [row_reasons(r, thresholds, min_side) for r in rows]
    kept = [not r for r in reasons]
    decisions = table.append_column("kept", pa.array(kept, pa.bool_()))
    decisions = decisions.append_column("drop_reason", pa.array([";".join(r) or None for r in reasons], pa.string()))
    per_reason = Counter(x for r in reasons for x in r)
    combos = Counter(";".join(r) for r in reasons if r)
    stats = {"total": len(rows), "kept": sum(kept), "dropped": len(rows) - sum(kept),
             "thresholds": thresholds, "directions": {m: ("<=" if METRICS[m].lower_better else ">=") for m in thresholds},
             "min_side": min_side, "dropped_by_reason": dict(sorted(per_reason.items())),
             "dropped_by_combination": dict(sorted(combos.items())), "scores": str(Path(scores_dir).resolve())}
    meta = {b"curation.filter": json.dumps({k: stats[k] for k in ("thresholds", "directions", "min_side")})}
    out_path = Path(out_path)
    _write_parquet(out_path, decisions.filter(pa.array(kept)).drop_columns(["drop_reason"]).replace_schema_metadata(meta))
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
            thresholds = parse_thresholds(cfg.thresholds) if cfg.thresholds else None
            stats = filter_scores(cfg.scores, cfg.out, thresholds, cfg.min_side)
            save_config(cfg, Path(cfg.out).with_name("filter_config.yaml"))
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(f"kept {stats['kept']} of {stats['total']} ({stats['dropped']} dropped) with "
          + ", ".join(f"{m}{stats['directions'][m]}{v:g}" for m, v in stats["thresholds"].items())
          + f", min side {stats['min_side']}")
    for reason, n in stats["dropped_by_reason"].items():
        print(f"  {reason}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
