"""The metrics themselves: real pyiqa NIQE / BRISQUE with the shipped official parameters, NIMA batching."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from test_score_support import install_test_nima, natural_image

from curation.scoring.metrics import DATA_DIR, METRICS, MetricSet, parse_metrics
from curation.weights import require


@pytest.fixture(scope="module")
def native():
    metrics = ("niqe", "brisque")
    return MetricSet(metrics, "cpu", require(metrics))


def test_parse_metrics_and_directions():
    assert parse_metrics("nima, NIQE") == ("niqe", "nima")
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metrics("niqe,psnr")
    assert METRICS["niqe"].lower_better and METRICS["brisque"].lower_better and not METRICS["nima"].lower_better


def test_shipped_parameters_are_the_official_files(shared_dir):
    iqa = shared_dir / "data" / "iqa"
    for name in ("niqe_modelparameters.mat", "brisque_svm_weights.pth", "LIVE_BRISQUE_NOTICE.txt"):
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).digest() == hashlib.sha256((iqa / name).read_bytes()).digest()


def test_niqe_brisque_rank_degradation(native):
    clean = natural_image((192, 192), seed=5)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 40, clean.shape), 0, 255).astype(np.uint8)
    s_clean = native.score_native(native.to_tensor(clean))
    s_noisy = native.score_native(native.to_tensor(noisy))
    assert all(np.isfinite(v) for v in (*s_clean.values(), *s_noisy.values()))
    assert s_noisy["niqe"] > s_clean["niqe"] + 1.0
    assert s_noisy["brisque"] > s_clean["brisque"] + 5.0


def test_real_photos_score_in_published_ranges(native, shared_dir):
    from PIL import Image

    for name in ("kodim01.png", "kodim03.png", "kodim23.png"):
        rgb = np.asarray(Image.open(shared_dir / "data" / "samples" / "Kodak24_500px" / name).convert("RGB"))
        s = native.score_native(native.to_tensor(rgb))
        assert 2.0 < s["niqe"] < 6.0, (name, s)  # pristine photos: NIQE ~2-5
        assert -20.0 < s["brisque"] < 35.0, (name, s)


def test_nima_batched_equals_pyiqa_per_image(tmp_path):
    install_test_nima(tmp_path)
    ms = MetricSet(("nima",), "cpu", require(("nima",)))
    imgs = [natural_image((200, 150), seed=7), natural_image((130, 260), seed=8)]
    xs = [ms.to_tensor(a) for a in imgs]
    batched = ms.score_nima([ms.nima_input(x) for x in xs])
    with torch.inference_mode():
        single = [float(ms.nima(x).item()) for x in xs]  # pyiqa's own resize / crop inside forward
    assert np.allclose(batched, single, atol=1e-4)
    assert all(1.0 <= v <= 10.0 for v in batched)
