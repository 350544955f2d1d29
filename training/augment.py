"""Per-sample randomness every trainer shares: the seeded generator, the depth draw, flips/rotations, noise.

One implementation of each, so pre-training, fine-tuning, DSRIR training, evaluation and the demo
cannot drift apart:

- :func:`sample_rng` — a generator that is a pure function of an integer key (what makes every
  batch a function of (seed, step, ...) and ``--resume`` bit-exact);
- :func:`draw_depth` — the DyNet depth (reuse vector) of a training step, drawn uniformly from the
  variants with ``sample_rng(seed, 0xD7, step)`` (pre-training's draw; fine-tuning used a separate
  ``random.Random`` draw until it moved here, so its S/L sequence for a given seed changed once);
- :func:`orient` — one of the 8 flips/rotations (the dihedral group of the square) as
  ``flipud(rot90(x, rot))``; the three numberings in use map onto it: :func:`random_orientation`
  (pre-training), :data:`PROMPTIR_MODES` (PromptIR ``data_augmentation`` 0..7) and
  :data:`DSRIR_MODES` (DSRIR ``randint(0, 8)``: 0 and 8 identity);
- :func:`add_gaussian_noise` — ``uint8(clip(img + N(0, 1) * sigma, 0, 255))``, truncating like the
  official test code (or rounding, as the demo's held-out inputs); works with a legacy
  ``RandomState`` (the official test noise stream) or a ``Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEPTH_STREAM = 0xD7  # the key component that separates the depth draw from every other stream


def sample_rng(*key: int) -> np.random.Generator:
    """A generator that is a pure function of the integer key, e.g. (seed, rank, worker, start, index)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


def draw_depth_index(count: int, seed: int, step: int) -> int:
    """Index of the depth variant trained at ``step`` (uniform over ``count``; same on every rank)."""
    return int(sample_rng(seed, DEPTH_STREAM, step).integers(count))


def draw_depth(variants: Sequence[tuple[int, ...]], seed: int, step: int) -> tuple[int, ...]:
    """The reuse vector trained at ``step``: one of ``variants``, a pure function of (seed, step)."""
    return tuple(variants[draw_depth_index(len(variants), seed, step)])


# ----------------------------------------------------------------------------- flips / rotations

def orient(img: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    """``flipud(rot90(img, rot))`` on H x W (x C): every flip/rotation of the square is one (rot, flip)."""
    out = np.rot90(img, k=rot % 4, axes=(0, 1))
    return out[::-1] if flip else out


#: PromptIR ``data_augmentation`` mode m = flipud if m is odd, after rot90 by m // 2 (1..7 non-identity).
PROMPTIR_MODES: dict[int, tuple[int, bool]] = {m: (m // 2, m % 2 == 1) for m in range(8)}

#: DSRIR's official numbering: 1 flipud, 2 fliplr, 3-5 rot90 by 1-3, 6 rot90(flipud), 7 rot90(fliplr).
DSRIR_MODES: dict[int, tuple[int, bool]] = {0: (0, False), 1: (0, True), 2: (2, True), 3: (1, False),
                                            4: (2, False), 5: (3, False), 6: (3, True), 7: (1, True),
                                            8: (0, False)}


def orient_mode(img: np.ndarray, mode: int, table: dict[int, tuple[int, bool]]) -> np.ndarray:
    """Apply ``table[mode]`` (raises ``ValueError`` for a mode the numbering does not have)."""
    if mode not in table:
        raise ValueError(f"augmentation mode must be one of {sorted(table)}, got {mode}")
    return orient(img, *table[mode])


def random_orientation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pre-training's draw: t uniform in 0..7 -> rot90 by t % 4, then fliplr when t >= 4."""
    t = int(rng.integers(8))
    # fliplr(rot90(x, r)) == flipud(rot90(x, r + 2))
    return orient(img, t % 4 + 2, True) if t >= 4 else orient(img, t, False)


# ----------------------------------------------------------------------------- noise

def gaussian_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator | np.random.RandomState,
                   dtype: type = np.float64) -> np.ndarray:
    """``N(0, 1) * sigma`` of ``shape`` (``dtype`` float32 draws float32 from a Generator)."""
    if dtype is np.float64:
        return rng.standard_normal(shape) * sigma
    return rng.standard_normal(shape, dtype=dtype) * sigma


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator | np.random.RandomState, *,
                       rounding: str = "truncate") -> np.ndarray:
    """``uint8(clip(img + N(0, 1) * sigma, 0, 255))``; ``rounding="round"`` rounds before clipping.

    With ``RandomState(0)`` this draws exactly what ``np.random.seed(0); np.random.randn`` draws in
    the official test code.
    """
    noisy = img + gaussian_noise(img.shape, sigma, rng)
    if rounding == "round":
        noisy = np.round(noisy)
    elif rounding != "truncate":
        raise ValueError(f"rounding must be 'truncate' or 'round', got {rounding!r}")
    return np.clip(noisy, 0, 255).astype(np.uint8)
