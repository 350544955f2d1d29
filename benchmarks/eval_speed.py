"""Evaluation throughput (images/s) per model at BSD68 size (481x321 -> 480x320 after the x16 crop).

    python benchmarks/eval_speed.py --models identity dynet-s dynet-l promptir --images 2 --out eval_speed.json

Runs training.evaluate's denoise path (noise, forward, PSNR/SSIM) on generated 481x321 images (or
the first --images of --folder) with full-size, randomly initialised models (speed does not depend
on the weights). Reports forward seconds/image and end-to-end images/s.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from training.evaluate import collect_test_sets, evaluate
from training.evaluation.protocols import get_protocol
from training.evaluation.restorers import Restorer, identity_restorer


@dataclass
class BenchConfig:
    """Evaluation throughput per model at BSD68 size."""
    models: list[str] = field(default_factory=lambda: ["identity", "dynet-s", "dynet-l", "promptir"], metadata={"help": "identity | dynet-s | dynet-l | promptir | dynet@f1,f2,f3,f4"})
    images: int = field(default=2, metadata={"help": "images per model (full-size models on CPU take seconds each)"})
    folder: str | None = field(default=None, metadata={"help": "use these clean images instead of generated 481x321 ones"})
    sigma: int = field(default=25, metadata={"help": "noise level of the denoise pass"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda"})
    threads: int = field(default=0, metadata={"help": "torch intra-op threads (0 = torch default)"})
    warmup: bool = field(default=True, metadata={"help": "one untimed forward before timing (--no-warmup on slow CPUs)"})
    out: str = field(default="eval_speed.json", metadata={"help": "JSON output path"})


def make_restorer(spec: str, device: str) -> Restorer:
    if spec == "identity":
        return identity_restorer()
    from dynet_model.build import build_model
    from dynet_model.config import default_config
    from dynet_model.variants import parse_reuse
    arch, _, reuse = spec.partition("@")
    if arch in ("dynet-s", "dynet-l"):
        arch, reuse = "dynet", arch[-1]
    cfg = default_config(arch)
    model = build_model(cfg).to(device).eval()
    r = tuple(parse_reuse(reuse or "l")) if arch == "dynet" else None
    return Restorer(name=spec, model=model, arch=arch, reuse=r)


def generated_set(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[0:321, 0:481].astype(np.float32)
        img = 127 + 80 * np.sin(xx / rng.uniform(5, 20))[..., None] * np.cos(yy / rng.uniform(5, 20))[..., None]
        img = np.clip(img + rng.normal(0, 10, (321, 481, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i:03d}.png")
    return root


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(BenchConfig, argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = cfg.folder or str(generated_set(Path(tmp), cfg.images))
        sets = collect_test_sets(bsd68=folder, urban100=None, rain100l=None, sots=None, max_images=cfg.images)
        rows = []
        for spec in cfg.models:
            restorer = make_restorer(spec, cfg.device)
            t0 = time.perf_counter()
            res = evaluate(restorer, sets, protocol=get_protocol("dynet"), sigmas=[cfg.sigma], device=cfg.device,
                           warmup=cfg.warmup)
            wall = time.perf_counter() - t0
            col = next(iter(res["columns"].values()))
            rows.append({"model": spec, "reuse": res["reuse"], "images": col["n"],
                         "forward_s_per_image": col["seconds_per_image"],
                         "images_per_s_end_to_end": col["n"] / wall, "wall_s": wall, "warmup": cfg.warmup,
                         "psnr_untrained": col["psnr"]})
            print(f"{spec:>12}: forward {col['seconds_per_image']:.3f} s/image, "
                  f"{col['n'] / wall:.3f} images/s end to end ({col['n']} images, warm-up: {cfg.warmup})")
            del restorer
    result = {"benchmark": "eval_speed", "image_size": "481x321 (scored 480x320)", "device": cfg.device,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average_1m": os.getloadavg()[0], "platform": platform.platform(),
              "torch": torch.__version__, "results": rows}
    atomic_write_json(cfg.out, result)
    print(f"written {cfg.out}")
    return result


if __name__ == "__main__":
    main()
