"""The image-quality metrics of the curation: a small typed table plus their construction.

The table (:data:`METRICS`) says, for each metric of :data:`curation.layout.METRIC_TABLE` (which owns
names, directions and default thresholds), which pyiqa metric and variant computes it and which
weight file it needs.

Construction happens once per (Dask worker) process and is cached (:func:`get_metric_set`):

- NIQE and BRISQUE are built with ``pyiqa.create_metric(name, pretrained_model_path=FILE)`` where
  FILE is the official parameter file shipped as package data (``curation/data``), so they work
  offline; they run at the image's native resolution.
- NIMA (pyiqa ``nima``: Inception-ResNet-v2 backbone, AVA) is built here with the timm backbone
  created with ``pretrained=False`` (no ImageNet download) and the NIMA weights loaded from an
  explicit file with ``torch.load(weights_only=True)``. Images are resized / centre-cropped to the
  network's input size exactly as pyiqa's NIMA does, then scored in batches.

pyiqa is imported lazily, after ``ensure_torchvision_importable()``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.torchvision_compat import ensure_torchvision_importable
from curation import layout

_LOG = logging.getLogger(__name__)
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its column name, pyiqa identity, weight file, direction and default threshold."""

    name: str
    pyiqa_name: str
    variant: str
    weight_file: str  # file name in the package data (shipped) or in pyiqa's cache
    shipped: bool  # True: the weight file ships in curation/data
    lower_better: bool
    default_threshold: float
    score_range: str


def _direction(name: str) -> dict:
    """Direction and default threshold come from the metric table of the on-disk contract."""
    entry = layout.metric(name)
    return {"lower_better": entry.lower_better, "default_threshold": entry.default_threshold}


METRICS: dict[str, MetricSpec] = {
    "niqe": MetricSpec(
        name="niqe", pyiqa_name="niqe", weight_file="niqe_modelparameters.mat", shipped=True,
        variant="NIQE (Mittal et al. 2013), official LIVE pristine MVG model, Y channel, 96x96 blocks, native resolution",
        **_direction('niqe'), score_range="~0 .. ~100 (pristine photos ~2-5)"),
    "brisque": MetricSpec(
        name="brisque", pyiqa_name="brisque", weight_file="brisque_svm_weights.pth", shipped=True,
        variant="BRISQUE (Mittal et al. 2012), official LIVE epsilon-SVR (allmodel), Y channel, native resolution",
        **_direction('brisque'), score_range="~0 .. ~150 (pristine photos ~0-30, may be <0)"),
    "nima": MetricSpec(
        name="nima", pyiqa_name="nima", weight_file="NIMA_InceptionV2_ava-b0c77c00.pth", shipped=False,
        variant="NIMA (Talebi & Milanfar 2018), Inception-ResNet-v2 backbone trained on AVA, mean of 10-bin score distribution, 299x299 resize+centre-crop",
        **_direction('nima'), score_range="1 .. 10 (AVA mean ~5.4)"),
}

NIMA_BACKBONE = "inception_resnet_v2"
NIMA_CLASSES = 10


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"niqe,brisque"`` → ``("niqe", "brisque")`` in table order; unknown names are a clear error."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ValueError("no metrics given; choose from " + ", ".join(METRICS))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    return tuple(n for n in METRICS if n in names)


def pyiqa_version() -> str:
    ensure_torchvision_importable()
    import pyiqa

    return str(getattr(pyiqa, "__version__", "unknown"))


def build_nima_network(base_model_name: str = NIMA_BACKBONE, num_classes: int = NIMA_CLASSES,
                       on_meta: bool = False) -> torch.nn.Module:
    """pyiqa's NIMA architecture with a randomly initialised backbone (timm ``pretrained=False``).

    The module is an instance of ``pyiqa.archs.nima_arch.NIMA`` (so its ``preprocess``/``forward``
    are pyiqa's), but its constructor never downloads anything; load weights with :func:`load_nima`.
    ``on_meta=True`` skips the (slow) random initialisation: parameters must then be loaded with
    ``load_state_dict(..., assign=True)``.
    """
    ensure_torchvision_importable()
    import timm
    from pyiqa.archs.nima_arch import NIMA

    net = NIMA.__new__(NIMA)
    torch.nn.Module.__init__(net)
    with torch.device("meta" if on_meta else "cpu"):
        net.base_model = timm.create_model(base_model_name, pretrained=False, features_only=True)
        net.global_pool = torch.nn.AdaptiveAvgPool2d(1)
        net.num_classes = num_classes
        layers: list[torch.nn.Module] = [torch.nn.Flatten(), torch.nn.Dropout(p=0.0),
                                         torch.nn.Linear(net.base_model.feature_info.channels()[-1], num_classes)]
        if num_classes > 1:
            layers.append(torch.nn.Softmax(dim=-1))
        net.classifier = torch.nn.Sequential(*layers)
    cfg = net.base_model.pretrained_cfg
    net.default_mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    net.default_std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return net


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A weights file as a flat state dict, never unpickling (``weights_only=True``); accepts ``{"params": sd}``."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a torch file), ...
        raise ValueError(f"{path} cannot be loaded safely as tensors (weights_only=True): {str(exc)[:300]}") from exc
    if isinstance(obj, dict) and "params" in obj and isinstance(obj["params"], dict):
        obj = obj["params"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_nima(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """Build NIMA offline and load its weights from ``path`` (strict; a mismatch is a clear error)."""
    net = build_nima_network(on_meta=True)
    state = read_state_dict(path)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"NIMA weights {path} do not fit pyiqa's {NIMA_BACKBONE} NIMA: {str(exc)[:400]}") from exc
    still_meta = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if still_meta:
        raise ValueError(f"NIMA weights {path} leave tensors unset: {still_meta[:5]}")
    return net.float().to(device).eval()  # float() casts floating tensors only (fp16 files → fp32)


def build_pyiqa_brisque(path: str | Path) -> torch.nn.Module:
    """pyiqa's BRISQUE module ('original' variant) with the SVR loaded by us with ``weights_only=True``.

    pyiqa's constructor reads the file with ``torch.load(weights_only=False)`` (issue 13 item 9); this
    builds the same module without calling it: the attributes its constructor sets for the 'original'
    variant, the tensors from :func:`curation.scoring.brisque.load_svr_tensors`. ``forward`` is pyiqa's.
    """
    ensure_torchvision_importable()
    from pyiqa.archs.brisque_arch import BRISQUE

    from curation.scoring.brisque import SVR_GAMMA, SVR_RHO, load_svr_tensors

    net = BRISQUE.__new__(BRISQUE)
    torch.nn.Module.__init__(net)
    net.kernel_size, net.kernel_sigma, net.test_y_channel, net.version = 7, 7 / 6, True, "original"
    net.gamma, net.rho, net.scale = SVR_GAMMA, SVR_RHO, 1
    net.sv_coef, net.sv = load_svr_tensors(path)
    return net.eval()


class MetricSet:
    """The pyiqa engine (``--engine pyiqa``, the reference): built once; scores one decoded RGB image at a time."""

    engine = "pyiqa"

    def __init__(self, metrics: Sequence[str], device: str, weight_paths: dict[str, str]):
        ensure_torchvision_importable()
        import pyiqa

        self.metrics = tuple(metrics)
        self.device = torch.device(device)
        self.native: dict[str, torch.nn.Module] = {}
        for name in self.metrics:
            spec = METRICS[name]
            if name == "nima":
                continue
            if name == "brisque":  # pyiqa's own constructor would torch.load(weights_only=False) the file
                self.native[name] = build_pyiqa_brisque(weight_paths[name]).to(self.device)
                continue
            self.native[name] = pyiqa.create_metric(spec.pyiqa_name, pretrained_model_path=weight_paths[name],
                                                    device=self.device)
        self.nima = load_nima(weight_paths["nima"], device=str(self.device)) if "nima" in self.metrics else None
        self.nima_size = int(self.nima.base_model.default_cfg["input_size"][-1]) if self.nima is not None else 0

    def to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 → 1x3xHxW float in [0, 1] on the metric device."""
        t = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy()).to(self.device)
        return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)

    def score_native(self, x: torch.Tensor) -> dict[str, float]:
        """NIQE / BRISQUE at native resolution; a metric that raises propagates (caller records it)."""
        out = {}
        with torch.inference_mode():
            for name, metric in self.native.items():
                out[name] = float(metric(x).reshape(-1)[0].item())
        return out

    def score_image(self, rgb: np.ndarray) -> tuple[dict[str, float], torch.Tensor | None]:
        """Native scores of one decoded image and its NIMA input (None without NIMA); the engine interface."""
        x = self.to_tensor(rgb)
        scores = self.score_native(x)
        return scores, (self.nima_input(x) if self.nima is not None else None)

    def nima_input(self, x: torch.Tensor) -> torch.Tensor:
        """pyiqa NIMA's eval preprocessing geometry (shorter side → input size, centre crop), per image."""
        import torchvision.transforms.functional as TF

        y = TF.resize(x, self.nima_size, antialias=True)
        return TF.center_crop(y, self.nima_size)[0]

    def score_nima(self, batch: Sequence[torch.Tensor]) -> list[float]:
        with torch.inference_mode():
            mos = self.nima(torch.stack(list(batch)).to(self.device))
        return [float(v) for v in mos.reshape(-1).tolist()]


ENGINES = ("fast", "pyiqa")
_CACHE: dict[tuple, object] = {}
BUILDS = 0  # how many metric sets this process built (tests check "once per worker")


def build_metric_set(metrics: Sequence[str], device: str, weight_paths: dict[str, str], engine: str = "fast"):
    """A metric set of the given engine: ``fast`` (our NIQE/BRISQUE, the default) or ``pyiqa`` (the reference)."""
    if engine == "fast":
        from curation.scoring.engine import FastMetricSet

        return FastMetricSet(metrics, device, weight_paths)
    if engine == "pyiqa":
        return MetricSet(metrics, device, weight_paths)
    raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def get_metric_set(metrics: Sequence[str], device: str, weight_paths: dict[str, str], engine: str = "fast"):
    """The process-wide metric set for these settings: built on first use in each worker, then reused."""
    key = (tuple(metrics), device, tuple(sorted(weight_paths.items())), engine)
    if key not in _CACHE:
        _LOG.info("building %s metrics %s on %s (once per process)", engine, ",".join(metrics), device)
        global BUILDS
        _CACHE.clear()
        _CACHE[key] = build_metric_set(metrics, device, weight_paths, engine)
        BUILDS += 1
    return _CACHE[key]
