"""Cost growth of every curation stage with size: ``python benchmarks/scale.py --rows 1000 10000 100000 1000000 --out F.json``.

Table stages (``--rows``): for each size, synthetic raw / score tables (``scale_synth.py``, columns as
the real stages write them) are built, then each stage runs in its own process pinned to one core
(``taskset -c 0``, Arrow single-threaded): ``filter`` (curation.filter), ``plan`` (curation.shard's
up-front plan: plan.parquet + plan.json), ``query`` (three curation.query SQL queries: patches per
source, a NIQE histogram, one patch's lineage joined back through decisions / scores / raw),
``report`` (curation.report, thumbnails decoded for its bounded random sample only) and ``listing``
(the trainer's ``training.data.resolve_shards`` over manifest.json). Seconds cover the stage call;
peak RSS is the child's ``ru_maxrss`` (``os.wait4``), imports included.

Image stages (``--images N``, 0 to skip; ``scale_images.py``): photo-like images through ingest →
score → filter → shard on a 2-worker LocalCluster, images/s per stage and Dask overhead per task.

JSON: ``{"stages": [{"stage", "rows", "seconds", "peak_rss_mb", ...}], "growth_per_10x": {...},
"images": {...}, "machine": {...}}``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common.atomic import atomic_write_json
from common.cliconfig import parse_config

TABLE_STAGES = ("filter", "plan", "query", "report", "listing")
OUTPUTS = {"filter": ("kept.parquet", "decisions.parquet", "filter_stats.json"),  # what each stage writes
           "plan": ("shards/plan.parquet", "shards/plan.json"), "report": ("report/*",)}


def _bytes(root: Path, stage: str) -> int:
    return sum(p.stat().st_size for pattern in OUTPUTS.get(stage, ()) for p in root.glob(pattern) if p.is_file())


@dataclass
class ScaleConfig:
    """Time every table stage at growing row counts (one core each) and the image stages on 2 workers."""

    rows: list[int] = field(default_factory=lambda: [1000, 10000, 100000], metadata={
        "help": "candidate-image counts to synthesise (raw rows = score rows; ≈ 50 %% kept; ≈ 8 patches per kept image)"})
    images: int = field(default=0, metadata={"help": "photo-like images for the image stages; 0 skips them (default 0)"})
    image_side: int = field(default=1024, metadata={"help": "shorter side of the generated images (default 1024)"})
    images_per_shard: int = field(default=50, metadata={"help": "images per raw shard in the image run (default 50)"})
    workers: int = field(default=2, metadata={"help": "LocalCluster workers for the image stages (default 2)"})
    overhead_tasks: list[int] = field(default_factory=lambda: [1000, 10000], metadata={
        "help": "no-op task counts used to measure Dask's per-task overhead (default 1000 10000)"})
    workdir: str | None = field(default=None, metadata={"help": "scratch folder (default: a temp dir, deleted)"})
    core: int = field(default=0, metadata={"help": "CPU the table stages are pinned to with taskset (default 0)"})
    out: str = field(default="scale.json", metadata={"help": "JSON results file (default scale.json)"})


def run_child(args: list[str], core: int) -> tuple[dict, float, float]:
    """Run ``args`` pinned to one core; (its JSON line, wall seconds, peak RSS MB via wait4)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(HERE.parent), "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = ([shutil.which("taskset"), "-c", str(core)] if shutil.which("taskset") else []) + [sys.executable, *args]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            errf.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{errf.read().decode()[-3000:]}")
    line = out.decode().strip().splitlines()[-1]
    return json.loads(line), wall, usage.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def table_stages(rows: int, work: Path, core: int) -> list[dict]:
    root = work / f"rows_{rows}"
    shutil.rmtree(root, ignore_errors=True)
    stage_py = str(HERE / "scale_stage.py")
    res, _, _ = run_child([stage_py, "synth_tables", str(root), str(rows)], core)
    prep, synth_s = res["result"], res["seconds"]
    results = []
    for stage in TABLE_STAGES:
        if stage == "query":  # patch tables come from the plan the plan stage just wrote
            res, _, _ = run_child([stage_py, "synth_patches", str(root)], core)
            prep.update(res["result"])
            prep["synth_seconds"] = round(synth_s + res["seconds"], 1)
        res, wall, rss = run_child([stage_py, stage, str(root)], core)
        results.append({"stage": stage, "rows": rows, "seconds": round(res["seconds"], 4),
                        "cpu_seconds": round(res["cpu_seconds"], 4),
                        "process_seconds": round(wall, 3), "peak_rss_mb": round(rss, 1),
                        "vm_hwm_mb": round(res["vm_hwm_mb"], 1), "bytes_written": _bytes(root, stage),
                        "result": res["result"]})
        print(f"{stage:8s} rows={rows:>9,d} {res['seconds']:8.3f} s {res['cpu_seconds']:8.3f} CPU-s {rss:7.1f} MB "
              f"(result {res['result']})", flush=True)
    for r in results:
        r["dataset"] = prep
    shutil.rmtree(root, ignore_errors=True)
    return results


def growth(stages: list[dict], key: str = "seconds") -> dict[str, dict[str, float]]:
    """Per stage: ratio of ``key`` per 10× rows between consecutive sizes (normalised to exactly 10×)."""
    out: dict[str, dict[str, float]] = {}
    for name in TABLE_STAGES:
        pts = sorted((s["rows"], s[key]) for s in stages if s["stage"] == name)
        for (r0, t0), (r1, t1) in itertools.pairwise(pts):
            exponent = math.log10(r1 / r0)
            out.setdefault(name, {})[f"{r0}->{r1}"] = round((max(t1, 1e-3) / max(t0, 1e-3)) ** (1 / exponent), 2)
    return out


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(ScaleConfig, argv)
    work = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="scale_"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine(), "config": {"rows": cfg.rows, "images": cfg.images}, "stages": []}
    try:
        for rows in (r for r in cfg.rows if r > 0):  # --rows 0: image stages only
            result["stages"] += table_stages(rows, work, cfg.core)
        result["growth_per_10x"] = growth(result["stages"])
        result["growth_per_10x_cpu"] = growth(result["stages"], "cpu_seconds")
        if cfg.images:
            import scale_images

            result["images"] = scale_images.run(work / "images", cfg.images, cfg.image_side, cfg.images_per_shard,
                                                cfg.workers, cfg.overhead_tasks)
    finally:
        if not cfg.workdir:
            shutil.rmtree(work, ignore_errors=True)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_json(Path(cfg.out), result)
    print(json.dumps(result.get("growth_per_10x", {}), indent=1))
    return result


if __name__ == "__main__":
    main()
