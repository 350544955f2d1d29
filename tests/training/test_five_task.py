"""The 5-task benchmark: GoPro / LOL data, the fine-tuning mix with all five tasks, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.restoration_fixtures import (
    degrade,
    make_test_sets,
    make_train_sets,
    save,
    smooth_image,
)
from training import evaluate as ev
from training import finetune as ft
from training.evaluation.protocols import BENCHMARKS


def _same_name_pairs(root, lq_dir, gt_dir, n, size, seed, amount):
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        clean = smooth_image(rng, *size)
        save(root / gt_dir / f"{i:06d}.png", clean)
        save(root / lq_dir / f"{i:06d}.png", degrade(rng, clean, amount))
    return root


def test_five_task_table_on_tiny_fakes(tmp_path, capsys):
    sets = make_test_sets(tmp_path / "test", n=2, size=(48, 64))
    gopro = _same_name_pairs(tmp_path / "test/deblur/gopro", "input", "target", 2, (48, 64), 5, 0.1)
    lol = _same_name_pairs(tmp_path / "test/lowlight/lol", "low", "high", 3, (32, 48), 6, 0.6)
    out = tmp_path / "five.json"
    res = ev.main(["--model", "identity", "--benchmark", "5task", "--sots", str(sets["sots"]),
                   "--rain100l", str(sets["rain100l"]), "--bsd68", str(sets["bsd68"]), "--gopro", str(gopro),
                   "--lol", str(lol), "--json", str(out)])
    assert sorted(res["columns"]) == sorted(BENCHMARKS["5task"].columns)  # sigma 25 only
    assert res["columns"]["LOL"]["n"] == 3 and res["columns"]["GoPro"]["n"] == 2
    avg = res["benchmark_average"]
    assert avg["complete"] and avg["psnr"] == pytest.approx(np.mean([c["psnr"] for c in res["columns"].values()]))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "| Model | SOTS | Rain100L | BSD68 σ25 | GoPro | LOL | Average |"
    assert any(line.startswith("Benchmark: **5task**") for line in printed)
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "5task" and out.with_suffix(".md").read_text().startswith("| Model | SOTS")
    other = tmp_path / "five_b.json"
    ev.main(["--model", "identity", "--benchmark", "5task", "--sots", str(sets["sots"]), "--gopro", str(gopro),
             "--json", str(other)])
    capsys.readouterr()
    merged = ev.main(["--benchmark", "5task", "--table-from", str(out), str(other), "--json", str(tmp_path / "t.json")])
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == printed[0] and rows[2].startswith("| five | ") and rows[3].startswith("| five_b | ")
    assert rows[3].count("–") == 3  # no Rain100L / BSD68 / LOL in the second file
    assert merged["runs"][0]["benchmark_average"]["psnr"] == pytest.approx(avg["psnr"])
    assert not merged["runs"][1]["benchmark_average"]["complete"]
    three = ev.main(["--model", "identity", "--sots", str(sets["sots"]), "--bsd68", str(sets["bsd68"])])
    assert sorted(three["columns"]) == ["BSD68 σ15", "BSD68 σ25", "BSD68 σ50", "SOTS"]  # 3task default unchanged


def test_five_task_finetune_mix(tmp_path):
    sets = make_train_sets(tmp_path / "Train", n=2, size=(40, 40))
    deblur = _same_name_pairs(tmp_path / "Train/Deblur", "blur", "sharp", 3, (40, 40), 7, 0.1)
    enhance = _same_name_pairs(tmp_path / "Train/Enhance", "low", "gt", 2, (40, 40), 8, 0.6)
    vgopro = _same_name_pairs(tmp_path / "val/gopro", "input", "target", 1, (32, 32), 9, 0.1)
    out = tmp_path / "run"
    ft.main(["--out", str(out), "--tiny-model", "--max-steps", "1", "--val-every", "1", "--val-gopro", str(vgopro), "--batch-size", "2", "--patch-size", "16",
             "--num-workers", "0", "--no-progress", "--ckpt-every", "100", "--tasks", "denoise,derain,dehaze,deblur,lowlight",
             "--denoise-dirs", str(sets["denoise"]), "--derain-dir", str(sets["derain"]), "--dehaze-dir",
             str(sets["dehaze"]), "--deblur-dir", str(deblur), "--lowlight-dir", str(enhance)])
    comp = json.loads((out / "epoch_composition.json").read_text())
    assert comp["task_samples_per_epoch"] == {"denoise": 18, "derain": 240, "dehaze": 2, "deblur": 15, "lowlight": 40}
    assert comp["repeats"]["deblur"] == 5 and comp["repeats"]["lowlight"] == 20
    val = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "val/psnr/average" in line]
    assert len(val) == 1 and val[0]["val/psnr/average"] == val[0]["val/psnr/GoPro"]  # 5-task average of what is given


def test_five_task_validation_sets_are_not_run_settings():
    from training.runfolder import run_settings

    settings = run_settings(ft.FinetuneConfig(out="x", val_gopro="g", val_lol="l", deblur_dir="d"))
    assert "val_gopro" not in settings and "val_lol" not in settings and settings["deblur_dir"] == "d"
