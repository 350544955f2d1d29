"""training.evaluate end to end: identity floor, tiny DyNet/PromptIR checkpoints, sweeps, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.restoration_fixtures import make_test_sets
from training import evaluate as ev
from training import restoration_data as rd
from training.evaluation.metrics import (
    center_crop_multiple,
    psnr,
    score_pair,
    to_float01,
)


def _args(sets, *extra):
    return ["--bsd68", str(sets["bsd68"]), "--rain100l", str(sets["rain100l"]),
            "--sots", str(sets["sots"]), *extra]


def test_identity_end_to_end_matches_direct_computation(tmp_path, capsys):
    sets = make_test_sets(tmp_path / "data", n=3, size=(40, 56))
    out = tmp_path / "res.json"
    result = ev.main(_args(sets, "--model", "identity", "--json", str(out)))
    printed = capsys.readouterr().out
    assert "| identity |" in printed and "Protocol: **dynet**" in printed
    saved = json.loads(out.read_text())
    assert saved["protocol"] == "dynet" and out.with_suffix(".md").exists()
    cols = result["columns"]
    assert list(cols) == ["SOTS", "Rain100L", "BSD68 σ15", "BSD68 σ25", "BSD68 σ50"]
    # Rain100L by hand: same pairs, centre-crop x16, scikit-image on RGB
    pairs = rd.list_derain_pairs(sets["rain100l"])
    ref = [score_pair(center_crop_multiple(rd.read_rgb(p.gt), 16), center_crop_multiple(rd.read_rgb(p.lq), 16))
           for p in pairs]
    assert cols["Rain100L"]["psnr"] == pytest.approx(np.mean([r[0] for r in ref]), abs=1e-9)
    assert cols["Rain100L"]["ssim"] == pytest.approx(np.mean([r[1] for r in ref]), abs=1e-9)
    # BSD68 sigma 50 by hand: fresh np.random.seed(0) for this (set, sigma), sorted files
    np.random.seed(0)
    vals = []
    for path in sorted(sets["bsd68"].iterdir()):
        clean = center_crop_multiple(rd.read_rgb(path), 16)
        noisy = np.clip(clean + np.random.randn(*clean.shape) * 50, 0, 255).astype(np.uint8)
        vals.append(psnr(to_float01(clean), to_float01(noisy)))
    assert cols["BSD68 σ50"]["psnr"] == pytest.approx(np.mean(vals), abs=1e-9)
    assert cols["BSD68 σ15"]["psnr"] > cols["BSD68 σ25"]["psnr"] > cols["BSD68 σ50"]["psnr"]
    five = [cols[c]["psnr"] for c in cols]
    assert result["table1_average"]["psnr"] == pytest.approx(np.mean(five)) and result["table1_average"]["complete"]


def test_noise_seeding_stream_differs_from_per_sigma(tmp_path):
    sets = make_test_sets(tmp_path, n=2)
    base = ["--bsd68", str(sets["bsd68"]), "--model", "identity", "--sigmas", "25", "25"]
    per = ev.main(base)
    stream = ev.main(base + ["--noise-seeding", "stream"])
    # per-sigma reseeds: two sigma-25 passes see the same noise; stream continues the RNG
    assert per["columns"]["BSD68 σ25"]["n"] == 2
    s1 = ev.evaluate(ev.load_restorer(model="identity", checkpoint=None, official_checkpoint=None, arch="dynet",
                                      variant=None, device="cpu"),
                     ev.collect_test_sets(bsd68=str(sets["bsd68"]), urban100=None, rain100l=None, sots=None),
                     protocol=ev.get_protocol("dynet"), sigmas=[25, 25], noise_seeding="stream")
    assert s1["columns"]["BSD68 σ25"]["psnr"] == stream["columns"]["BSD68 σ25"]["psnr"]
    assert per["noise_seeding"] == "per-sigma" and stream["noise_seeding"] == "stream"


def test_urban100_reported_beside_table1(tmp_path, capsys):
    sets = make_test_sets(tmp_path, n=2)
    res = ev.main(["--model", "identity", "--bsd68", str(sets["bsd68"]), "--urban100", str(sets["bsd68"]),
                   "--sigmas", "50"])
    assert res["table1_average"]["columns"] == ["BSD68 σ50"] and not res["table1_average"]["complete"]
    assert res["columns"]["Urban100 σ50"]["psnr"] == res["columns"]["BSD68 σ50"]["psnr"]  # same files, same seed
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "| Model | BSD68 σ50 | Average (1 of 5) | Urban100 σ50 |"


def test_dsrir_protocol_changes_only_rain(tmp_path, capsys):
    sets = make_test_sets(tmp_path, n=2, size=(48, 64))  # multiples of 16: crop x8 == crop x16
    a = ev.main(_args(sets, "--model", "identity", "--sigmas", "15"))
    b = ev.main(_args(sets, "--model", "identity", "--sigmas", "15", "--protocol", "dsrir"))
    assert "Protocol: **dsrir**" in capsys.readouterr().out
    assert a["columns"]["SOTS"]["psnr"] == b["columns"]["SOTS"]["psnr"]
    assert a["columns"]["BSD68 σ15"]["psnr"] == b["columns"]["BSD68 σ15"]["psnr"]
    assert a["columns"]["Rain100L"]["psnr"] != b["columns"]["Rain100L"]["psnr"]


def test_layout_error_before_model_work(tmp_path):
    sets = make_test_sets(tmp_path, n=1)
    (sets["sots"] / "target" / "0001.png").unlink()
    with pytest.raises(rd.DatasetLayoutError, match="SOTS.*no clean counterpart|no images"):
        ev.main(_args(sets, "--checkpoint", str(tmp_path / "does-not-exist.safetensors")))
    with pytest.raises(rd.DatasetLayoutError, match="no test set given"):
        ev.main(["--model", "identity"])


def _tiny_checkpoint(path, arch):
    from dynet_model.build import build_model
    from dynet_model.checkpoint import save_model
    from dynet_model.config import ModelConfig
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(arch)
    save_model(path, build_model(cfg), cfg)
    return path


def test_tiny_dynet_variants_sweep_and_saved_images(tmp_path):
    sets = make_test_sets(tmp_path / "d", n=2, size=(32, 32))
    ckpt = _tiny_checkpoint(tmp_path / "tiny.safetensors", "dynet")
    r1 = ev.main(_args(sets, "--checkpoint", str(ckpt), "--variant", "1,1,1,1", "--sigmas", "25",
                       "--save-images", str(tmp_path / "imgs")))
    r2 = ev.main(_args(sets, "--checkpoint", str(ckpt), "--variant", "3,3,3,3", "--sigmas", "25"))
    assert r1["reuse"] == [1, 1, 1, 1] and r2["reuse"] == [3, 3, 3, 3]
    assert r1["columns"]["Rain100L"]["psnr"] != r2["columns"]["Rain100L"]["psnr"]  # depth changes the output
    assert len(list((tmp_path / "imgs").rglob("*.png"))) == 6  # 2 SOTS + 2 Rain100L + 2 BSD68 σ25
    out = tmp_path / "sweep.json"
    res = ev.main(_args(sets, "--checkpoint", str(ckpt), "--sigmas", "25", "--sweep-depths", "1,1,1,1", "3,3,3,3",
                        "--json", str(out)))
    assert [r["reuse"] for r in res["sweep"]] == [[1, 1, 1, 1], [3, 3, 3, 3]]
    assert res["sweep"][0]["columns"]["Rain100L"]["psnr"] == r1["columns"]["Rain100L"]["psnr"]
    assert (tmp_path / "sweep.sweep.png").stat().st_size > 1000
    assert "ms / image" in out.with_suffix(".md").read_text()


def test_tiny_promptir_checkpoint_rejects_variant(tmp_path):
    sets = make_test_sets(tmp_path / "d", n=1, size=(32, 32))
    ckpt = _tiny_checkpoint(tmp_path / "p.safetensors", "promptir")
    res = ev.main(["--rain100l", str(sets["rain100l"]), "--checkpoint", str(ckpt)])
    assert res["arch"] == "promptir" and math.isfinite(res["columns"]["Rain100L"]["psnr"])
    with pytest.raises(ValueError, match="DyNet"):
        ev.main(["--rain100l", str(sets["rain100l"]), "--checkpoint", str(ckpt), "--variant", "s"])


@pytest.mark.parametrize("arch", ["dynet", "promptir"])
def test_official_checkpoint_through_key_map(tmp_path, repo_root, arch):
    """A Lightning-style .ckpt with the official key names/shapes loads and evaluates."""
    shapes = json.loads((repo_root / "dynet_model" / "data" / f"{arch}_state_dict_shapes.json").read_text())
    g = torch.Generator().manual_seed(0)
    state = {f"net.{k}": torch.randn(*v, generator=g) * 0.02 for k, v in shapes["state_dict"].items()}
    path = tmp_path / "official.ckpt"
    torch.save({"state_dict": state, "epoch": 1}, path)
    sets = make_test_sets(tmp_path / "d", n=1, size=(32, 32))
    variant = ["--variant", "s"] if arch == "dynet" else []
    res = ev.main(["--rain100l", str(sets["rain100l"]), "--official-checkpoint", str(path), "--arch", arch, *variant])
    assert res["arch"] == arch and res["model"].startswith(f"official-{arch}")
    assert res["reuse"] == ([2, 3, 3, 4] if arch == "dynet" else None)
    assert math.isfinite(res["columns"]["Rain100L"]["psnr"])


def test_identity_on_shared_samples(shared_dir, tmp_path):
    s = shared_dir / "data" / "samples"
    res = ev.main(["--model", "identity", "--rain100l", str(s / "Rain100L_10pairs"), "--sots",
                   str(s / "SOTS_outdoor_2pairs"), "--bsd68", str(s / "Kodak24_500px"), "--max-images", "3"])
    cols = res["columns"]
    assert cols["SOTS"]["n"] == 2 and cols["Rain100L"]["n"] == 3 and cols["BSD68 σ15"]["n"] == 3
    # degraded inputs: finite, plausible floors (noisy sigma 15 on 8-bit photos is ~24-25 dB)
    assert 23.0 < cols["BSD68 σ15"]["psnr"] < 26.0 and 10 < cols["Rain100L"]["psnr"] < 40
