"""Core network tests: parameter counts, gradients, reuse vectors, padding, safetensors round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dynet_model.build import (
    EXPECTED_PARAMS,
    OFFICIAL_PARAMS,
    build_model,
    count_params,
)
from dynet_model.checkpoint import load_model, read_metadata, save_model
from dynet_model.config import DYNET_L, DYNET_S, ModelConfig
from dynet_model.keymap import UNUSED_PREFIXES
from dynet_model.variants import parse_reuse

DATA = Path(__file__).resolve().parents[2] / "dynet_model" / "data"


@pytest.mark.parametrize("arch", ["dynet", "promptir"])
def test_full_size_parameter_counts(arch):
    with torch.device("meta"):
        model = build_model(ModelConfig(arch=arch))
    assert count_params(model) == EXPECTED_PARAMS[arch]
    # official total = ours + the never-called modules, computed from the official shape file
    shapes = json.loads((DATA / f"{arch}_state_dict_shapes.json").read_text())
    unused = sum(torch.Size(s).numel() for k, s in shapes["state_dict"].items()
                 if k.startswith(UNUSED_PREFIXES[arch]))
    assert shapes["num_params"] == OFFICIAL_PARAMS[arch] == EXPECTED_PARAMS[arch] + unused


def test_expected_figures():
    assert EXPECTED_PARAMS == {"dynet": 16_613_135, "promptir": 35_376_967}


@pytest.mark.parametrize("arch,reuse", [("dynet", DYNET_S), ("dynet", DYNET_L), ("promptir", None)])
def test_forward_backward_every_parameter_gets_gradient(arch, reuse):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(arch)
    model = build_model(cfg)
    assert count_params(model) < 1_000_000
    x = torch.rand(2, 3, 32, 32)
    y = model(x, reuse=reuse)
    assert y.shape == x.shape and torch.isfinite(y).all()
    (y - x.flip(-1)).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_small_and_large_differ_from_same_weights():
    torch.manual_seed(1)
    model = build_model(ModelConfig.tiny("dynet")).eval()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        ys, yl = model(x, reuse=parse_reuse("s")), model(x, reuse=parse_reuse("l"))
        ydefault = model(x)
        model.reuse = DYNET_S  # settable attribute is the default for forward
        yattr = model(x)
    assert (ys - yl).abs().max() > 1e-4
    assert torch.equal(ys, yattr)
    assert not torch.equal(ydefault, ys)  # tiny default reuse is (1,2,2,2)


def test_promptir_rejects_other_reuse():
    model = build_model(ModelConfig.tiny("promptir"))
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 16, 16), reuse=(9, 9, 9, 9))


@pytest.mark.parametrize("arch", ["dynet", "promptir"])
@pytest.mark.parametrize("hw", [(5, 7), (17, 30), (33, 9)])
def test_odd_input_sizes(arch, hw):
    torch.manual_seed(2)
    model = build_model(ModelConfig.tiny(arch)).eval()
    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_padding_is_cropped_back_consistently():
    """A multiple-of-8 input is processed unpadded; cropping keeps the top-left region aligned."""
    torch.manual_seed(3)
    model = build_model(ModelConfig.tiny("dynet")).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
    zero_head = build_model(ModelConfig.tiny("dynet")).eval()
    torch.nn.init.zeros_(zero_head.head.weight)
    with torch.no_grad():
        assert torch.equal(zero_head(x[..., :13, :11]), x[..., :13, :11])  # residual path is exact
    assert not torch.allclose(y, x)


def test_biasfree_layernorm_and_bias_variant():
    cfg = ModelConfig.tiny("dynet")
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "layernorm_type": "BiasFree", "bias": True})
    model = build_model(cfg)
    y = model(torch.rand(1, 3, 16, 16))
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert not any(n.endswith("norm1.bias") for n, _ in model.named_parameters())


def test_config_round_trip_and_validation():
    cfg = ModelConfig.tiny("promptir")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        ModelConfig(arch="unet")
    with pytest.raises(ValueError):
        ModelConfig(reuse=(0, 1, 1, 1))
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"arch": "dynet", "bogus": 1})


def test_parse_reuse():
    assert parse_reuse("s") == parse_reuse("dynet-s") == (2, 3, 3, 4)
    assert parse_reuse("L") == parse_reuse("dynet-l") == (4, 6, 6, 8)
    assert parse_reuse("1, 2,3,9") == (1, 2, 3, 9)
    for bad in ("x", "1,2,3", "0,1,1,1", "1,2,a,4"):
        with pytest.raises(ValueError):
            parse_reuse(bad)


@pytest.mark.parametrize("arch", ["dynet", "promptir"])
def test_safetensors_round_trip_identical_outputs(tmp_path, arch):
    torch.manual_seed(4)
    cfg = ModelConfig.tiny(arch)
    model = build_model(cfg).eval()
    path = save_model(tmp_path / "m.safetensors", model, cfg, metadata={"step": 7, "note": "x"})
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file
    loaded, cfg2, meta = load_model(path)
    assert cfg2 == cfg and meta == {"step": 7, "note": "x"}
    assert read_metadata(path)[0] == cfg
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # the loaded network is trainable (e.g. resuming / fine-tuning)
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in loaded.parameters())
    loaded.train()(x).mean().backward()
    assert all(p.grad is not None for p in loaded.parameters())
