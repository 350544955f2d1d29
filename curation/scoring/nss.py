"""Shared natural-scene-statistics pieces of the fast NIQE / BRISQUE engine (CPU, numpy + cv2 + numba).

Every function here reproduces one step of what pyiqa 0.1.x computes, re-derived from the published
algorithms (Mittal et al.) and from measuring pyiqa, so that our scores equal pyiqa's (the test oracle):

- **Luma**: pyiqa takes Y of YIQ in float32 from RGB in [0, 1] (``rgb / 255``), multiplies by 255 and
  rounds half-to-even. The float32 result of its matrix product equals the fused-multiply-add chain
  ``fma(b, wb, fma(g, wg, r * wr))`` for all 2^24 colours (checked exhaustively); :func:`luma` evaluates
  exactly that chain (float32 products are exact in float64, each partial sum rounded to float32).
- **Gaussian window**: MATLAB ``fspecial('gaussian', 7, 7/6)`` normalised, then rounded to float32 (pyiqa
  builds it in float64 and stores float32). Those 49 weights sum to ``1 + 1.1e-8``, not 1; in flat or
  linearly varying neighbourhoods that offset decides the sign of the normalised value, and block
  statistics count signs. Every float32 weight is an integer multiple of 2**-36 (:data:`KERNEL_SHIFT`),
  so on the integer luma the local mean is computed *exactly* (integer kernel, sums < 2**47, exact in
  float64) and the signs agree with pyiqa's float64 convolution.
- **MATLAB imresize by 0.5** (antialiased bicubic, Keys a = -0.5, symmetric edge padding), computed
  in float32 like pyiqa (its resize always casts to float32): output row ``i`` is
  ``sum_k w_k x[2i - 4 + k]``, the same 8 non-zero weights for every output pixel, height first.
- **Strips**: every image is processed in row strips with the halo each filter needs, with the edge
  padding of the *whole* image applied only at its real borders, so peak memory is bounded by the strip
  size, not the image size.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numba
import numpy as np
import torch

RowFetch = Callable[[int, int], np.ndarray]  # rows [a, b) of a 2-D source image, 0 <= a < b <= height

_YIQ_Y = np.array([0.299, 0.587, 0.114], dtype=np.float32).astype(np.float64)
_U8_UNIT = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64)  # fl32(v / 255)
_Y_R = (_U8_UNIT * _YIQ_Y[0]).astype(np.float32).astype(np.float64)  # fl32(r * wr)
_Y_G = _U8_UNIT * _YIQ_Y[1]  # exact products (24 x 24 bits < 53)
_Y_B = _U8_UNIT * _YIQ_Y[2]

STRIP_BYTES = 48 << 20  # working memory per strip for NIQE and BRISQUE (about 60 bytes per strip pixel)
BYTES_PER_STRIP_PIXEL = 64


def strip_rows(width: int, rows_per_unit: int = 1) -> int:
    """Strip height in units of ``rows_per_unit`` rows that keeps a strip within :data:`STRIP_BYTES`."""
    return max(1, STRIP_BYTES // (rows_per_unit * max(width, 1) * BYTES_PER_STRIP_PIXEL))


KERNEL_SIZE = 7
KERNEL_SIGMA = 7.0 / 6.0
KERNEL_SHIFT = 36  # every float32 weight of the window is an integer / 2**36
HALO = KERNEL_SIZE // 2


def gaussian_window() -> np.ndarray:
    """The 7x7 window as pyiqa uses it: float64 fspecial, normalised, stored as float32 (returned as float64)."""
    m = (KERNEL_SIZE - 1) / 2.0
    y, x = np.ogrid[-m:m + 1, -m:m + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * KERNEL_SIGMA * KERNEL_SIGMA))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    h /= h.sum()
    return h.astype(np.float32).astype(np.float64)


WINDOW = gaussian_window()
WINDOW_INT = WINDOW * 2.0 ** KERNEL_SHIFT
assert np.array_equal(WINDOW_INT, np.round(WINDOW_INT)), "window weights are not multiples of 2**-36"
WINDOW_F32 = WINDOW.astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _luma_kernel(rgb, tr, tg, tb, out):  # pragma: no cover - compiled
    for r in range(rgb.shape[0]):
        for c in range(rgb.shape[1]):
            s = np.float32(tg[rgb[r, c, 1]] + tr[rgb[r, c, 0]])
            s = np.float32(tb[rgb[r, c, 2]] + np.float64(s))
            out[r, c] = np.rint(np.float32(s * np.float32(255.0)))


def luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 (or HxW grey uint8) → HxW float32 integer-valued Y, exactly as pyiqa rounds it."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)  # pyiqa sees the decoder's RGB (grey replicated)
    out = np.empty(rgb.shape[:2], np.float32)
    _luma_kernel(rgb, _Y_R, _Y_G, _Y_B, out)
    return out


def luma_u8(rgb: np.ndarray, strip_rows: int = 1024) -> np.ndarray:
    """The whole image's Y as uint8 (1 byte per pixel; Y is an integer 0..255), computed strip by strip.

    Computed once per image and shared by NIQE and BRISQUE (each would otherwise convert every strip twice).
    """
    out = np.empty(rgb.shape[:2], np.uint8)
    for a in range(0, rgb.shape[0], strip_rows):
        out[a:a + strip_rows] = luma(rgb[a:a + strip_rows])
    return out


# ---------------------------------------------------------------- padding and strips

def _edge_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    if mode == "replicate":
        return np.clip(idx, 0, n - 1)
    if mode == "symmetric":  # MATLAB: [a b c] -> [b a | a b c | c b]
        period = 2 * n
        m = np.mod(idx, period)
        return np.where(m < n, m, period - 1 - m)
    raise ValueError(mode)


def padded_rows(fetch: RowFetch, n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Rows ``lo..hi-1`` of an ``n``-row image; rows outside [0, n) follow ``mode`` (replicate / symmetric / zero)."""
    if lo >= 0 and hi <= n:
        return fetch(lo, hi)
    idx = np.arange(lo, hi)
    if mode == "zero":
        a, b = max(lo, 0), min(hi, n)
        inner = fetch(a, b)
        out = np.zeros((hi - lo,) + inner.shape[1:], dtype=inner.dtype)
        out[a - lo:b - lo] = inner
        return out
    mapped = _edge_index(idx, n, mode)
    a, b = int(mapped.min()), int(mapped.max()) + 1
    return fetch(a, b)[mapped - a]


def _half_weights() -> np.ndarray:
    """MATLAB antialiased bicubic taps for scale 0.5, in float32 like pyiqa: positions (4.5 - k) / 2, k = 0..9."""
    t = (np.float32(4.5) - np.arange(10, dtype=np.float32)) * np.float32(0.5)
    a = np.float32(-0.5)
    at = np.abs(t)
    near = ((a + 2) * at ** 3 - (a + 3) * at ** 2 + 1) * (at <= 1)
    far = (a * at ** 3 - 5 * a * at ** 2 + 8 * a * at - 4 * a) * ((at > 1) & (at <= 2))
    w = (near + far).astype(np.float32)
    return (w / w.sum(dtype=np.float32)).astype(np.float32)


HALF_WEIGHTS = _half_weights()
_HALF_TAPS = [(k, HALF_WEIGHTS[k]) for k in range(10) if HALF_WEIGHTS[k] != 0]


_TAP_K = np.array([k for k, _ in _HALF_TAPS], dtype=np.int64)
_TAP_W = np.array([w for _, w in _HALF_TAPS], dtype=np.float32)


@numba.njit(cache=True, nogil=True)
def _half_rows_kernel(p, tk, tw, out):  # pragma: no cover - compiled
    """out[i] = sum_t tw[t] * p[2i + tk[t]]: float32 products added in tap order (no fused multiply-add)."""
    for i in range(out.shape[0]):
        o = out[i]
        r = p[2 * i + tk[0]]
        for c in range(o.shape[0]):
            o[c] = tw[0] * r[c]
        for t in range(1, tk.shape[0]):
            r = p[2 * i + tk[t]]
            w = tw[t]
            for c in range(o.shape[0]):
                o[c] = o[c] + w * r[c]


@numba.njit(cache=True, nogil=True)
def _half_cols_kernel(q, tk, tw, out):  # pragma: no cover - compiled
    """out[:, j] = sum_t tw[t] * q[:, 2j + tk[t]], same arithmetic along the rows.

    Each row is split into its even and odd samples first, so every tap reads a unit-stride run
    (vectorisable) while each output still adds its taps in order.
    """
    half = (q.shape[1] + 1) // 2
    even = np.empty(half, np.float32)
    odd = np.empty(half, np.float32)
    for r in range(out.shape[0]):
        qr = q[r]
        for j in range(q.shape[1] // 2):
            even[j] = qr[2 * j]
            odd[j] = qr[2 * j + 1]
        if q.shape[1] % 2:
            even[half - 1] = qr[q.shape[1] - 1]
        o = out[r]
        for t in range(tk.shape[0]):
            src = even if tk[t] % 2 == 0 else odd
            off = tk[t] // 2
            w = tw[t]
            if t == 0:
                for j in range(o.shape[0]):
                    o[j] = w * src[j + off]
            else:
                for j in range(o.shape[0]):
                    o[j] = o[j] + w * src[j + off]


def _half_1d(p: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """out[i] = sum_k w_k p[2i + k] along ``axis`` (p already padded by 4 before), float32, taps in order."""
    p = np.ascontiguousarray(p, dtype=np.float32)
    if axis == 0:
        out = np.empty((n_out, p.shape[1]), np.float32)
        _half_rows_kernel(p, _TAP_K, _TAP_W, out)
    else:
        out = np.empty((p.shape[0], n_out), np.float32)
        _half_cols_kernel(p, _TAP_K, _TAP_W, out)
    return out


def half_size(n: int) -> int:
    return -(-n // 2)  # ceil, like imresize(scale=0.5)


def half_rows(fetch: RowFetch, n_in: int, width: int, o0: int, o1: int) -> np.ndarray:
    """Rows [o0, o1) of ``imresize(img, 0.5)`` (float32) from rows fetched as float32."""
    p = padded_rows(fetch, n_in, 2 * o0 - 4, 2 * o1 + 4, "symmetric").astype(np.float32, copy=False)
    v = _half_1d(p, o1 - o0, axis=0)
    w_out = half_size(width)
    cols = _edge_index(np.arange(-4, 2 * w_out + 4), width, "symmetric")
    if cols[0] >= 0 and cols[-1] < width and np.array_equal(cols, np.arange(-4, 2 * w_out + 4)):
        q = v
    else:
        q = v[:, cols]
    return _half_1d(q, w_out, axis=1)


# ---------------------------------------------------------------- local normalisation (MSCN)

def mscn_rows(fetch: RowFetch, n: int, r0: int, r1: int, mode: str, integer_input: bool) -> np.ndarray:
    """Rows [r0, r1) of ``(x - mu) / (sigma + 1)`` with the 7x7 window (float64).

    ``mode`` is the edge padding of the whole image: ``replicate`` (NIQE) or ``zero`` (BRISQUE, 'same').
    With ``integer_input`` the local mean is exact (integer kernel), else computed with the float64 window.
    """
    ext = padded_rows(fetch, n, r0 - HALO, r1 + HALO, mode).astype(np.float64)
    border = cv2.BORDER_REPLICATE if mode == "replicate" else cv2.BORDER_CONSTANT
    scale = 2.0 ** -KERNEL_SHIFT
    if integer_input:
        mu = cv2.filter2D(ext, -1, WINDOW_INT, borderType=border)[HALO:-HALO]
        mu *= scale
        e2 = cv2.filter2D(ext * ext, -1, WINDOW_INT, borderType=border)[HALO:-HALO]
        e2 *= scale
    else:
        mu = cv2.filter2D(ext, -1, WINDOW, borderType=border)[HALO:-HALO]
        e2 = cv2.filter2D(ext * ext, -1, WINDOW, borderType=border)[HALO:-HALO]
    x = ext[HALO:-HALO]
    e2 -= mu * mu
    np.abs(e2, out=e2)
    e2 += np.finfo(np.float64).eps
    np.sqrt(e2, out=e2)
    e2 += 1.0
    x = x - mu
    x /= e2
    return x


# ---------------------------------------------------------------- sign-split moment sums (numba)

@numba.njit(inline="always")
def _upd(p, a):
    neg = p < 0
    pos = p > 0
    p2 = p * p
    return (a[0] + (1.0 if neg else 0.0), a[1] + (1.0 if pos else 0.0), a[2] + (p2 if neg else 0.0),
            a[3] + (p2 if pos else 0.0), a[4] + abs(p))


@numba.njit(inline="always")
def _pixel(v, left, up, upleft, upright, a0, a1, a2, a3, a4):
    return (_upd(v, a0), _upd(v * left, a1), _upd(v * up, a2), _upd(v * upleft, a3), _upd(v * upright, a4))


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def segment_sums(row, up, c0, c1, out):  # pragma: no cover - compiled
    """Add the sums of columns [c0, c1) of one row to out (5 maps x 5 sums), neighbours wrapping inside [c0, c1).

    Maps: 0 the value, 1..4 its products with the left, upper, upper-left and upper-right neighbour.
    Sums: count < 0, count > 0, sum of squares < 0, sum of squares > 0, sum of |.|.
    """
    z = (0.0, 0.0, 0.0, 0.0, 0.0)
    a0 = a1 = a2 = a3 = a4 = z
    last = c1 - 1
    a0, a1, a2, a3, a4 = _pixel(row[c0], row[last], up[c0], up[last], up[c0 + 1 if c1 - c0 > 1 else c0],
                                a0, a1, a2, a3, a4)
    for c in range(c0 + 1, last):
        a0, a1, a2, a3, a4 = _pixel(row[c], row[c - 1], up[c], up[c - 1], up[c + 1], a0, a1, a2, a3, a4)
    if last > c0:
        a0, a1, a2, a3, a4 = _pixel(row[last], row[last - 1], up[last], up[last - 1], up[c0], a0, a1, a2, a3, a4)
    for k in range(5):
        out[0, k] += a0[k]
        out[1, k] += a1[k]
        out[2, k] += a2[k]
        out[3, k] += a3[k]
        out[4, k] += a4[k]


# ---------------------------------------------------------------- distribution fits (vectorised)

def _grid() -> np.ndarray:
    """pyiqa's shape grid: float32 ``arange(0.2, 10.001, 0.001)`` (9801 values), as float64."""
    import torch

    return torch.arange(0.2, 10 + 0.001, 0.001).double().numpy()


def _lgamma(x: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(x)


_GAMMA_GRID = _grid()
AGGD_R = np.exp(2 * _lgamma(2 / _GAMMA_GRID) - (_lgamma(1 / _GAMMA_GRID) + _lgamma(3 / _GAMMA_GRID)))  # increasing
GGD_R = np.exp(_lgamma(1 / _GAMMA_GRID) + _lgamma(3 / _GAMMA_GRID) - 2 * _lgamma(2 / _GAMMA_GRID))  # decreasing


def nearest_grid(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the entry of a monotone table nearest to x: first minimum of |table - x| (NaN → 0), as argmin."""
    inc = table[-1] > table[0]
    t = table if inc else table[::-1]
    xs = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=t[0])
    hi = np.clip(np.searchsorted(t, xs), 1, len(t) - 1)
    lo = hi - 1
    d_lo, d_hi = np.abs(t[lo] - xs), np.abs(t[hi] - xs)
    if inc:
        idx = np.where(d_lo <= d_hi, lo, hi)  # ties: the lower index, as argmin
    else:
        idx = np.where(d_hi <= d_lo, hi, lo)  # reversed: the higher reversed index is the lower original one
        idx = len(t) - 1 - idx
    return np.where(np.isnan(x), 0, idx)


def aggd_fit(cnt_l, cnt_r, ssq_l, ssq_r, sabs, ssq, count):
    """AGGD shape and left/right standard deviations from sums (moment matching on pyiqa's grid)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(ssq_l / cnt_l)
        right_std = np.sqrt(ssq_r / cnt_r)
        gammahat = left_std / right_std
        rhat = (sabs / count) ** 2 / (ssq / count)
        rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    alpha = _GAMMA_GRID[nearest_grid(AGGD_R, rhatnorm)]
    return alpha, left_std, right_std


def ggd_fit(ssq, sabs, count):
    """GGD shape and sigma (BRISQUE's first two features)."""
    sigma_sq = ssq / count
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = sigma_sq / (sabs / count) ** 2
    return _GAMMA_GRID[nearest_grid(GGD_R, rho)], np.sqrt(sigma_sq)


# ---------------------------------------------------------------- float32 MSCN, bit-equal to pyiqa's BRISQUE

@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _conv7_f32(x, x2, k, mu, e2):  # pragma: no cover - compiled
    """Valid 7x7 correlation of x and x2 (float32), each output a fused multiply-add chain over the taps
    in row-major order from 0 — the order torch's CPU float32 conv2d uses (measured), so results are bit-equal."""
    rows, width = mu.shape
    for r in range(rows):
        mr = mu[r]
        er = e2[r]
        mr[:] = 0.0
        er[:] = 0.0
        for i in range(7):
            xr = x[r + i]
            x2r = x2[r + i]
            for j in range(7):
                w = k[i, j]
                xs = xr[j:j + width]
                x2s = x2r[j:j + width]
                for c in range(width):
                    mr[c] = w * xs[c] + mr[c]
                for c in range(width):
                    er[c] = w * x2s[c] + er[c]


@numba.njit(cache=True, nogil=True)
def _variance_f32(mu, e2):  # pragma: no cover - compiled
    """e2 <- |e2 - mu^2| + eps in place, every step rounded to float32 (no contraction)."""
    eps = np.float32(np.finfo(np.float32).eps)
    for r in range(e2.shape[0]):
        for c in range(e2.shape[1]):
            m = mu[r, c]
            e2[r, c] = np.float32(np.abs(np.float32(e2[r, c] - np.float32(m * m)))) + eps


@numba.njit(cache=True, nogil=True)
def _normalise_f32(x, mu, sigma, out):  # pragma: no cover - compiled
    """out <- (x - mu) / (sigma + 1), float32 steps, stored as float64."""
    one = np.float32(1.0)
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c] = np.float32(np.float32(x[r, c] - mu[r, c]) / np.float32(sigma[r, c] + one))


def mscn_rows_f32(fetch: RowFetch, n: int, r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of BRISQUE's MSCN map exactly as pyiqa computes it (float32, zero padding), as float64."""
    ext = padded_rows(fetch, n, r0 - HALO, r1 + HALO, "zero").astype(np.float32)
    ext = np.pad(ext, ((0, 0), (HALO, HALO)))
    ext2 = ext * ext
    mu = np.empty((r1 - r0, ext.shape[1] - 2 * HALO), np.float32)
    e2 = np.empty_like(mu)
    _conv7_f32(ext, ext2, WINDOW_F32, mu, e2)
    _variance_f32(mu, e2)
    torch.from_numpy(e2).sqrt_()  # torch's float32 sqrt (not always correctly rounded on every CPU): pyiqa's
    out = np.empty(mu.shape, np.float64)
    _normalise_f32(ext[HALO:-HALO, HALO:-HALO], mu, e2, out)
    return out
