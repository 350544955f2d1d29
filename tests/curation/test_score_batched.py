"""The batched torch kernels (the --device cuda path), run here on CPU: equal to pyiqa and to the strip engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_score_engine import _close
from test_score_support import natural_image

from curation.scoring import batched
from curation.scoring.brisque import BrisqueModel, brisque
from curation.scoring.metrics import MetricSet
from curation.scoring.niqe import NiqeModel, niqe
from curation.weights import require


@pytest.mark.parametrize("size", [(193, 131), (96, 96)])
def test_batched_kernels_equal_pyiqa_and_the_strip_engine(size):
    paths = require(("niqe", "brisque"))
    nm, bm = NiqeModel.load(paths["niqe"]), BrisqueModel.load(paths["brisque"])
    imgs = [natural_image(size, seed=s) for s in range(3)]
    imgs[1][: size[1] // 3] = 255  # a flat, saturated band: sign-exact local means matter here
    batch = torch.from_numpy(np.stack(imgs))
    got = {"niqe": batched.niqe_batch(batch, nm), "brisque": batched.brisque_batch(batch, bm)}
    ref = MetricSet(("niqe", "brisque"), "cpu", paths)
    for i, rgb in enumerate(imgs):
        theirs = ref.score_native(ref.to_tensor(rgb))
        for m in ("niqe", "brisque"):
            assert _close(m, got[m][i], theirs[m]), (m, i, got[m][i], theirs[m])
        assert abs(got["niqe"][i] - niqe(rgb, nm)) <= 1e-9 * abs(got["niqe"][i])
        assert abs(got["brisque"][i] - brisque(rgb, bm)) <= 1e-6 * max(1.0, abs(got["brisque"][i]))


def test_batched_scores_do_not_depend_on_batch_mates():
    nm = NiqeModel.load(require(("niqe",))["niqe"])
    imgs = [natural_image((150, 120), seed=s) for s in range(3)]
    alone = batched.niqe_batch(torch.from_numpy(imgs[0][None]), nm)[0]
    together = batched.niqe_batch(torch.from_numpy(np.stack(imgs)), nm)[0]
    assert abs(alone - together) <= 1e-12 * abs(alone)
