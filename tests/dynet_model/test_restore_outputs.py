"""``dynet_model.restore``: lossless / 16-bit outputs, before-after views, per-image isolation, full report.

Issue 13 items 4 and 13 and issue 17's restore bullet: every case is a real file on disk run through the
command's ``main``.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from dynet_model.build import build_model
from dynet_model.checkpoint import save_model
from dynet_model.config import ModelConfig
from dynet_model.restore import main as restore_main
from dynet_model.restore_io import decode_image


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig.tiny("dynet")).eval()
    return str(save_model(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, ModelConfig.tiny("dynet")))


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _report(out):
    return json.loads((out / "restore_report.json").read_text())


def test_jpeg_input_gives_lossless_png_by_default_and_jpeg_only_on_request(tmp_path, ckpt):
    src = tmp_path / "photo.jpg"
    cv2.imwrite(str(src), _photo(40, 56), [cv2.IMWRITE_JPEG_QUALITY, 90])
    restore_main([str(src), "-o", str(tmp_path / "png"), "--checkpoint", ckpt])
    out = tmp_path / "png" / "photo.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "png" / "photo.jpg").exists()
    # lossless: the PNG holds exactly the network's output, quantised once
    from dynet_model.checkpoint import load_model
    from dynet_model.restore import restore_array

    model, _, _ = load_model(ckpt)
    rgb, depth = decode_image(src.read_bytes())
    expected = np.round(restore_array(model.eval(), rgb, 0, 32, "cpu") * 255).astype(np.uint8)
    assert depth == 8 and np.array_equal(cv2.imread(str(out))[..., ::-1], expected)
    restore_main([str(src), "-o", str(tmp_path / "same"), "--checkpoint", ckpt, "--keep-format"])
    assert (tmp_path / "same" / "photo.jpg").read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize("channels", [3, 1])
def test_sixteen_bit_input_gives_sixteen_bit_output(tmp_path, ckpt, channels):
    img16 = (_photo(48, 40).astype(np.uint16) * 257 + np.arange(40, dtype=np.uint16)[None, :, None])
    img16 = img16 if channels == 3 else img16[..., 0]
    cv2.imwrite(str(tmp_path / "deep.png"), img16)
    report = restore_main([str(tmp_path / "deep.png"), "-o", str(tmp_path / "out"), "--checkpoint", ckpt])
    assert report[0]["bit_depth"] == 16 and report[0]["output_bit_depth"] == 16
    out = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (48, 40, 3)
    assert np.count_nonzero(out % 257) > out.size // 2  # real 16-bit values, not 8-bit ones scaled up


def test_side_by_side_shows_input_then_output(tmp_path, ckpt):
    cv2.imwrite(str(tmp_path / "a.png"), _photo(30, 44))
    report = restore_main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--checkpoint", ckpt,
                           "--side-by-side"])
    view = cv2.imread(report[0]["side_by_side"])
    before, after = cv2.imread(str(tmp_path / "a.png")), cv2.imread(str(tmp_path / "out" / "a.png"))
    assert view.shape == (30, 44 + 8 + 44, 3)
    assert np.array_equal(view[:, :44], before) and np.array_equal(view[:, -44:], after)
    assert (view[:, 44:52] == 255).all()


def test_one_bad_image_never_aborts_the_batch(tmp_path, ckpt):
    """Unwritable output, broken file, too-large image: each recorded; the good image after them restored."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    cv2.imwrite(str(inp / "a_blocked.png"), _photo(20, 20))
    (out / "a_blocked.png").mkdir(parents=True)  # its output path is a folder: the write fails
    (inp / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cv2.imwrite(str(inp / "c_huge.png"), _photo(200, 300))
    cv2.imwrite(str(inp / "d_good.png"), _photo(24, 32))
    report = restore_main([str(inp), "-o", str(out), "--checkpoint", ckpt, "--max-pixels", "50000"])
    status = {os.path.basename(e["input"]): e["status"] for e in report}
    assert status == {"a_blocked.png": "error", "b_broken.png": "decode_error", "c_huge.png": "too_large",
                      "d_good.png": "ok"}
    assert cv2.imread(str(out / "d_good.png")).shape == (24, 32, 3)
    assert _report(out)["restored"] == 1 and _report(out)["skipped"] == 3


def test_large_image_is_tiled_automatically(tmp_path, ckpt):
    cv2.imwrite(str(tmp_path / "big.png"), _photo(600, 700))
    report = restore_main([str(tmp_path / "big.png"), "-o", str(tmp_path / "out"), "--checkpoint", ckpt,
                           "--max-untiled-pixels", "100000"])
    assert report[0]["status"] == "ok" and report[0]["tile"] == 512
    assert cv2.imread(str(tmp_path / "out" / "big.png")).shape == (600, 700, 3)


def test_missing_input_exits_nonzero_and_report_is_written(tmp_path, ckpt):
    cv2.imwrite(str(tmp_path / "a.png"), _photo(20, 20))
    with pytest.raises(SystemExit) as exc:
        restore_main([str(tmp_path / "a.png"), str(tmp_path / "nope.png"), "-o", str(tmp_path / "out"),
                      "--checkpoint", ckpt])
    assert exc.value.code != 0 and "nope.png" in str(exc.value.code)
    report = _report(tmp_path / "out")
    assert [e["status"] for e in report["images"]] == ["ok", "missing"]


def test_report_lists_dangling_and_looping_symlinks(tmp_path, ckpt):
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), _photo(20, 20))
    (inp / "dangling.png").symlink_to(tmp_path / "gone.png")
    (inp / "loop1.png").symlink_to(inp / "loop2.png")
    (inp / "loop2.png").symlink_to(inp / "loop1.png")
    (inp / "cycle").symlink_to(inp)  # a symlinked folder pointing at its parent: not followed
    os.mkfifo(inp / "fifo.png")  # reading it would hang: refused by type
    (tmp_path / "top_dangling.png").symlink_to(tmp_path / "gone.png")
    report = restore_main([str(inp), str(tmp_path / "top_dangling.png"), "-o", str(tmp_path / "out"),
                           "--checkpoint", ckpt])
    status = {os.path.basename(e["input"]): e["status"] for e in _report(tmp_path / "out")["images"]}
    assert status == {"a.png": "ok", "dangling.png": "dangling_symlink", "loop1.png": "symlink_loop",
                      "loop2.png": "symlink_loop", "cycle": "symlinked_folder", "fifo.png": "not_a_regular_file",
                      "top_dangling.png": "dangling_symlink"}
    assert len(report) == 7
