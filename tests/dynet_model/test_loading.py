"""dynet_model.loading.load_any: ours and official weights through one loader; DSRIRConfig; restore_image."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dynet_model.build import build_model
from dynet_model.checkpoint import model_from_official, save_model
from dynet_model.config import DSRIRConfig, ModelConfig
from dynet_model.loading import load_any, load_model
from tests.dynet_model.official_states import random_official_state


def test_ours_from_a_file_or_a_step_folder_and_arch_is_checked(tmp_path):
    torch.manual_seed(0)
    net = build_model(ModelConfig.tiny("dynet"))
    save_model(tmp_path / "step_0000004" / "model.safetensors", net, ModelConfig.tiny("dynet"), {"step": "4"})
    loaded = load_any(tmp_path / "step_0000004")
    assert not loaded.official and loaded.arch == "dynet" and loaded.metadata == {"step": "4"}
    assert not loaded.model.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), net.state_dict().values()))
    with pytest.raises(ValueError, match="holds a dynet model, not promptir"):
        load_any(tmp_path / "step_0000004", arch="promptir")
    with pytest.raises(FileNotFoundError):
        load_any(tmp_path / "nothing.safetensors")


def test_official_files_load_with_their_architecture_detected(tmp_path):
    sd = random_official_state("dynet", seed=1)
    torch.save({"epoch": 1, "state_dict": {"net." + k: v.half() for k, v in sd.items()}}, tmp_path / "dynet.ckpt")
    loaded = load_any(tmp_path / "dynet.ckpt")  # no arch: detected
    assert loaded.official and loaded.arch == "dynet" and len(loaded.skipped) == 3
    ref = model_from_official(tmp_path / "dynet.ckpt", ModelConfig(arch="dynet"))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.model(x, reuse=(2, 3, 3, 4)), ref(x, reuse=(2, 3, 3, 4)))

    torch.manual_seed(1)
    dsrir = build_model(DSRIRConfig())
    torch.save(dsrir.state_dict(), tmp_path / "dsrir.pth")  # bare fp32 state dict
    assert load_any(tmp_path / "dsrir.pth").arch == "dsrir"
    with pytest.raises(ValueError):
        load_any(tmp_path / "dsrir.pth", arch="dynet")
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        load_any(tmp_path / "other.pth")


def test_dsrir_files_written_with_the_old_model_config_still_load(tmp_path):
    torch.manual_seed(2)
    net = build_model(DSRIRConfig())
    old_cfg = {f.name: f.default for f in dataclasses.fields(ModelConfig)} | {"arch": "dsrir"}
    old_cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in old_cfg.items()}
    assert "reuse" in old_cfg and "dim" in old_cfg  # the DyNet-only fields old files carried
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "old.safetensors"),
              metadata={"format": "dynet-curation/model-v1", "model_config": json.dumps(old_cfg), "user_metadata": "{}"})
    loaded = load_any(tmp_path / "old.safetensors")
    assert isinstance(loaded.config, DSRIRConfig) and loaded.config == DSRIRConfig()
    save_model(tmp_path / "new.safetensors", loaded.model, loaded.config)
    again = load_any(tmp_path / "new.safetensors")
    assert again.config == DSRIRConfig() and "reuse" not in again.config.to_dict()
    with pytest.raises(ValueError):
        ModelConfig(arch="dsrir")  # DSRIR is no longer a ModelConfig


def test_package_api_names_and_a_cheap_import():
    code = ("import sys, dynet_model; assert 'torch' not in sys.modules, 'torch imported';"
            "from dynet_model import DyNet, PromptIR, DSRIR, load_model, restore_image;"
            "assert 'torchvision' not in sys.modules; print(DyNet.__name__, PromptIR.__name__, DSRIR.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DyNet", "PromptIR", "DSRIR"]
    import dynet_model

    with pytest.raises(AttributeError):
        dynet_model.NoSuchThing  # noqa: B018


def test_load_model_variant_and_restore_image_dtypes(tmp_path):
    from dynet_model import restore_image
    from dynet_model.tiling import restore_tiled

    torch.manual_seed(3)
    save_model(tmp_path / "m.safetensors", build_model(ModelConfig.tiny("dynet")), ModelConfig.tiny("dynet"))
    model = load_model(tmp_path / "m.safetensors", variant="l")
    assert model.reuse == (4, 6, 6, 8) and not model.training
    with pytest.raises(ValueError):
        load_model(tmp_path / "m.safetensors", variant="bogus")
    rgb = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    want = restore_tiled(model, x, tile=16, overlap=4)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    out8 = restore_image(model, rgb, tile=16, overlap=4)
    assert out8.dtype == np.uint8 and out8.shape == rgb.shape
    assert np.array_equal(out8, np.round(want * 255).astype(np.uint8))
    out16 = restore_image(model, rgb.astype(np.uint16) * 257, tile=16, overlap=4)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(float) / 65535 - want).max() < 1e-4
    assert len(np.unique(out16 % 257)) > 1  # 16-bit precision kept, not 8-bit values scaled up
    outf = restore_image(model, rgb.astype(np.float32) / 255, tile=16, overlap=4)
    assert outf.dtype == np.float32 and np.abs(outf - want).max() < 1e-6
    with pytest.raises(ValueError):
        restore_image(model, rgb[..., 0])
