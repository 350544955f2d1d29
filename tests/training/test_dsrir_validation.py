"""DSRIR validation every N epochs: model_best is the best validation epoch, and the selection is labelled.

The VGG19 used by the loss is RANDOM (TEST_ONLY), as in test_dsrir_train.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.restoration_fixtures import make_test_sets, random_image_file
from training import make_lists, prepare_data, train_dsrir
from training.dsrir import validation as val


def test_best_selector_keeps_the_best_epoch(tmp_path):
    from dynet_model.build import build_model
    from dynet_model.checkpoint import load_model
    from dynet_model.config import ModelConfig

    cfg = ModelConfig.tiny("dynet")
    model = build_model(cfg)
    sel = val.BestSelector(tmp_path, model_config=cfg, selection="validation")
    scores = {5: 20.0, 10: 22.0, 15: 21.0, 20: 22.0, 25: 23.5, 30: 19.0}
    marks = {}
    for epoch, score in scores.items():
        with torch.no_grad():
            next(model.parameters()).fill_(epoch)  # the weights say which epoch they are from
        marks[epoch] = sel.update(model, step=epoch * 10, epoch=epoch, metrics={"psnr/average": score})
    assert marks == {5: True, 10: True, 15: False, 20: False, 25: True, 30: False}  # strictly better only
    rec = json.loads((tmp_path / "model_best.json").read_text())
    assert (rec["epoch"], rec["score"], rec["selection"]) == (25, 23.5, "validation")
    best, _, meta = load_model(tmp_path / "model_best.safetensors")
    assert float(next(best.parameters()).detach().flatten()[0]) == 25.0 and meta["kind"] == "best"
    resumed = val.BestSelector(tmp_path, model_config=cfg, selection="validation", resume=True)
    assert resumed.best_score == 23.5 and not resumed.update(model, step=400, epoch=40, metrics={"psnr/average": 23.0})
    assert val.epoch_end_steps([0, 3, 6, 8, 10], 2) == {6: 2, 10: 4}


def test_train_dsrir_validates_and_keeps_best(tmp_path, random_vgg_home_TEST_ONLY, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_home_TEST_ONLY))
    rng = np.random.default_rng(0)
    root = tmp_path / "aio"
    for i in range(2):
        random_image_file(root / "Rain100L/train/rainy" / f"rain-{i}.png", rng)
        random_image_file(root / "Rain100L/train/gt" / f"norain-{i}.png", rng)
    lists = root / "lists"
    assert make_lists.main(["--train-dir", str(root), "--out-dir", str(lists), "--modes", "rain",
                            "--rain-repeat", "2"]) == 0
    vdir = tmp_path / "val"
    make_test_sets(vdir, n=2, size=(16, 24))
    out = tmp_path / "run"
    args = ["--train-dir", str(root), "--lists-dir", str(lists), "--mode", "rain", "--out", str(out),
            "--patch-size", "16", "--batch-size", "4", "--epoch-chg", "4", "--warmup-epochs", "1",
            "--lr", "2e-4", "--workers", "0", "--log-every", "1", "--ckpt-every", "1",
            "--keep-last", "5", "--no-progress", "--no-vgg-verify-hash", "--device", "cpu", "--val-every-epochs", "1"]
    assert train_dsrir.main(args + ["--val-dir", str(tmp_path / "no-such-dir")]) == 1
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()
    assert "--val-dir: folder not found" in capsys.readouterr().err
    assert train_dsrir.main(args + ["--val-dir", str(vdir)]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in records if "val/psnr/average" in r]
    assert [int(r["val/epoch"]) for r in vals] == [1, 2, 3, 4]  # one step per epoch here
    scores = [r["val/psnr/average"] for r in vals]
    best = json.loads((out / "model_best.json").read_text())
    assert best["epoch"] == 1 + int(np.argmax(scores)) and best["score"] == pytest.approx(max(scores))
    assert best["selection"] == "validation" and scores[1] < scores[0]  # not monotone: selection matters
    ckpt = load_file(out / "checkpoints" / f"step_{best['step']:07d}" / "model.safetensors")
    kept = load_file(out / "model_best.safetensors")
    assert all(torch.equal(kept[k], ckpt[k]) for k in ckpt)  # model_best = the weights of that epoch
    assert "model_best: epoch" in capsys.readouterr().out


def test_prepared_test_folder_is_labelled_test_set(tmp_path):
    rng = np.random.default_rng(1)
    dl = tmp_path / "dl"
    for n in (1, 2):
        random_image_file(dl / "Rain100L" / "test" / "rainy" / f"rain-{n}.png", rng)
        random_image_file(dl / "Rain100L" / "test" / "gt" / f"norain-{n}.png", rng)
    assert prepare_data.main(["test-rain100l", "--src", str(dl), "--out", str(tmp_path / "data"), "--no-progress"]) == 0
    sets, is_test = val.collect_val_sets(tmp_path / "data" / "test", "rain")
    assert is_test and len(sets.pairs["Rain100L"][1]) == 2 and not sets.denoise
    held_out = make_test_sets(tmp_path / "held", n=1)
    assert val.collect_val_sets(tmp_path / "held", "all_in_one")[1] is False
    with pytest.raises(ValueError, match="dehaze/ is missing"):
        (held_out["sots"] / "input" / "0001_0.8_0.2.png").unlink()
        import shutil
        shutil.rmtree(held_out["sots"])
        val.collect_val_sets(tmp_path / "held", "haze")
