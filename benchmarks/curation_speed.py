"""Scoring throughput of both engines on the same images: decode, NIQE, BRISQUE, NIMA; speed-up and max difference.

``python benchmarks/curation_speed.py --engines fast pyiqa --device cpu --size 1024 --metrics niqe,brisque
--out benchmarks/results/curation_speed_cpu.json`` (``--device cuda`` for the GPU figures).

Each timing is one process, one thread (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``, numba
serial: one core, as in a Dask worker), a warm-up (lazy init, numba compilation) then several repeats,
median; the engines alternate repeat by repeat within each row, so both see the same machine load. On CPU the rate is images per core-second from process CPU time (meaningful on a shared machine);
on cuda it is images per wall-second of the one GPU process. Each metric row includes decoding the JPEG
(as in the pipeline, where every image is decoded once). Both engines score the same images in the same
run; the JSON holds ``speedup_vs_pyiqa`` (metric → ratio of rates) and ``max_rel_diff_vs_pyiqa`` (metric →
worst ``|fast - pyiqa| / max(|pyiqa|, 1)``). NIMA uses installed weights when present, else TEST-ONLY
random weights (speed does not depend on the values; the JSON says which).
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch
from PIL import Image

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from common.imagedecode import decode_rgb
from curation.scoring.engine import nima_input
from curation.scoring.metrics import build_metric_set, build_nima_network, pyiqa_version
from curation.weights import status_of


@dataclass
class SpeedConfig:
    """Measure scoring throughput (images/s per core, or per GPU-second) of the fast and pyiqa engines."""

    out: str = field(default="benchmarks/results/curation_speed_cpu.json", metadata={"help": "JSON result file"})
    engines: list[str] = field(default_factory=lambda: ["fast", "pyiqa"], metadata={
        "help": "engines to time on the same images (fast, pyiqa)"})
    size: int = field(default=1024, metadata={"help": "image side (square JPEG)"})
    images: int = field(default=4, metadata={"help": "distinct images per repeat"})
    repeats: int = field(default=3, metadata={"help": "repeats per measurement (median reported)"})
    nima_batch: int = field(default=4, metadata={"help": "images per NIMA forward"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    metrics: str = field(default="niqe,brisque,nima", metadata={"help": "metrics to time"})


def _jpeg(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (xx * (3 + c) + yy * (2 + seed))) for c in range(3)], -1)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _time(fn: Callable[[], int], repeats: int) -> dict:
    fn()  # warm-up (lazy init, allocator)
    cpu, wall, n = [], [], 0
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        n = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    c, w = statistics.median(cpu), statistics.median(wall)
    return {"images": n, "cpu_s_per_image": c / n, "wall_s_per_image": w / n,
            "images_per_s_per_core": n / c, "images_per_s_wall": n / w}


def _nima_weights(tmp: Path) -> tuple[str, str]:
    st = status_of("nima")
    if st.present and not st.test_only:
        return st.path, "installed NIMA weights"
    torch.manual_seed(0)
    path = tmp / "TEST_ONLY_random_nima_weights.pth"
    torch.save({"params": build_nima_network().state_dict()}, path)
    return str(path), "TEST_ONLY random init (speed only; scores meaningless)"


def _time_interleaved(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, dict]:
    """Like :func:`_time` for several engines, alternating them repeat by repeat (same machine load for each)."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[tuple[float, float, int]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            n = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            samples[k].append((time.process_time() - c0, time.perf_counter() - w0, n))
    out = {}
    for k, rows in samples.items():
        c, w, n = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows), rows[0][2]
        out[k] = {"images": n, "cpu_s_per_image": c / n, "wall_s_per_image": w / n,
                  "images_per_s_per_core": n / c, "images_per_s_wall": n / w}
    return out


def _engine_jobs(engine: str, metrics: list[str], paths: dict, blobs: list[bytes], cfg: SpeedConfig) -> tuple[dict, dict]:
    """The timed functions per row (metric) of one engine, and the dict their scores go to."""
    ms = build_metric_set(metrics, cfg.device, paths, engine=engine)
    rows, scores = {}, {}
    native = [m for m in metrics if m != "nima"]
    for name in native:
        def one(rgb: np.ndarray, name=name) -> float:
            if engine == "pyiqa":
                with torch.inference_mode():
                    return float(ms.native[name](ms.to_tensor(rgb)).reshape(-1)[0])
            return ms.score_native_one(rgb, name)

        def timed(name=name, one=one) -> int:
            if getattr(ms, "batched", False):  # --device cuda: the batched kernels on one size bucket
                from curation.scoring import batched

                fn, model = ((batched.niqe_batch, ms.niqe_model) if name == "niqe"
                             else (batched.brisque_batch, ms.brisque_model))
                x = torch.from_numpy(np.stack([decode_rgb(b) for b in blobs])).to(cfg.device)
                scores[name] = fn(x, model)
            else:
                scores[name] = [one(decode_rgb(b)) for b in blobs]
            return len(blobs)
        rows[name] = timed
    if len(native) > 1 and not getattr(ms, "batched", False):  # all native metrics of an image together
        def together() -> int:
            for b in blobs:
                rgb = decode_rgb(b)
                if engine == "pyiqa":
                    ms.score_native(ms.to_tensor(rgb))
                else:
                    ms.score_native(rgb)  # the fast engine shares one luma pass between NIQE and BRISQUE
            return len(blobs)
        rows["+".join(native)] = together
    if "nima" in metrics:
        def nima() -> int:
            batch = [nima_input(decode_rgb(b), ms.nima_size) if engine == "fast" else ms.nima_input(ms.to_tensor(decode_rgb(b)))
                     for b in blobs]
            out = []
            for i in range(0, len(batch), cfg.nima_batch):
                out += ms.score_nima(batch[i:i + cfg.nima_batch])
            scores["nima"] = out
            return len(blobs)
        rows["nima"] = nima
    return rows, scores


def run(cfg: SpeedConfig) -> dict:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    metrics = [m.strip() for m in cfg.metrics.split(",") if m.strip()]
    blobs = [_jpeg(cfg.size, s) for s in range(cfg.images)]
    rate = "images_per_s_per_core" if cfg.device == "cpu" else "images_per_s_wall"
    result = {"size": cfg.size, "device": cfg.device, "torch_threads": torch.get_num_threads(),
              "pyiqa_version": pyiqa_version(), "torch_version": torch.__version__, "rate": rate,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
              "gpu": torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") else None,
              "load_average": os.getloadavg(), "decode": None, "engines": {}}
    result["decode"] = _time(lambda: sum(1 for b in blobs if decode_rgb(b) is not None), cfg.repeats)
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: status_of(m).path for m in metrics if m != "nima"}
        if "nima" in metrics:
            paths["nima"], result["nima_weights"] = _nima_weights(Path(tmp))
        jobs = {}
        for engine in cfg.engines:
            jobs[engine], scores[engine] = _engine_jobs(engine, metrics, paths, blobs, cfg)
            result["engines"][engine] = {}
        for row in jobs[cfg.engines[0]]:  # engines alternate within each row, repeat by repeat
            timed = _time_interleaved({e: jobs[e][row] for e in cfg.engines if row in jobs[e]}, cfg.repeats)
            for e, t in timed.items():
                result["engines"][e][row] = t
    if "fast" in scores and "pyiqa" in scores:
        fast, ref = result["engines"]["fast"], result["engines"]["pyiqa"]
        result["speedup_vs_pyiqa"] = {m: fast[m][rate] / ref[m][rate] for m in fast if m in ref}
        result["max_rel_diff_vs_pyiqa"] = {
            m: max(abs(a - b) / max(abs(b), 1.0) for a, b in zip(scores["fast"][m], scores["pyiqa"][m])) for m in metrics}
        result["scores"] = scores
    return result


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(SpeedConfig, argv)
    result = run(cfg)
    atomic_write_json(cfg.out, result)
    d = result["decode"]
    print(f"decode          {d['images_per_s_per_core']:8.2f} img/s/core ({d['cpu_s_per_image'] * 1000:7.1f} ms CPU/img)")
    for engine, rows in result["engines"].items():
        for name, row in rows.items():
            print(f"{engine:6s} {name:8s} {row['images_per_s_per_core']:8.2f} img/s/core ({row['cpu_s_per_image'] * 1000:7.1f} ms "
                  f"CPU/img incl. decode; wall {row['images_per_s_wall']:.2f} img/s)")
    print(json.dumps({k: result.get(k) for k in ("speedup_vs_pyiqa", "max_rel_diff_vs_pyiqa")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
