"""Fast NIQE (Mittal, Soundararajan & Bovik 2013) equal to pyiqa's ``niqe`` with the shipped LIVE model.

What is computed (pyiqa's definition, re-derived; see :mod:`curation.scoring.nss` for the shared steps):

1. Y (YIQ) of the image in 0..255, rounded; the image is cropped to whole 96x96 blocks (partial blocks
   at the right / bottom are dropped).
2. Two scales: the cropped image, and MATLAB ``imresize(., 0.5)`` of it (computed on ``Y / 255`` in
   float32, times 255). On each, MSCN coefficients with the 7x7 window and *replicate* padding.
3. Per block (96x96 at scale 1, 48x48 at scale 2; the same blocks): an AGGD fit of the coefficients
   and of their products with the neighbour at four orientations (the neighbour wraps around *inside the
   block*, as ``torch.roll`` on the block does): 18 features per scale, 36 per block.
4. NIQE = sqrt((mu_p - mu_d)^T pinv((C_p + C_d) / 2) (mu_p - mu_d)) with the pristine model (mu_p, C_p),
   mu_d the per-feature mean over blocks ignoring NaNs, C_d the covariance of the NaN-free blocks.

The block sums are one pass of a numba kernel per strip of block rows (five sign-split moment sums for
each of the five coefficient maps), the fits are vectorised over blocks. Peak memory: the decoded image
plus one strip (:data:`curation.scoring.nss.STRIP_BYTES`), whatever the image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import scipy.io
from scipy.special import gammaln

from curation.scoring import nss

BLOCK = 96


@dataclass(frozen=True)
class NiqeModel:
    """The pristine multivariate Gaussian (36 features) from the official parameter file."""

    mu: np.ndarray
    cov: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> NiqeModel:
        params = scipy.io.loadmat(str(path))  # a MATLAB file: plain arrays, nothing executed
        return cls(mu=np.ravel(params["mu_prisparam"]).astype(np.float64),
                   cov=np.asarray(params["cov_prisparam"], dtype=np.float64))


@numba.njit(cache=True, nogil=True)
def _block_sums(n, bs, out):  # pragma: no cover - compiled
    """out[bi, bj] += the (5 maps x 5 sums) of block (bi, bj); the neighbours wrap around inside the block."""
    for bi in range(n.shape[0] // bs):
        for i in range(bs):
            r = bi * bs + i
            ru = bi * bs + (i - 1 if i > 0 else bs - 1)
            for bj in range(n.shape[1] // bs):
                nss.segment_sums(n[r], n[ru], bj * bs, bj * bs + bs, out[bi, bj])


def block_sums(n: np.ndarray, bs: int) -> np.ndarray:
    """(blocks, 5 maps, 5 sums) for a float64 map whose sides are multiples of ``bs``."""
    out = np.zeros((n.shape[0] // bs, n.shape[1] // bs, 5, 5))
    _block_sums(np.ascontiguousarray(n, dtype=np.float64), bs, out)
    return out.reshape(-1, 5, 5)


def block_features(sums: np.ndarray, count: int) -> np.ndarray:
    """NIQE's 18 features per block from its sums: (alpha, mean beta) + 4 x (alpha, mean, beta_l, beta_r)."""
    cnt_l, cnt_r, ssq_l, ssq_r, sabs = (sums[..., k] for k in range(5))
    alpha, left, right = nss.aggd_fit(cnt_l, cnt_r, ssq_l, ssq_r, sabs, ssq_l + ssq_r, count)
    with np.errstate(invalid="ignore"):
        scale = np.sqrt(np.exp(gammaln(1 / alpha) - gammaln(3 / alpha)))
        beta_l, beta_r = left * scale, right * scale
        mean = (beta_r - beta_l) * np.exp(gammaln(2 / alpha) - gammaln(1 / alpha))
    feats = [alpha[:, 0], (beta_l[:, 0] + beta_r[:, 0]) / 2]
    for m in range(1, 5):
        feats += [alpha[:, m], mean[:, m], beta_l[:, m], beta_r[:, m]]
    return np.stack(feats, axis=1)


def _strip_block_rows(width: int) -> int:
    return nss.strip_rows(width, BLOCK)


def niqe_features(rgb: np.ndarray, y8: np.ndarray | None = None) -> np.ndarray:
    """(blocks, 36) features of an HxWx3 uint8 image (empty when a side is under 96 px).

    ``y8``: the image's luma (:func:`curation.scoring.nss.luma_u8`) when already computed (shared with BRISQUE).
    """
    h, w = rgb.shape[:2]
    nbh, nbw = h // BLOCK, w // BLOCK
    if nbh == 0 or nbw == 0:
        return np.zeros((0, 36))
    hc, wc = nbh * BLOCK, nbw * BLOCK
    unit = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)  # pyiqa: (Y / 255.0) in float64 -> float32

    def fetch_y(a: int, b: int) -> np.ndarray:
        return nss.luma(rgb[a:b, :wc]) if y8 is None else y8[a:b, :wc].astype(np.float32)

    def fetch_unit(a: int, b: int) -> np.ndarray:
        return unit[fetch_y(a, b).astype(np.intp)]

    def fetch_half(a: int, b: int) -> np.ndarray:
        return nss.half_rows(fetch_unit, hc, wc, a, b).astype(np.float64) * 255.0

    step = _strip_block_rows(wc)
    feats = []
    for b0 in range(0, nbh, step):
        b1 = min(nbh, b0 + step)
        n1 = nss.mscn_rows(fetch_y, hc, b0 * BLOCK, b1 * BLOCK, "replicate", integer_input=True)
        f1 = block_features(block_sums(n1, BLOCK), BLOCK * BLOCK)
        del n1
        half = BLOCK // 2
        n2 = nss.mscn_rows(fetch_half, hc // 2, b0 * half, b1 * half, "replicate", integer_input=False)
        f2 = block_features(block_sums(n2, half), half * half)
        feats.append(np.concatenate([f1, f2], axis=1))
    return np.concatenate(feats, axis=0)


def niqe_from_features(feats: np.ndarray, model: NiqeModel) -> float:
    """The NIQE distance of an image's block features to the pristine model (NaN-aware like pyiqa)."""
    import torch

    if feats.shape[0] == 0:
        return float("nan")
    valid = ~np.isnan(feats)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(valid, feats, 0.0).sum(0) / valid.sum(0)
    rows = feats[valid.all(axis=1)]
    if rows.shape[0] == 0:
        return float("nan")
    cov = np.cov(rows, rowvar=False, ddof=1 if rows.shape[0] > 1 else 0)
    inv = torch.linalg.pinv(torch.from_numpy((model.cov + cov) / 2)).numpy()
    d = model.mu - mu
    return float(np.sqrt(d @ inv @ d))


def niqe(rgb: np.ndarray, model: NiqeModel, y8: np.ndarray | None = None) -> float:
    return niqe_from_features(niqe_features(rgb, y8), model)
