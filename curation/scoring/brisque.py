"""Fast BRISQUE (Mittal, Moorthy & Bovik 2012) equal to pyiqa's ``brisque`` with the shipped LIVE SVR.

What is computed (pyiqa's 'original' variant, re-derived; shared steps in :mod:`curation.scoring.nss`):

1. Y (YIQ) in 0..255, rounded; two scales: the image and MATLAB ``imresize(Y, 0.5)`` (float32, size
   ``ceil(h / 2) x ceil(w / 2)``).
2. On each scale, MSCN coefficients with the 7x7 window and *zero* padding ('same' convolution); over
   the whole image: a GGD fit of the coefficients (shape, variance) and an AGGD fit of their products
   with the neighbour at four orientations (shape, eta, left and right variances), the neighbour wrapping
   around the image edges (``torch.roll``): 18 features per scale.
3. Features scaled to [-1, 1] with the ranges of the official MATLAB release, then the epsilon-SVR with
   an RBF kernel (gamma 0.05, rho -153.591) over the shipped support vectors.

The SVR file is read with ``torch.load(weights_only=True)`` (a tuple of two float64 tensors): nothing is
unpickled. pyiqa runs BRISQUE in float32; we accumulate in float64, so the two differ by pyiqa's own
float32 rounding (measured: < 3.5e-4 relative on photos; see docs/curation-score.md).

The image is processed in row strips: only one strip of coefficient rows, the previous row (vertical
neighbours) and the first row (the wrap-around pair) are held at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import torch
from scipy.special import gammaln

from curation.scoring import nss

SVR_GAMMA = 0.05
SVR_RHO = -153.591
# Feature ranges of the official BRISQUE MATLAB release (allrange): row = (min, max) per feature.
FEATURE_RANGES = np.array([
    [0.338, 10], [0.017204, 0.806612], [0.236, 1.642], [-0.123884, 0.20293], [0.000155, 0.712298],
    [0.001122, 0.470257], [0.244, 1.641], [-0.123586, 0.179083], [0.000152, 0.710456], [0.000975, 0.470984],
    [0.249, 1.555], [-0.135687, 0.100858], [0.000174, 0.684173], [0.000913, 0.534174], [0.258, 1.561],
    [-0.143408, 0.100486], [0.000179, 0.685696], [0.000888, 0.536508], [0.471, 3.264], [0.012809, 0.703171],
    [0.218, 1.046], [-0.094876, 0.187459], [1.5e-005, 0.442057], [0.001272, 0.40803], [0.222, 1.042],
    [-0.115772, 0.162604], [1.6e-005, 0.444362], [0.001374, 0.40243], [0.227, 0.996], [-0.117188, 0.098323],
    [3e-005, 0.531903], [0.001122, 0.369589], [0.228, 0.99], [-0.12243, 0.098658], [2.8e-005, 0.530092],
    [0.001118, 0.370399],
], dtype=np.float32).astype(np.float64)  # pyiqa holds the table in float32


@dataclass(frozen=True)
class BrisqueModel:
    """The LIVE epsilon-SVR: support-vector coefficients (n,) and support vectors (n, 36)."""

    sv_coef: np.ndarray
    sv: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> BrisqueModel:
        sv_coef, sv = load_svr_tensors(path)
        return cls(sv_coef=sv_coef.numpy().astype(np.float64), sv=sv.numpy().astype(np.float64))


def load_svr_tensors(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped ``brisque_svm_weights.pth`` as (sv_coef, sv) tensors, loaded without unpickling objects."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} cannot be loaded safely as tensors (weights_only=True): {str(exc)[:300]}") from exc
    ok = (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj)
          and obj[0].ndim == 1 and obj[1].ndim == 2 and obj[1].shape == (obj[0].shape[0], 36))
    if not ok:
        raise ValueError(f"{path} is not a BRISQUE SVR (expected a tuple (sv_coef[n], sv[n, 36]))")
    return obj[0], obj[1]


@numba.njit(cache=True, nogil=True)
def _rows_with_up(n, start, out):  # pragma: no cover - compiled
    """Sums of rows start.. of n, each with the row above it as its upper neighbour row (columns wrap)."""
    for r in range(start, n.shape[0]):
        nss.segment_sums(n[r], n[r - 1], 0, n.shape[1], out)


def scale_sums(fetch: nss.RowFetch, height: int, width: int) -> np.ndarray:
    """(5 maps, 5 sums) over one scale, strip by strip; neighbours wrap around the image (``torch.roll``)."""
    sums = np.zeros((5, 5))
    step = nss.strip_rows(width)
    first = prev = None
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        n = nss.mscn_rows_f32(fetch, height, r0, r1)
        if prev is None:
            first = n[0].copy()
            _rows_with_up(n, 1, sums)  # row 0 waits for the last row (its upper neighbour, wrapping)
        else:
            _rows_with_up(np.concatenate([prev[None], n]), 1, sums)
        prev = n[-1].copy()
        del n
    _rows_with_up(np.stack([prev, first]), 1, sums)
    return sums


def scale_features(sums: np.ndarray, count: int) -> np.ndarray:
    """BRISQUE's 18 features of one scale from its sums."""
    ssq0 = sums[0, 2] + sums[0, 3]
    if ssq0 == 0:
        raise ValueError("Expected image with non zero variance of pixel values")  # pyiqa asserts the same
    shape, sigma = nss.ggd_fit(np.array([ssq0]), np.array([sums[0, 4]]), count)
    feats = [shape[0], sigma[0] ** 2]
    s = sums[1:]
    alpha, left, right = nss.aggd_fit(s[:, 0], s[:, 1], s[:, 2], s[:, 3], s[:, 4], s[:, 2] + s[:, 3], count)
    with np.errstate(invalid="ignore"):
        eta = (right - left) * np.exp(gammaln(2 / alpha) - (gammaln(1 / alpha) + gammaln(3 / alpha)) / 2)
    for m in range(4):
        feats += [alpha[m], eta[m], left[m] ** 2, right[m] ** 2]
    return np.array(feats)


def brisque_features(rgb: np.ndarray, y8: np.ndarray | None = None) -> np.ndarray:
    """The 36 BRISQUE features of an HxWx3 uint8 image."""
    h, w = rgb.shape[:2]

    def fetch_y(a: int, b: int) -> np.ndarray:
        return nss.luma(rgb[a:b]) if y8 is None else y8[a:b].astype(np.float32)

    def fetch_half(a: int, b: int) -> np.ndarray:
        return nss.half_rows(fetch_y, h, w, a, b)

    f1 = scale_features(scale_sums(fetch_y, h, w), h * w)
    h2, w2 = nss.half_size(h), nss.half_size(w)
    f2 = scale_features(scale_sums(fetch_half, h2, w2), h2 * w2)
    return np.concatenate([f1, f2])


def brisque_from_features(feats: np.ndarray, model: BrisqueModel) -> float:
    """The epsilon-SVR in float64. pyiqa evaluates it in float32, where the 774 kernel terms (their
    magnitudes sum to ~5e5 for a score of ~25) leave a rounding noise of a few 1e-3 in its scores; float64
    gives the formula's value for the features, deterministically (docs/curation-score.md)."""
    lo, hi = FEATURE_RANGES[:, 0], FEATURE_RANGES[:, 1]
    scaled = -1 + 2 * (np.asarray(feats, dtype=np.float64) - lo) / (hi - lo)
    dist = ((scaled[None, :] - model.sv) ** 2).sum(axis=1)
    return float(np.exp(-SVR_GAMMA * dist) @ model.sv_coef - SVR_RHO)


def brisque(rgb: np.ndarray, model: BrisqueModel, y8: np.ndarray | None = None) -> float:
    return brisque_from_features(brisque_features(rgb, y8), model)
