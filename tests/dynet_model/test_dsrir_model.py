"""DSRIR model: parameter count, official key map, stage outputs, gradients, FLOPs, any input size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dynet_model.dsrir import (
    DSRIR,
    OFFICIAL_NUM_PARAMS,
    UNUSED_IN_LOSS,
    DSRIRStages,
    count_parameters,
)
from dynet_model.dsrir_keymap import load_official_dsrir, map_official_state_dict


@pytest.fixture(scope="module")
def model() -> DSRIR:
    torch.manual_seed(0)
    return DSRIR()


def test_parameter_count(model):
    assert count_parameters(model) == OFFICIAL_NUM_PARAMS == 3_516_837


DATA = Path(__file__).resolve().parents[2] / "dynet_model" / "data"


def test_official_key_map_identity(model):
    # dynet_model/data/dsrir_state_dict_shapes.json: the official checkpoint's key -> shape map
    ref = json.loads((DATA / "dsrir_state_dict_shapes.json").read_text())
    assert ref["num_params"] == OFFICIAL_NUM_PARAMS
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == ref["state_dict"]


def test_official_checkpoint_loads_via_keymap(model, tmp_path):
    # An official-style training checkpoint: DataParallel prefixes inside {"epoch", "state_dict", "optimizer"}.
    src = DSRIR()
    wrapped = {"epoch": 7, "state_dict": {"module." + k: v for k, v in src.state_dict().items()},
               "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]}}
    path = tmp_path / "model_best.pth"
    torch.save(wrapped, path)
    sd, skipped = load_official_dsrir(path, model.state_dict())
    assert skipped == []
    fresh = DSRIR()
    fresh.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), src(x))
    bad = dict(src.state_dict())
    bad["ebd.weight"] = torch.zeros(1, 3, 3, 3)
    with pytest.raises(ValueError, match="ebd.weight"):
        map_official_state_dict(bad, model.state_dict())


def test_stages_shapes_and_every_parameter_gets_gradient(model):
    model.zero_grad(set_to_none=True)
    # Zero-mean, piecewise-constant input: the pooled patch-attention inputs then vary in sign, so
    # no 1x1 bottleneck ReLU is dead for the whole batch (which would zero a gradient by chance).
    x = torch.nn.functional.interpolate(torch.randn(2, 3, 8, 8), scale_factor=4, mode="nearest")
    out = model(x, return_stages=True)
    assert isinstance(out, DSRIRStages)
    assert len(out.restored) == len(out.log_var) == len(out.attention) == 3
    for t in out.restored + out.log_var:
        assert t.shape == x.shape and torch.isfinite(t).all()
    assert torch.equal(out.final, out.restored[-1])
    loss = sum(r.mean() for r in out.restored) + sum(v.mean() for v in out.log_var)
    loss.backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # The official last USAU never feeds conv2 / att_map into an output: exactly those get no gradient.
    assert no_grad == set(UNUSED_IN_LOSS)


@pytest.mark.parametrize("hw", [(37, 45), (8, 8), (5, 70)])
def test_any_input_size(model, hw):
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y = model(x)
        st = model(x, return_stages=True)
    assert y.shape == x.shape
    assert torch.allclose(y, st.final)


def test_conv_flops_224_match_official():
    with torch.device("meta"):
        m = DSRIR()
        x = torch.empty(1, 3, 224, 224)
    with FlopCounterMode(display=False) as fc:
        m(x)
    counts = fc.get_flop_counts()["Global"]
    conv = sum(v for k, v in counts.items() if "convolution" in str(k))
    assert abs(conv / 211.85e9 - 1) < 1e-3, conv


def test_build_model_dispatch_and_safetensors_roundtrip(tmp_path):
    from dynet_model.build import build_model
    from dynet_model.checkpoint import load_model, load_official_checkpoint, save_model
    from dynet_model.config import DSRIRConfig

    cfg = DSRIRConfig()
    torch.manual_seed(2)
    net = build_model(cfg)
    assert isinstance(net, DSRIR) and count_parameters(net) == OFFICIAL_NUM_PARAMS
    path = save_model(tmp_path / "dsrir.safetensors", net, cfg, {"mode": "rain"})
    back, cfg2, meta = load_model(path)
    assert cfg2.arch == "dsrir" and meta == {"mode": "rain"} and isinstance(back, DSRIR)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(back(x), net.eval()(x))
    official = tmp_path / "model_latest.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v.half() for k, v in net.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": []}}, official)
    sd, skipped = load_official_checkpoint(official, "dsrir")
    assert skipped == [] and sd.keys() == net.state_dict().keys()
    assert all(v.dtype == torch.float32 for v in sd.values())


def test_profile_command_knows_dsrir(capsys):
    from dynet_model import profile

    rows = profile.main(["--models", "dsrir", "--flops-only"])
    assert rows[0]["params"] == rows[0]["params_official"] == OFFICIAL_NUM_PARAMS
    assert abs(rows[0]["conv_gflops"] / 211.85 - 1) < 1e-3
    assert "dsrir" in capsys.readouterr().out


def test_restore_command_with_dsrir_checkpoints(tmp_path):
    import numpy as np
    from PIL import Image

    from dynet_model import restore
    from dynet_model.checkpoint import save_model
    from dynet_model.config import DSRIRConfig

    torch.manual_seed(3)
    net = DSRIR()
    ours = save_model(tmp_path / "dsrir.safetensors", net, DSRIRConfig())
    official = tmp_path / "model_best.pth"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, official)
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8)).save(src)
    outs = []
    for args in (["--checkpoint", str(ours)], ["--checkpoint", str(official), "--arch", "dsrir"]):
        out = tmp_path / f"out{len(outs)}"
        restore.main([str(src), "-o", str(out), *args])
        outs.append(np.asarray(Image.open(out / "a.png")))
    assert outs[0].shape == (21, 30, 3) and np.array_equal(outs[0], outs[1])
