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


def test_shard_scorer_in_batched_mode_equals_image_by_image(tmp_path):
    """The GPU scoring path (size buckets, batched kernels), run on CPU, gives every image the same result."""
    from test_score_support import encode, install_test_nima

    from curation.score import build_settings
    from curation.scoring.engine import FastMetricSet
    from curation.scoring.shard_task import _ShardScorer

    install_test_nima(tmp_path)
    metrics = ("niqe", "brisque", "nima")
    settings = build_settings(metrics, require(metrics), nima_batch=2)
    sizes = [(150, 120), (200, 100), (150, 120), (60, 50), (150, 120), (200, 100)]
    blobs = {f"k{i}": encode(natural_image(s, seed=i)) for i, s in enumerate(sizes)}
    runs = []
    for batched_mode in (False, True):
        scorer = _ShardScorer(settings)
        scorer.metric_set = FastMetricSet(metrics, "cpu", dict(settings.weight_paths), batched=batched_mode)
        for key, data in blobs.items():
            scorer.add(key, data)
        scorer.finalize()
        runs.append(scorer.results)
    one, batch = runs
    for key in blobs:
        assert one[key]["status"] == batch[key]["status"], (key, one[key], batch[key])
        for m in metrics:
            if one[key].get(m) is not None:
                assert abs(one[key][m] - batch[key][m]) <= 1e-6 * max(1.0, abs(one[key][m])), (key, m)
    assert one["k3"]["status"] == "metric_error" and "niqe" in one["k3"]["error"]  # 60x50: no NIQE block
