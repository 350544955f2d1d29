"""Scoring conventions ("protocols") under which restoration results are reported.

Two papers report the same three-task all-in-one benchmark with different scoring code:

* ``dynet`` (default) — DyNet / PromptIR ``test.py``: every image centre-cropped to a multiple of
  16, PSNR and SSIM from scikit-image on the full RGB image in [0, 1] (``data_range=1``; SSIM over
  the colour channels, i.e. ``multichannel=True`` / ``channel_axis=-1``).
* ``dsrir`` — xfwang23/DSRIR ``test.py``: centre-crop to a multiple of 8; Rain100L scored on the
  BT.601 luma (MATLAB ``rgb2ycbcr`` Y: ``16 + 65.481 R + 128.553 G + 24.966 B`` on [0, 1] RGB, back to
  [0, 1]); the other tasks on RGB as above.  DSRIR calls ``structural_similarity(..., channel_axis=-1)``
  on the 2-D Y image, which makes scikit-image treat the *columns* as channels: its Rain100L SSIM is
  the mean of 1-D SSIMs over image columns.  We reproduce that exactly (it is what its table reports).

The protocol name is printed with every table and stored in the JSON so numbers from different
papers are never compared by accident.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    name: str
    crop_base: int  # centre-crop every test image to a multiple of this
    derain_y_channel: bool  # score Rain100L on BT.601 Y (DSRIR) instead of RGB
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "dynet": Protocol(
        name="dynet", crop_base=16, derain_y_channel=False,
        description="DyNet/PromptIR test.py: centre-crop to x16, scikit-image PSNR/SSIM on RGB [0,1] "
                    "(data_range=1, SSIM over colour channels), per image, averaged"),
    "dsrir": Protocol(
        name="dsrir", crop_base=8, derain_y_channel=True,
        description="DSRIR test.py: centre-crop to x8, RGB PSNR/SSIM except Rain100L on BT.601 Y "
                    "(SSIM as DSRIR computes it: channel_axis=-1 on the 2-D Y image = mean column-wise "
                    "1-D SSIM); NOT comparable with the dynet protocol"),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}") from None


# ----------------------------------------------------------------------------- benchmarks
@dataclass(frozen=True)
class Benchmark:
    """Which columns a table reports and averages (scored under a :class:`Protocol`).

    * ``3task`` — DyNet/PromptIR Table 1: SOTS, Rain100L, BSD68 at σ 15/25/50, average of the five.
    * ``5task`` — the five-degradation setting the field now reports (IDR, InstructIR, AdaIR,
      MoCE-IR): SOTS outdoor, Rain100L, BSD68 σ25, GoPro (deblur), LOL-v1 (low-light), average of the
      five; the models are trained on all five tasks (``training.finetune --tasks
      denoise,derain,dehaze,deblur,lowlight``), scored with the same RGB convention (AdaIR's test.py
      uses the PromptIR scoring).
    """
    name: str
    columns: tuple[str, ...]
    sigmas: tuple[int, ...]
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    "3task": Benchmark("3task", ("SOTS", "Rain100L", "BSD68 σ15", "BSD68 σ25", "BSD68 σ50"), (15, 25, 50),
                       "3-task all-in-one (DyNet/PromptIR Table 1): dehaze, derain, denoise σ15/25/50"),
    "5task": Benchmark("5task", ("SOTS", "Rain100L", "BSD68 σ25", "GoPro", "LOL"), (25,),
                       "5-task all-in-one: dehaze (SOTS), derain (Rain100L), denoise σ25 (BSD68), "
                       "deblur (GoPro), low-light (LOL-v1)"),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}") from None
