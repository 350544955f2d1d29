"""Memory bounded by construction: a >= 40 MP photo decodes and scores within 16 bytes per pixel + a constant.

The fast engine works in row strips (NIQE / BRISQUE / NIMA preprocessing), so its working set does not grow
with the image; the decoded image itself (and the decoder's transient copies) is what scales. Measured in a
fresh child process (``benchmarks/score_memory.py``): peak RSS above the warmed-up baseline.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from score_memory import measure, write_large_jpeg

BYTES_PER_PIXEL = 16
CONSTANT = 256 << 20


def test_40mp_photo_scores_within_the_memory_bound(tmp_path):
    jpeg = tmp_path / "large.jpg"
    write_large_jpeg(jpeg, 40.0)
    res = measure(jpeg, "niqe,brisque")
    assert res["pixels"] >= 40_000_000
    assert all(math.isfinite(v) for v in res["scores"].values()), res["scores"]
    bound = BYTES_PER_PIXEL * res["pixels"] + CONSTANT
    assert res["peak_above_baseline"] <= bound, (res["peak_above_baseline"] / 2**20, bound / 2**20)
    # the scoring itself adds nothing that scales with the image beyond what decoding already needed
    assert res["peak"] - res["peak_after_decode"] <= CONSTANT, res
