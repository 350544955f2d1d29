"""FLOP counts (exact, on the meta device) and the profile command."""

from __future__ import annotations

import json

import pytest

from dynet_model.config import DYNET_L, DYNET_S, ModelConfig
from dynet_model.flops import count_flops
from dynet_model.measure import parse_model_name
from dynet_model.profile import main as profile_main


@pytest.mark.parametrize("arch,reuse,conv_g,total_g", [
    ("dynet", DYNET_S, 166.25, 181.61),
    ("dynet", DYNET_L, 242.15, 264.46),
    ("promptir", None, 242.15, 264.46),
])
def test_flops_match_official_at_224(arch, reuse, conv_g, total_g):
    f = count_flops(ModelConfig(arch=arch), 224, reuse=reuse)
    assert abs(f.conv_g - conv_g) / conv_g < 1e-3
    assert abs(f.total_g - total_g) / total_g < 1e-3
    assert f.total > f.conv and "aten.bmm" in f.by_op  # attention matmuls are in the total only


def test_flops_scale_with_reuse_vector():
    cfg = ModelConfig(arch="dynet")
    small, large = count_flops(cfg, 64, reuse=(1, 1, 1, 1)), count_flops(cfg, 64, reuse=(1, 1, 1, 2))
    assert large.conv > small.conv


def test_parse_model_name():
    assert parse_model_name("dynet-s").reuse == DYNET_S
    assert parse_model_name("DyNet-L").reuse == DYNET_L
    assert parse_model_name("dynet-1,1,2,2").reuse == (1, 1, 2, 2)
    assert parse_model_name("promptir").arch == "promptir"
    with pytest.raises(ValueError):
        parse_model_name("unet")


def test_profile_command_writes_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    rows = profile_main(["--models", "dynet-s", "promptir", "--size", "224", "--flops-only", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "16,613,135" in printed and "16,726,031" in printed and "35,592,263" in printed
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["results"]] == ["dynet-s", "promptir"] == [r["model"] for r in rows]
    assert data["results"][0]["conv_gflops"] == pytest.approx(166.25, rel=1e-3)


def test_profile_command_times_a_small_input(tmp_path):
    rows = profile_main(["--models", "dynet-s", "dynet-l", "--size", "16", "--repeats", "1", "--warmup", "0"])
    assert all(r["median_ms"] > 0 and r["images_per_s"] > 0 for r in rows)
    assert rows[0]["conv_gflops"] < rows[1]["conv_gflops"]
