"""One timed table stage of ``benchmarks/scale.py``, run in its own process: ``scale_stage.py STAGE ROOT``.

Runs in a fresh interpreter so its peak RSS (read by the parent with ``os.wait4``) belongs to this
stage alone; Arrow is held to one thread and the parent pins the process to one core (``taskset``).
Prints one JSON line: ``{"seconds", "cpu_seconds", "result", "vm_hwm_mb"}``; both times cover the
stage call only, not the interpreter's imports (CPU seconds stay meaningful on a loaded machine). ``synth_tables`` / ``synth_patches`` build the inputs (untimed by the parent).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa

pa.set_cpu_count(1)
pa.set_io_thread_count(1)

QUERIES = {  # three representative questions an operator asks (README "Parquet queries")
    "per_source": "SELECT source, count(*) AS patches, count(DISTINCT source_key) AS images "
                  "FROM patches GROUP BY source ORDER BY patches DESC",
    "histogram": "SELECT round(niqe * 2) / 2 AS niqe, count(*) AS n FROM decisions WHERE niqe IS NOT NULL "
                 "GROUP BY 1 ORDER BY 1",
    "lineage": "SELECT p.key, p.source_key, p.shard, p.box, r.url, r.status, s.niqe, s.brisque, d.drop_reason "
               "FROM patches p JOIN raw r ON r.key = p.source_key JOIN scores s ON s.key = p.source_key "
               "JOIN decisions d ON d.key = p.source_key WHERE p.key = (SELECT max(key) FROM patches)",
}


def _filter(root: Path):
    from curation.filter import filter_scores

    return lambda: filter_scores(root / "scores", root / "kept.parquet")["total"]


def _plan(root: Path):
    from curation import shard

    def run() -> int:
        cfg = shard.ShardConfig(kept=str(root / "kept.parquet"), raw=str(root / "raw"), out=str(root / "shards"))
        shard._validate(cfg)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        plan = shard.build_plan(cfg)
        shard.stage_settings(cfg, plan, shard.shardplan.kept_max_pixels(cfg.kept) or 0)  # the folder's settings record
        shard._check_or_save_plan(Path(cfg.out), plan)  # plan.parquet + plan.json, as curation.shard does
        return plan.table.num_rows

    return run


def _query(root: Path):
    from curation.query import run_query

    def run() -> dict:
        results, cpu = {}, {}
        for name, sql in QUERIES.items():
            start = time.process_time()
            results[name] = run_query(sql, root)
            cpu[name] = round(time.process_time() - start, 3)
        if results["lineage"].num_rows != 1:
            raise RuntimeError(f"lineage query returned {results['lineage'].num_rows} rows, expected 1")
        return {"rows": sum(t.num_rows for t in results.values()), "cpu_seconds": cpu}

    return run


def _report(root: Path):
    from curation.report import ReportConfig, build_report

    return lambda: len(build_report(ReportConfig(root=str(root), out=str(root / "report"))))


def _listing(root: Path):
    import fsspec  # noqa: F401 - imported lazily by resolve_shards; an import is not the listing's cost

    from training.data import resolve_shards

    return lambda: len(resolve_shards(str(root / "shards")).urls)


def _synth_tables(root: Path):
    import scale_synth

    return lambda: scale_synth.write_raw_and_scores(root, int(sys.argv[3]))


def _synth_patches(root: Path):
    import scale_synth

    return lambda: scale_synth.write_patches(root)


STAGES = {"filter": _filter, "plan": _plan, "query": _query, "report": _report, "listing": _listing,
          "synth_tables": _synth_tables, "synth_patches": _synth_patches}


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: after exec, so nothing inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    stage, root = sys.argv[1], Path(sys.argv[2])
    run = STAGES[stage](root)  # imports happen here, outside the timed call
    start, cpu = time.perf_counter(), time.process_time()
    n = run()
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "result": n,
                      "vm_hwm_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
