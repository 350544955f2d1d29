"""DSRIR loss: finite terms, each term moves the model; VGG19 weights provisioning (check / install)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dynet_model.dsrir import DSRIR
from training import vgg_weights
from training.dsrir.loss import DSRIRLoss, DSRIRLossWeights, build_dsrir_loss, psnr_loss


@pytest.fixture(scope="module")
def vgg_TEST_ONLY():
    return vgg_weights.random_vgg19_features_TEST_ONLY(seed=0)


def _batch():
    g = torch.Generator().manual_seed(0)
    gt = F.interpolate(torch.rand(2, 3, 8, 8, generator=g), scale_factor=4, mode="nearest")
    lq = (gt + 0.2 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    return gt, lq


def _grad_norm(model: torch.nn.Module, term: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    term.backward(retain_graph=True)
    return sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)


def test_loss_terms_finite_and_each_contributes(vgg_TEST_ONLY):
    torch.manual_seed(0)
    model = DSRIR()
    gt, lq = _batch()
    loss = DSRIRLoss(weights=DSRIRLossWeights(), vgg_features=vgg_TEST_ONLY)
    terms = loss(model(lq, return_stages=True), gt, lq)
    for name, value in terms.as_floats().items():
        assert torch.isfinite(torch.tensor(value)), name
    w = DSRIRLossWeights()
    expected = w.uncertainty * terms.uncertainty + w.psnr * terms.psnr + w.contrast * terms.contrast
    assert torch.allclose(terms.total, expected)
    assert float(terms.contrast.detach()) > 0
    for name in ("uncertainty", "psnr", "contrast"):
        assert _grad_norm(model, getattr(terms, name)) > 0, name
    # No gradient reaches the frozen VGG.
    assert all(p.grad is None for p in vgg_TEST_ONLY.parameters())


def test_weights_are_applied(vgg_TEST_ONLY):
    torch.manual_seed(1)
    model = DSRIR()
    gt, lq = _batch()
    stages = model(lq, return_stages=True)
    only_psnr = DSRIRLoss(weights=DSRIRLossWeights(uncertainty=0.0, contrast=0.0), vgg_features=None)
    t = only_psnr(stages, gt, lq)
    expected = psnr_loss(stages.restored[2], gt) + 0.5 * (psnr_loss(stages.restored[1], gt)
                                                          + psnr_loss(stages.restored[0], gt)) / 2
    assert torch.allclose(t.total, expected) and float(t.contrast) == 0
    # positive weight on the gt only vs default weights give different contrast terms
    a = DSRIRLoss(weights=DSRIRLossWeights(), vgg_features=vgg_TEST_ONLY)(stages, gt, lq).contrast
    b = DSRIRLoss(weights=DSRIRLossWeights(positive_weights=(1.0, 0.0, 0.0)), vgg_features=vgg_TEST_ONLY)(
        stages, gt, lq).contrast
    assert float(a.detach()) > float(b.detach()) > 0
    # psnr loss is -PSNR in dB
    x = torch.zeros(1, 3, 4, 4)
    assert abs(float(psnr_loss(x + 0.1, x)) - (-20.0)) < 1e-3


def test_contrast_needs_vgg():
    with pytest.raises(ValueError, match="VGG19"):
        DSRIRLoss(weights=DSRIRLossWeights(), vgg_features=None)


def test_production_loss_never_uses_random_weights_missing_file_is_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(vgg_weights.VGGWeightsMissing) as exc:
        build_dsrir_loss(DSRIRLossWeights())
    msg = str(exc.value)
    assert vgg_weights.VGG19_FILENAME in msg and "python -m training.vgg_weights install" in msg
    assert vgg_weights.main(["check"]) == 1


def test_install_and_check_roundtrip(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    feats = vgg_weights.random_vgg19_features_TEST_ONLY(seed=3)
    src = tmp_path / "vgg19_RANDOM_TEST_ONLY.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, src)
    # wrong hash: refused unless deliberately accepted
    assert vgg_weights.main(["install", str(src)]) == 1
    assert "dcbb9e9d" in capsys.readouterr().err
    assert not vgg_weights.installed_path().exists()
    assert vgg_weights.main(["install", str(src), "--no-verify-hash"]) == 0
    dest = vgg_weights.installed_path()
    assert dest == tmp_path / "th" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth" and dest.is_file()
    assert vgg_weights.main(["check", "--no-verify-hash"]) == 0
    assert vgg_weights.main(["check"]) == 1  # the random file is not torchvision's
    with pytest.raises(vgg_weights.VGGWeightsInvalid, match="dcbb9e9d"):
        vgg_weights.load_vgg19_features()  # production default: torchvision's file only
    loaded = vgg_weights.load_vgg19_features(verify_hash=False)
    for (k, v), (k2, v2) in zip(loaded.state_dict().items(), feats.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not any(p.requires_grad for p in loaded.parameters())
    # a file that is not a VGG19 state dict is refused with the offending key named
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(vgg_weights.VGGWeightsInvalid, match="features.0.weight"):
        vgg_weights.install(bad, verify_hash=False)


def test_loss_weights_dataclass_defaults_match_official():
    w = DSRIRLossWeights()
    assert dataclasses.astuple(w) == (1.0, 2.0, 1.0, 0.5, 0.2, (1.0, 0.25, 0.125), (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0))
