"""Images/s per core of the scoring stage at 1024x1024: decode only, NIQE, BRISQUE, NIMA; ratio to decode.

``python benchmarks/curation_speed.py --out benchmarks/results/curation_speed.json [--device cuda]``

Each timing is one process, ``torch.set_num_threads(1)`` (one core, as in a Dask worker), several
repeats, median. Per-core throughput is reported from CPU time (``time.process_time``), which stays
meaningful on a shared machine; wall-clock figures are reported beside it. Each metric row includes
the cost of decoding the JPEG (as in the pipeline, where every image is decoded once). NIMA runs in
batches of ``--nima-batch`` on pyiqa's architecture; unless real NIMA weights are installed in pyiqa's
cache it uses TEST-ONLY random weights created in a temp folder (speed does not depend on the values;
the JSON says which were used). With ``--device cuda`` metrics run on the GPU (NIMA is the one that
benefits; NIQE / BRISQUE are feature pipelines with small kernels).
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

import numpy as np
import torch
from PIL import Image

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from common.imagedecode import decode_rgb
from curation.scoring.metrics import MetricSet, build_nima_network, pyiqa_version
from curation.weights import status_of


@dataclass
class SpeedConfig:
    """Measure scoring throughput (images/s per core) for decode, NIQE, BRISQUE and NIMA."""

    out: str = field(default="benchmarks/results/curation_speed.json", metadata={"help": "JSON result file"})
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


def run(cfg: SpeedConfig) -> dict:
    torch.set_num_threads(1)
    metrics = [m.strip() for m in cfg.metrics.split(",") if m.strip()]
    blobs = [_jpeg(cfg.size, s) for s in range(cfg.images)]
    result = {"size": cfg.size, "device": cfg.device, "torch_threads": torch.get_num_threads(),
              "pyiqa_version": pyiqa_version(), "torch_version": torch.__version__,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
              "load_average": os.getloadavg(), "rows": {}}
    result["rows"]["decode"] = _time(lambda: sum(1 for b in blobs if decode_rgb(b) is not None), cfg.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: status_of(m).path for m in metrics if m != "nima"}
        if "nima" in metrics:
            paths["nima"], result["nima_weights"] = _nima_weights(Path(tmp))
        ms = MetricSet(metrics, cfg.device, paths)
        for name, metric in ms.native.items():
            def native(metric=metric) -> int:
                with torch.inference_mode():
                    for b in blobs:
                        metric(ms.to_tensor(decode_rgb(b)))
                return len(blobs)
            result["rows"][name] = _time(native, cfg.repeats)
        if "nima" in metrics:
            def nima() -> int:
                batch = [ms.nima_input(ms.to_tensor(decode_rgb(b))) for b in blobs]
                for i in range(0, len(batch), cfg.nima_batch):
                    ms.score_nima(batch[i:i + cfg.nima_batch])
                return len(blobs)
            result["rows"]["nima"] = _time(nima, cfg.repeats)
    base = result["rows"]["decode"]["cpu_s_per_image"]
    for row in result["rows"].values():
        row["cost_vs_decode"] = row["cpu_s_per_image"] / base
    return result


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(SpeedConfig, argv)
    result = run(cfg)
    atomic_write_json(cfg.out, result)
    for name, row in result["rows"].items():
        print(f"{name:8s} {row['images_per_s_per_core']:8.3f} img/s/core  ({row['cpu_s_per_image']*1000:8.1f} ms CPU/img, "
              f"{row['cost_vs_decode']:6.1f}x decode; wall {row['images_per_s_wall']:.3f} img/s)")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
