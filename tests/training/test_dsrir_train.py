"""DSRIR training: data sampling rules, step plan, and a few real steps per --mode on tiny data.

VGG19 here is RANDOM (random_vgg19_features_TEST_ONLY) installed into a temporary TORCH_HOME with
--no-verify-hash; production verifies torchvision's file and never substitutes random weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.restoration_fixtures import random_image_file
from training import make_lists, train_dsrir
from training.dsrir.data import PairPatchDataset, StepPlan, progressive_batches
from training.dsrir.schedule import ProgressiveSchedule


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("aio")
    rng = np.random.default_rng(0)
    for i in range(2):
        random_image_file(root / "BSD400" / f"{i}.png", rng)
        random_image_file(root / "WED/gt" / f"w{i}.png", rng, size=(12, 14))  # smaller than the 16 / 20 patch: padded
        random_image_file(root / "Rain100L/train/rainy" / f"rain-{i}.png", rng)
        random_image_file(root / "Rain100L/train/gt" / f"norain-{i}.png", rng)
        random_image_file(root / "Reside/train/hazy" / f"000{i}_0.8_0.1.jpg", rng)
        random_image_file(root / "Reside/train/gt" / f"000{i}.jpg", rng)
    lists = root / "lists"
    assert make_lists.main(["--train-dir", str(root), "--out-dir", str(lists), "--rain-repeat", "2"]) == 0
    return root, lists


def test_dataset_samples_are_deterministic_and_noise_is_synthesised(tiny_data):
    root, lists = tiny_data
    entries = make_lists.read_pair_list(lists / "train_noise.csv")
    ds = PairPatchDataset(entries=entries, train_dir=root, seed=5)
    a, b = ds[(1, 0, 16)], ds[(1, 0, 16)]
    assert a["lq"].shape == (3, 16, 16) and torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(ds[(2, 0, 16)]["lq"], a["lq"])  # another epoch: another crop / noise
    small = ds[(1, 2, 16)]  # a 12x14 image padded to the patch
    assert small["gt"].shape == (3, 16, 16)
    sigmas = [float((ds[(e, 0, 16)]["lq"] - ds[(e, 0, 16)]["gt"]).abs().mean()) for e in range(1, 12)]
    assert max(sigmas) > 0.02  # noise is added (sigma uniform 0..55)
    rain = make_lists.read_pair_list(lists / "train_rain.csv")
    r = PairPatchDataset(entries=rain, train_dir=root)[(1, 0, 16)]
    assert not torch.equal(r["lq"], r["gt"])


def test_step_plan_and_loader_rebuild_at_phase_change(tiny_data):
    root, lists = tiny_data
    entries = make_lists.read_pair_list(lists / "train_rain.csv")  # 4 pairs
    s = ProgressiveSchedule(patch_sizes=(16, 20), batch_sizes=(2, 4), epoch_chg=(2, 3), warmup_epochs=1)
    plan = StepPlan(s, len(entries))
    assert plan.epoch_starts == [0, 2, 4, 5] and plan.total_steps == 5
    assert [plan.locate(i) for i in range(5)] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]
    ds = PairPatchDataset(entries=entries, train_dir=root)
    full = list(progressive_batches(ds, plan, start_step=0, seed=1, workers=0))
    assert [tuple(b["lq"].shape) for b in full] == [(2, 3, 16, 16)] * 4 + [(4, 3, 20, 20)]
    tail = list(progressive_batches(ds, plan, start_step=3, seed=1, workers=0))
    assert len(tail) == 2 and all(torch.equal(x["gt"], y["gt"]) for x, y in zip(tail, full[3:]))


@pytest.mark.parametrize("mode", ["all_in_one", "noise", "rain", "haze"])
def test_few_steps_each_mode(mode, tiny_data, random_vgg_home_TEST_ONLY, tmp_path, monkeypatch):
    root, lists = tiny_data
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_home_TEST_ONLY))
    out = tmp_path / "run"
    args = ["--train-dir", str(root), "--lists-dir", str(lists), "--mode", mode, "--out", str(out),
            "--patch-size", "16", "20", "--batch-size", "2", "2", "--epoch-chg", "1", "2", "--warmup-epochs", "1",
            "--workers", "0", "--log-every", "1", "--ckpt-every", "2", "--no-progress", "--no-vgg-verify-hash",
            "--device", "cpu", "--max-steps", "3"]
    assert train_dsrir.main(args) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_recs = [r for r in records if "loss" in r]
    n = len(make_lists.read_pair_list(lists / f"train_{mode}.csv"))
    steps_phase1 = n // 2  # one epoch per phase here
    expected = list(range(1, min(3, 2 * steps_phase1) + 1))
    assert [r["step"] for r in train_recs] == expected
    for r in train_recs:
        assert all(np.isfinite(r[k]) for k in ("loss", "loss_uncertainty", "loss_psnr", "loss_contrast"))
        assert r["loss_contrast"] > 0
    assert [r["patch"] for r in train_recs] == [16 if s <= steps_phase1 else 20 for s in expected]
    assert (out / "checkpoints").is_dir() and (out / "config.yaml").is_file()


def test_resume_continues_and_finishes(tiny_data, random_vgg_home_TEST_ONLY, tmp_path, monkeypatch):
    from dynet_model.checkpoint import load_model

    root, lists = tiny_data
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_home_TEST_ONLY))
    out = tmp_path / "run"
    base = ["--train-dir", str(root), "--lists-dir", str(lists), "--mode", "rain", "--out", str(out),
            "--patch-size", "16", "--batch-size", "4", "--epoch-chg", "2", "--warmup-epochs", "1",
            "--workers", "0", "--log-every", "1", "--ckpt-every", "1", "--no-progress", "--no-vgg-verify-hash",
            "--device", "cpu"]
    assert train_dsrir.main(base + ["--max-steps", "1"]) == 0
    assert not (out / "model_final.safetensors").exists()
    assert train_dsrir.main(base + ["--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    _model, cfg, _ = load_model(out / "model_final.safetensors")
    assert cfg.arch == "dsrir"
    with pytest.raises(SystemExit) as refused:  # the folder holds a run: --resume or --overwrite needed
        train_dsrir.main(base)
    assert refused.value.code == 2


def test_clear_errors(tiny_data, tmp_path, monkeypatch, capsys):
    root, lists = tiny_data
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    args = ["--train-dir", str(root), "--lists-dir", str(lists), "--out", str(tmp_path / "r"), "--workers", "0",
            "--batch-size", "2", "--patch-size", "16", "--epoch-chg", "4"]
    assert train_dsrir.main(args) == 1  # no VGG19 installed
    assert "python -m training.vgg_weights install" in capsys.readouterr().err
    assert train_dsrir.main(args + ["--mode", "snow"]) == 1
    assert train_dsrir.main(["--train-dir", str(root), "--lists-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "make_lists" in capsys.readouterr().err
