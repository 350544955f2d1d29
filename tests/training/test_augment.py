"""training.augment: one depth draw, one flip/rotation implementation under three numberings, one noise rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import augment as A

X = np.arange(4 * 5 * 3).reshape(4, 5, 3)  # not square: a wrong axis shows up as a wrong shape


def _all_eight(x: np.ndarray) -> list[np.ndarray]:
    return [f(np.rot90(x, k, axes=(0, 1))) for k in range(4) for f in (lambda a: a, lambda a: a[:, ::-1])]


@pytest.mark.parametrize("table", [A.PROMPTIR_MODES, A.DSRIR_MODES])
def test_each_numbering_covers_the_eight_orientations(table):
    got = {A.orient_mode(X, m, table).tobytes() + bytes(A.orient_mode(X, m, table).shape) for m in table}
    want = {a.tobytes() + bytes(a.shape) for a in _all_eight(X)}
    assert got == want


def test_numberings_match_their_definitions():
    promptir = {1: np.flipud(X), 2: np.rot90(X), 3: np.flipud(np.rot90(X)), 6: np.rot90(X, 3),
                7: np.flipud(np.rot90(X, 3))}
    for m, want in promptir.items():
        assert np.array_equal(A.orient_mode(X, m, A.PROMPTIR_MODES), want), m
    dsrir = {0: X, 1: X[::-1], 2: X[:, ::-1], 4: np.rot90(X, 2), 6: np.rot90(X[::-1]), 7: np.rot90(X[:, ::-1]), 8: X}
    for m, want in dsrir.items():
        assert np.array_equal(A.orient_mode(X, m, A.DSRIR_MODES), want), m
    with pytest.raises(ValueError):
        A.orient_mode(X, 8, A.PROMPTIR_MODES)


def test_random_orientation_is_uniform_over_the_eight():
    seen = [A.random_orientation(X, np.random.default_rng(s)).tobytes() for s in range(400)]
    counts = sorted({v: seen.count(v) for v in seen}.values())
    assert len(counts) == 8 and counts[0] > 25


def test_one_depth_draw_for_pretraining_and_finetuning():
    from training.finetune import make_step_fn
    from training.pretrain import DynamicDepthStep

    s, l = (2, 3, 3, 4), (4, 6, 6, 8)
    pre = DynamicDepthStep([s, l], seed=7)
    draws = [A.draw_depth((s, l), 7, step) for step in range(64)]
    assert draws == [pre.variants[pre.pick(step)] for step in range(64)]
    assert 16 < draws.count(s) < 48

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x, reuse=None):
            seen.append(tuple(reuse))
            return x

    step_fn = make_step_fn(arch="dynet", variant="dynamic", seed=7)
    batch = {"lq": torch.zeros(1, 3, 2, 2), "gt": torch.zeros(1, 3, 2, 2)}
    for step in range(64):
        step_fn(Probe(), batch, step)
    assert seen == draws


def test_noise_truncates_or_rounds_and_follows_the_official_stream():
    clean = np.full((8, 8, 3), 100, np.uint8)
    z = np.random.RandomState(5).randn(8, 8, 3)
    assert np.array_equal(A.add_gaussian_noise(clean, 15, np.random.RandomState(5)),
                          np.clip(100 + z * 15, 0, 255).astype(np.uint8))
    assert np.array_equal(A.add_gaussian_noise(clean, 15, np.random.RandomState(5), rounding="round"),
                          np.clip(np.round(100 + z * 15), 0, 255).astype(np.uint8))
    g = A.add_gaussian_noise(clean, 15, np.random.default_rng(1))
    assert np.array_equal(g, np.clip(100 + np.random.default_rng(1).standard_normal((8, 8, 3)) * 15, 0, 255)
                          .astype(np.uint8))
    assert A.gaussian_noise((4, 4), 2.0, np.random.default_rng(0), dtype=np.float32).dtype == np.float32
