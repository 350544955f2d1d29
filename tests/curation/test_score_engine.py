"""The fast engine equals pyiqa (the oracle) image by image: NIQE, BRISQUE, NIMA; safe BRISQUE loading.

Real pyiqa on the same decoded images (``--engine pyiqa``'s metric set), generated images of awkward sizes
(odd, not multiples of NIQE's 96 px blocks, the smallest that have a block, greyscale, 16-bit, flat areas),
and real photographs from ../shared where present.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from test_score_support import encode, install_test_nima, natural_image

from common.imagedecode import decode_rgb
from curation.scoring import nss
from curation.scoring.brisque import load_svr_tensors
from curation.scoring.engine import FastMetricSet
from curation.scoring.metrics import MetricSet, build_pyiqa_brisque
from curation.weights import require

NATIVE = ("niqe", "brisque")
# pyiqa evaluates BRISQUE's SVR in float32: its 774 kernel terms add up to ~5e5 in magnitude for scores of
# ~25, and a 1-ulp change of its float32 features moves its score by up to 4.9e-3 (measured), so below
# that floor "equal" means "within pyiqa's own rounding" (docs/curation-score.md).
BRISQUE_FLOOR = 5e-3


def _close(metric: str, ours: float, ref: float) -> bool:
    tol = 1e-3 * max(abs(ref), 1.0)
    if metric == "brisque":
        tol = max(tol, BRISQUE_FLOOR)
    return abs(ours - ref) <= tol


@pytest.fixture(scope="module")
def engines():
    paths = require(NATIVE)
    return FastMetricSet(NATIVE, "cpu", paths), MetricSet(NATIVE, "cpu", paths)


def _assert_equal(engines, rgb: np.ndarray, label: str) -> None:
    fast, ref = engines
    ours = fast.score_native(rgb)
    theirs = ref.score_native(ref.to_tensor(rgb))
    for m in NATIVE:
        assert _close(m, ours[m], theirs[m]), (label, rgb.shape, m, ours[m], theirs[m])


def _with_flat_areas(rgb: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    h, w = out.shape[:2]
    out[: h // 3] = 255  # saturated sky
    out[h // 2:, : w // 3] = 0  # black letterbox
    out[2 * h // 3:, w // 2:] = 128  # flat grey
    return out


@pytest.mark.parametrize("size", [(96, 96), (97, 100), (200, 150), (301, 193), (255, 383)])
def test_equal_to_pyiqa_on_awkward_sizes(engines, size):
    _assert_equal(engines, natural_image(size, seed=size[0]), f"generated {size}")


def test_equal_to_pyiqa_on_flat_grey_and_16bit(engines):
    _assert_equal(engines, _with_flat_areas(natural_image((250, 300), seed=3)), "flat areas")
    grey = decode_rgb(encode(natural_image((211, 157), seed=9), fmt="PNG", mode="L"))
    _assert_equal(engines, grey, "greyscale")
    wide = (natural_image((193, 131), seed=4)[..., 0].astype(np.uint16) * 257 + 31).astype(np.uint16)
    img16 = Image.fromarray(wide)
    assert img16.mode == "I;16"
    buf = io.BytesIO()
    img16.save(buf, format="PNG")
    sixteen = decode_rgb(buf.getvalue())  # the decoder's 16-bit path, as curation.score presents it
    assert sixteen.dtype == np.uint8 and sixteen.shape == (131, 193, 3)
    _assert_equal(engines, sixteen, "16-bit PNG")


def test_equal_to_pyiqa_on_photographs(engines, shared_dir):
    samples = shared_dir / "data" / "samples"
    photos = [samples / "Kodak24_500px" / n for n in ("kodim01.png", "kodim07.png", "kodim23.png")]
    photos += sorted((samples / "Urban100_large").glob("*.png"))[:1]  # one ~1024 px photo
    for path in photos:
        _assert_equal(engines, decode_rgb(path.read_bytes()), path.name)
    _assert_equal(engines, decode_rgb(photos[0].read_bytes())[1:, 3:], "photo cropped to an odd size")


def test_too_small_images_are_errors_in_both_engines(engines):
    fast, ref = engines
    tiny = natural_image((80, 120), seed=1)  # no 96x96 NIQE block
    with pytest.raises(ValueError, match="niqe"):
        fast.score_native(tiny)
    with pytest.raises(RuntimeError):  # pyiqa: its block extraction fails on an empty crop
        ref.score_native(ref.to_tensor(tiny))


def test_luma_matches_pyiqa_for_every_colour():
    """All 2^24 colours: the Y we compute equals pyiqa's float32 YIQ matrix product, rounded."""
    from common.torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from pyiqa.utils.color_util import to_y_channel

    v = np.arange(256, dtype=np.uint8)
    r, g, b = np.meshgrid(v, v, v, indexing="ij")
    rgb = np.stack([r.ravel(), g.ravel(), b.ravel()], -1).reshape(4096, 4096, 3)
    for part in np.split(rgb, 4):
        x = torch.from_numpy(part).permute(2, 0, 1)[None].float().div_(255.0)
        assert np.array_equal(nss.luma(part), to_y_channel(x, 255.0)[0, 0].numpy())


def test_nima_fast_equals_pyiqa_nima(tmp_path):
    install_test_nima(tmp_path)
    paths = require(("nima",))
    fast, ref = FastMetricSet(("nima",), "cpu", paths), MetricSet(("nima",), "cpu", paths)
    imgs = [natural_image((200, 150), seed=7), natural_image((130, 261), seed=8), natural_image((333, 333), seed=2)]
    batched = fast.score_nima([fast.score_image(a)[1] for a in imgs])
    with torch.inference_mode():
        single = [float(ref.nima(ref.to_tensor(a)).item()) for a in imgs]  # pyiqa's own preprocessing
    assert np.allclose(batched, single, atol=1e-3, rtol=0)


def test_brisque_weights_are_never_unpickled(monkeypatch, tmp_path):
    """Issue 13 item 9: both engines read the shipped SVR with weights_only=True; pyiqa's unsafe load never runs."""
    real_load = torch.load

    def guarded_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", guarded_load)
    path = require(("brisque",))["brisque"]
    rgb = natural_image((160, 128), seed=1)
    fast = FastMetricSet(("brisque",), "cpu", {"brisque": path})
    ref = MetricSet(("brisque",), "cpu", {"brisque": path})
    assert _close("brisque", fast.score_native(rgb)["brisque"], ref.score_native(ref.to_tensor(rgb))["brisque"])
    assert isinstance(build_pyiqa_brisque(path), torch.nn.Module)

    class Payload:  # an arbitrary object: weights_only loading must refuse it
        def __reduce__(self):
            return (print, ("unpickled!",))

    bad = tmp_path / "brisque_svm_weights.pth"
    bad.write_bytes(pickle.dumps((Payload(), torch.zeros(3))))
    with pytest.raises(ValueError, match="weights_only"):
        load_svr_tensors(bad)


def test_engine_is_part_of_the_score_stage_settings():
    """Scores of one engine are never mixed with the other's in one folder: the engine is in the fingerprint."""
    from curation.score import build_settings, stage_settings

    fast = stage_settings(build_settings(NATIVE, require(NATIVE)))
    ref = stage_settings(build_settings(NATIVE, require(NATIVE), engine="pyiqa"))
    assert fast["engine"] == "fast" and ref["engine"] == "pyiqa" and fast != ref


def test_half_resize_and_brisque_maps_are_bit_equal_to_pyiqa():
    """MATLAB imresize(0.5) and BRISQUE's float32 MSCN map, strip by strip, equal pyiqa's whole-image results bit for bit."""
    from common.torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from pyiqa.archs.func_util import normalize_img_with_gauss
    from pyiqa.matlab_utils import imresize
    from pyiqa.utils.color_util import to_y_channel

    rgb = _with_flat_areas(natural_image((301, 193), seed=11))
    y_ref = to_y_channel(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0, 255.0)
    y = nss.luma(rgb)
    h, w = y.shape

    def fetch(a, b):
        return y[a:b]

    assert np.array_equal(nss.half_rows(fetch, h, w, 0, nss.half_size(h)), imresize(y_ref, scale=0.5)[0, 0].numpy())
    assert np.array_equal(np.concatenate([nss.half_rows(fetch, h, w, 0, 40), nss.half_rows(fetch, h, w, 40, 97)]),
                          imresize(y_ref, scale=0.5)[0, 0].numpy())  # strips = whole image
    ref_map = normalize_img_with_gauss(y_ref, 7, 7 / 6, padding="same")[0, 0].numpy()
    ours = np.concatenate([nss.mscn_rows_f32(fetch, h, 0, 70), nss.mscn_rows_f32(fetch, h, 70, h)])
    assert np.array_equal(ours, ref_map.astype(np.float64))
