"""DSRIR through training.evaluate: our safetensors checkpoint and an official-format .pth, both protocols."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dynet_model.checkpoint import save_model
from dynet_model.config import DSRIRConfig
from dynet_model.dsrir import DSRIR
from tests.restoration_fixtures import make_test_sets
from training import evaluate as ev

DATA = Path(__file__).resolve().parents[2] / "dynet_model" / "data"




def test_official_dsrir_checkpoint_evaluates_like_ours(tmp_path):
    shapes = json.loads((DATA / "dsrir_state_dict_shapes.json").read_text())["state_dict"]
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(*v, generator=g) * 0.02 for k, v in shapes.items()}
    official = tmp_path / "model_best.pth"  # what the official train.py writes (DataParallel prefixes)
    torch.save({"epoch": 5, "state_dict": {"module." + k: v for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]}}, official)
    net = DSRIR()
    net.load_state_dict(state, strict=True)
    ours = save_model(tmp_path / "dsrir.safetensors", net, DSRIRConfig())
    sets = make_test_sets(tmp_path / "d", n=1, size=(32, 40))
    rain = ["--rain100l", str(sets["rain100l"])]
    a = ev.main([*rain, "--official-checkpoint", str(official), "--arch", "dsrir", "--protocol", "dsrir"])
    b = ev.main([*rain, "--checkpoint", str(ours), "--protocol", "dsrir"])
    assert a["arch"] == b["arch"] == "dsrir" and a["reuse"] is None
    assert math.isfinite(a["columns"]["Rain100L"]["psnr"])
    assert a["columns"]["Rain100L"]["psnr"] == b["columns"]["Rain100L"]["psnr"]
    c = ev.main([*rain, "--checkpoint", str(ours)])  # the DyNet/PromptIR table's protocol
    assert math.isfinite(c["columns"]["Rain100L"]["psnr"])
    with pytest.raises(ValueError, match="DyNet"):
        ev.main([*rain, "--checkpoint", str(ours), "--variant", "s"])
