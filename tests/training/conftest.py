"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest
import torch

from training import vgg_weights


@pytest.fixture(scope="module")
def random_vgg_home_TEST_ONLY(tmp_path_factory):
    """A TORCH_HOME holding clearly labelled random VGG19 weights (DSRIR's contrastive loss), never the real ones."""
    home = tmp_path_factory.mktemp("torch_home_random_vgg_TEST_ONLY")
    src = home / "vgg19_RANDOM_TEST_ONLY.pth"
    feats = vgg_weights.random_vgg19_features_TEST_ONLY(seed=0)
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        vgg_weights.install(src, verify_hash=False)
        yield home
