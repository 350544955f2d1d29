"""PSNR / SSIM per protocol against hand-computed values and scikit-image's per-channel definition."""

from __future__ import annotations

import math
import warnings

import numpy as np
from skimage.metrics import structural_similarity

from tests.restoration_fixtures import smooth_image
from training.evaluation import report as eval_report
from training.evaluation.metrics import (
    psnr,
    rgb_to_y_bt601,
    score_pair,
    ssim,
    to_float01,
)


def test_identical_images_inf_and_one_without_warnings():
    img = smooth_image(np.random.default_rng(0), 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, s = score_pair(img, img)
    assert math.isinf(p) and p > 0 and s == 1.0
    assert math.isinf(score_pair(img, img, y_channel=True)[0])


def test_known_shift_psnr():
    a = np.full((32, 32, 3), 0.5, np.float32)
    assert abs(psnr(a, a + np.float32(0.1)) - 20.0) < 1e-4  # MSE 0.01 -> 20 dB
    rng = np.random.default_rng(1)
    x = rng.random((24, 40, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    assert abs(psnr(x, y) - 10 * math.log10(1 / mse)) < 1e-4


def test_uint8_input_and_clipping():
    img = smooth_image(np.random.default_rng(2), 32, 32)
    assert np.allclose(to_float01(img), img / 255.0, atol=1e-7)
    over = to_float01(img) + 0.5  # restored values above 1 are clipped first, as the official code
    assert psnr(img, over) == psnr(img, np.clip(over, 0, 1))


def test_ssim_is_mean_over_colour_channels_and_drops_with_shift():
    rng = np.random.default_rng(3)
    x = to_float01(smooth_image(rng, 40, 40))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    per_channel = np.mean([structural_similarity(x[..., c], y[..., c], data_range=1) for c in range(3)])
    assert abs(ssim(x, y) - per_channel) < 1e-6
    assert ssim(x, y) < 1.0
    assert ssim(x, np.roll(x, 4, axis=1)) < ssim(x, np.roll(x, 1, axis=1)) < 1.0  # larger shift, lower SSIM


def test_dsrir_y_channel():
    white, black = np.ones((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32)
    assert np.allclose(rgb_to_y_bt601(white), 235 / 255, atol=1e-6)
    assert np.allclose(rgb_to_y_bt601(black), 16 / 255, atol=1e-6)
    rng = np.random.default_rng(4)
    x = to_float01(smooth_image(rng, 40, 48))
    y = np.clip(x + rng.normal(0, 0.04, x.shape), 0, 1).astype(np.float32)
    yx, yy = rgb_to_y_bt601(x), rgb_to_y_bt601(y)
    p, s = score_pair(x, y, y_channel=True)
    assert abs(p - 10 * math.log10(1 / np.mean((yx.astype(np.float64) - yy) ** 2))) < 1e-3
    # DSRIR's channel_axis=-1 on a 2-D Y image = mean of 1-D SSIMs over columns (documented quirk)
    cols = np.mean([structural_similarity(yx[:, i], yy[:, i], data_range=1) for i in range(yx.shape[1])])
    assert abs(s - cols) < 1e-6
    assert abs(s - structural_similarity(yx, yy, data_range=1)) > 1e-4


def test_table1_average_and_markdown():
    cols = {c: {"psnr": v, "ssim": 0.5, "n": 2, "seconds_per_image": 0.0}
            for c, v in zip(eval_report.TABLE1_COLUMNS, [30, 38, 34, 31, 28])}
    cols["Urban100 σ15"] = {"psnr": 99.0, "ssim": 0.1, "n": 1, "seconds_per_image": 0.0}
    avg = eval_report.table1_average(cols)
    assert avg["psnr"] == 32.2 and avg["complete"]
    run = {"model": "m", "columns": cols, "table1_average": avg, "protocol": "dynet",
           "protocol_description": "d", "noise_seed": 0, "noise_seeding": "per-sigma"}
    md = eval_report.table1_markdown([run])
    assert "| m | 30.00/0.500 | 38.00/0.500 | 34.00/0.500 | 31.00/0.500 | 28.00/0.500 | 32.20/0.500 | 99.00/0.100 |" in md
    assert "Protocol: **dynet**" in md
    assert eval_report.json_safe({"a": [math.inf, math.nan, 1.0]}) == {"a": ["inf", "nan", 1.0]}
