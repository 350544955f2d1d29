"""Image stages at scale for ``benchmarks/scale.py --images N``: ingest → score → filter → shard on a
2-worker LocalCluster, images/s per stage and Dask's overhead per task.

Each stage runs through its own entry point (``main(argv)``) with ``--scheduler`` pointing at one
LocalCluster started here (as an operator points the stages at one cluster), so cluster start-up
is measured once and apart. A scheduler-side task stream gives every task's compute time, so

    overhead per task = (wall × workers − Σ task compute) / tasks

(scheduling, transfer, the idle tail while the last tasks finish). A separate run of no-op tasks
gives the scheduler's own cost per task, which sets the task granularity (docs/scale.md).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(seed: int, width: int, height: int) -> np.ndarray:
    """Sky gradient, soft blobs, sharp edges and sensor-like noise: NIQE/BRISQUE in the range of real photos."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 200, 3).astype(np.float32)
    img = base + 60 * (yy / height)[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
    for _ in range(8):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(40, 300)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img += blob * rng.uniform(-70, 70, 3).astype(np.float32)
    stripes = (np.sin(xx / rng.uniform(3, 9) + yy / rng.uniform(5, 15)) > 0.6)[..., None]
    horizon = (yy > rng.uniform(0.3, 0.7) * height)[..., None]
    img += 25 * stripes * horizon
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, n: int, side: int) -> int:
    """``n`` JPEG (q 92) photo-like images of side × 4/3·side; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(photo_like(i, side * 4 // 3, side)).save(buf, format="JPEG", quality=92)
        (folder / f"img{i:06d}.jpg").write_bytes(buf.getvalue())
        total += buf.tell()
    return total


def _noop(i: int) -> int:
    return i


def task_overhead(client, counts: list[int]) -> list[dict]:
    """Wall time per no-op task through the scheduler (submission → all results back)."""
    out = []
    for n in counts:
        start = time.perf_counter()
        futures = client.map(_noop, range(n), pure=False)
        client.gather(futures)
        wall = time.perf_counter() - start
        del futures
        out.append({"tasks": n, "seconds": round(wall, 3), "ms_per_task": round(1000 * wall / n, 3)})
    return out


def _worker_cpu() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _stage(client, name: str, fn, images: int, workers: int) -> dict:
    """Run one stage; wall, CPU seconds of the workers and of this process, per-task compute from the task stream."""
    from dask.distributed import get_task_stream

    before = client.run(_worker_cpu)
    with get_task_stream(client) as ts:
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, client_cpu = time.perf_counter() - start, time.process_time() - cpu
    after = client.run(_worker_cpu)
    worker_cpu = sum(after[w] - before.get(w, after[w]) for w in after)
    compute = [sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute") for t in ts.data]
    tasks = len(compute)
    rec = {"stage": name, "images": images, "seconds": round(wall, 2), "images_per_s": round(images / wall, 3),
           "tasks": tasks, "task_compute_s": round(sum(compute), 2), "worker_cpu_s": round(worker_cpu, 2),
           "client_cpu_s": round(client_cpu, 2),
           "core_s_per_image": round((worker_cpu + client_cpu) / images, 4)}
    if tasks:
        rec["overhead_ms_per_task"] = round(1000 * (wall * workers - sum(compute)) / tasks, 1)
        rec["overhead_fraction"] = round(1 - sum(compute) / (wall * workers), 4)
    print(f"{name:7s} {images} images in {wall:.1f} s = {rec['images_per_s']} images/s, {tasks} tasks, "
          f"{rec['core_s_per_image']} core-s/image", flush=True)
    return rec


def run(work: Path, n_images: int, side: int, per_shard: int, workers: int, overhead_counts: list[int]) -> dict:
    from dask.distributed import Client, LocalCluster

    from curation import filter as curation_filter
    from curation import ingest, score, shard
    from curation.scoring.metrics import METRICS

    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jpeg_bytes = write_images(work / "images", n_images, side)
    result: dict = {"images": n_images, "size": [side * 4 // 3, side], "images_per_shard": per_shard, "workers": workers,
                    "generate_seconds": round(time.perf_counter() - t0, 1), "input_bytes": jpeg_bytes,
                    "score_engine": "pyiqa (the default on this branch)", "metrics": "niqe,brisque"}
    if hasattr(score, "ScoreConfig") and "engine" in score.ScoreConfig.__dataclass_fields__:
        result["score_engine"] = score.ScoreConfig.__dataclass_fields__["engine"].default
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    result["cluster_start_seconds"] = round(time.perf_counter() - start, 2)
    addr = cluster.scheduler_address
    raw, scores, shards = work / "raw", work / "scores", work / "shards"
    thresholds = ",".join(f"{m}={'100' if m == 'niqe' else '200'}" for m in ("niqe", "brisque") if m in METRICS)
    try:
        stages = [
            _stage(client, "ingest", lambda: ingest.main(["--folder", str(work / "images"), "--source", "bench",
                                                          "--out", str(raw), "--shard-size", str(per_shard),
                                                          "--scheduler", addr]), n_images, workers),
            _stage(client, "score", lambda: score.main([str(raw), "--out", str(scores), "--metrics", "niqe,brisque",
                                                        "--scheduler", addr]), n_images, workers),
            _stage(client, "filter", lambda: curation_filter.main(["--scores", str(scores), "--thresholds", thresholds,
                                                                   "--out", str(work / "kept.parquet")]), n_images, workers),
            _stage(client, "shard", lambda: shard.main(["--kept", str(work / "kept.parquet"), "--raw", str(raw),
                                                        "--out", str(shards), "--scheduler", addr,
                                                        "--log-level", "WARNING"]), n_images, workers),
        ]
        result["overhead_noop"] = task_overhead(client, overhead_counts)
    finally:
        client.close()
        cluster.close()
    manifest = json.loads((shards / "manifest.json").read_text())
    result["stages"] = stages
    result["patches"] = manifest["total_samples"]
    result["bytes_written"] = {"raw": sum(p.stat().st_size for p in raw.glob("*.tar")),
                               "scores": sum(p.stat().st_size for p in scores.glob("*.parquet")),
                               "shards": sum(s["bytes"] for s in manifest["shards"])}
    return result
