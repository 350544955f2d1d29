"""training.finetune: task subsets, balanced sampling, schedule, a tiny run that learns, exact resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from tests.restoration_fixtures import make_test_sets, make_train_sets
from training import finetune as ft
from training import restoration_data as rd
from training.finetune_schedule import resolve_schedule
from training.task_mix import official_composition


@pytest.fixture(scope="module")
def train_sets(tmp_path_factory):
    return make_train_sets(tmp_path_factory.mktemp("train"), n=3, size=(40, 40))


def _data_args(sets):
    return ["--denoise-dirs", str(sets["denoise"]), "--derain-dir", str(sets["derain"]),
            "--dehaze-dir", str(sets["dehaze"])]


def _tiny_init(path, arch="dynet"):
    from dynet_model.build import build_model
    from dynet_model.checkpoint import save_model
    from dynet_model.config import ModelConfig
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(arch)
    save_model(path, build_model(cfg), cfg)
    return path


def test_parse_tasks_and_missing_task_data(train_sets):
    assert rd.parse_tasks(["denoise,derain", "dehaze"]) == ["denoise", "derain", "dehaze"]
    assert rd.parse_tasks(["derain"]) == ["derain"]
    with pytest.raises(ValueError, match="unknown task 'inpaint'"):
        rd.parse_tasks(["inpaint"])
    with pytest.raises(rd.DatasetLayoutError, match="--denoise-dirs"):
        rd.collect_train_sources(["denoise"])
    src = rd.collect_train_sources(["derain"], derain_dir=str(train_sets["derain"]))
    assert src.sizes() == {"denoise": 0, "derain": 3, "dehaze": 0}


def test_layout_validated_before_training(tmp_path, train_sets):
    (tmp_path / "Derain" / "rainy").mkdir(parents=True)
    (tmp_path / "Derain" / "gt").mkdir()
    with pytest.raises(rd.DatasetLayoutError, match="no images"):
        ft.main(["--out", str(tmp_path / "run"), "--tasks", "derain", "--derain-dir", str(tmp_path / "Derain"),
                 "--tiny-model", "--max-steps", "2"])
    assert not (tmp_path / "run").exists()  # nothing written


def test_balanced_task_subset_sampling_and_patches(train_sets):
    src = rd.collect_train_sources(["derain", "dehaze"], derain_dir=str(train_sets["derain"]),
                                   dehaze_dir=str(train_sets["dehaze"]))
    ds = rd.TaskMixDataset(src, tasks=["derain", "dehaze"], sigmas=[25], patch_size=16, seed=3)
    tasks = Counter(ds[i]["task"] for i in range(120))
    assert set(tasks) == {1, 2} and min(tasks.values()) > 40  # only the chosen tasks, ~evenly
    a, b = ds[7], ds[7]
    assert torch.equal(a["lq"], b["lq"]) and a["lq"].shape == (3, 16, 16)  # a pure function of (seed, index)
    assert 0.0 <= float(a["lq"].min()) and float(a["lq"].max()) <= 1.0
    den = rd.TaskMixDataset(rd.collect_train_sources(["denoise"], denoise_dirs=[str(train_sets["denoise"])]),
                            tasks=["denoise"], sigmas=[50], patch_size=16, seed=0)[0]
    diff = (den["lq"] - den["gt"]) * 255
    assert 30 < float(diff.std()) < 60  # sigma-50 noise, clipped
    assert torch.allclose(den["lq"] * 255, torch.round(den["lq"] * 255), atol=1e-3)  # uint8 truncated


def test_promptir_epoch_and_schedule():
    sizes = {"denoise": 5144, "derain": 200, "dehaze": 72135}  # BSD400+WED, Rain100L, OTS
    n = official_composition(sizes, ["denoise", "derain", "dehaze"], (15, 25, 50)).total
    assert n == 9 * 5144 + 120 * 200 + 72135
    s = resolve_schedule(max_steps=0, warmup_steps=0, stop_at_step=None, epochs=150, warmup_epochs=15,
                         stop_epoch=120, epoch_samples=n, global_batch=32)
    assert s.steps_per_epoch == 4451 and s.max_steps == 150 * 4451
    assert s.warmup_steps == 15 * 4451 and s.stop_at_step == 120 * 4451
    assert official_composition(sizes, ["derain"], (15, 25, 50)).total == 24000
    step_based = resolve_schedule(max_steps=100, warmup_steps=10, stop_at_step=50, epochs=150, warmup_epochs=15,
                                  stop_epoch=120, epoch_samples=n, global_batch=32)
    assert (step_based.max_steps, step_based.warmup_steps, step_based.stop_at_step) == (100, 10, 50)


def _fixed_batch_loss(path, sets, variant_reuse):
    from dynet_model.checkpoint import load_model
    model, _, _ = load_model(path)
    src = rd.collect_train_sources(["derain", "dehaze"], derain_dir=str(sets["derain"]), dehaze_dir=str(sets["dehaze"]))
    ds = rd.TaskMixDataset(src, tasks=["derain", "dehaze"], sigmas=[25], patch_size=32, seed=123)
    batch = [ds[i] for i in range(8)]
    lq, gt = torch.stack([b["lq"] for b in batch]), torch.stack([b["gt"] for b in batch])
    with torch.no_grad():
        return float(F.l1_loss(model(lq, reuse=variant_reuse).clamp(0, 1), gt))


def test_tiny_finetune_lowers_loss_on_task_subset(tmp_path, train_sets):
    init = _tiny_init(tmp_path / "init.safetensors")
    out = tmp_path / "run"
    res = ft.main(["--out", str(out), "--init", str(init), "--tasks", "derain,dehaze", *_data_args(train_sets),
                   "--patch-size", "24", "--batch-size", "4", "--max-steps", "12", "--warmup-steps", "1",
                   "--lr", "2e-3", "--variant", "l", "--num-workers", "0", "--log-every", "5",
                   "--ckpt-every", "100", "--no-progress", "--no-resume"])
    assert res.status == "completed" and res.final_step == 12
    l = (4, 6, 6, 8)
    before, after = _fixed_batch_loss(init, train_sets, l), _fixed_batch_loss(out / "model_final.safetensors", train_sets, l)
    print("fixed-batch L1 before, after:", before, after)
    assert after < 0.8 * before, (before, after)
    data = json.loads((out / "finetune_data.json").read_text())
    assert data["tasks"] == ["derain", "dehaze"] and data["sizes"]["denoise"] == 0
    assert (out / "finetune_config.yaml").exists() and (out / "checkpoints" / "step_0000012" / "COMPLETE").exists()
    # evaluate reads a training checkpoint folder directly
    from training import evaluate as ev
    test_sets = make_test_sets(tmp_path / "test", n=1, size=(32, 32))
    res = ev.main(["--checkpoint", str(out / "checkpoints" / "step_0000012"), "--rain100l", str(test_sets["rain100l"]),
                   "--variant", "l"])
    assert res["model"] == "step_0000012@4,6,6,8" and res["columns"]["Rain100L"]["n"] == 1


def test_dynamic_variant_resume_is_exact(tmp_path, train_sets):
    sets_test = make_test_sets(tmp_path / "val", n=1, size=(32, 32))
    common = ["--tiny-model", "--tasks", "denoise", "derain", *_data_args(train_sets), "--patch-size", "16",
              "--batch-size", "2", "--max-steps", "8", "--warmup-steps", "2", "--variant", "dynamic",
              "--num-workers", "0", "--log-every", "2", "--ckpt-every", "4", "--no-progress", "--seed", "5"]
    full = ft.main(["--out", str(tmp_path / "a"), *common, "--val-every", "4", "--val-rain100l",
                    str(sets_test["rain100l"]), "--val-max-images", "1"])
    ft.main(["--out", str(tmp_path / "b"), *common, "--stop-at-step", "4"])
    resumed = ft.main(["--out", str(tmp_path / "b"), *common, "--resume"])
    assert full.final_step == resumed.final_step == 8
    with pytest.raises(SystemExit) as refused:  # the run folder holds a run: --resume or --overwrite needed
        ft.main(["--out", str(tmp_path / "b"), *common])
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as refused:  # --resume with another content-deciding setting
        ft.main(["--out", str(tmp_path / "b"), *common, "--resume", "--lr", "1e-3"])
    assert refused.value.code == 2
    from safetensors.torch import load_file
    wa, wb = load_file(str(tmp_path / "a" / "model_final.safetensors")), load_file(str(tmp_path / "b" / "model_final.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    logs = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    tags = {k for rec in logs for k in rec if k.startswith("steps/")}
    assert tags == {"steps/S", "steps/L"}  # both depths trained
    assert any("val/L/psnr/Rain100L" in rec for rec in logs)


def test_official_init_through_key_map(tmp_path, repo_root):
    shapes = json.loads((repo_root / "dynet_model" / "data" / "dynet_state_dict_shapes.json").read_text())
    g = torch.Generator().manual_seed(1)
    state = {f"net.{k}": torch.randn(*v, generator=g) for k, v in shapes["state_dict"].items()}
    torch.save({"state_dict": state}, tmp_path / "dynet.ckpt")
    cfg = ft.FinetuneConfig(out=str(tmp_path / "run"), init=str(tmp_path / "dynet.ckpt"), arch="dynet")
    model, mcfg = ft.build_finetune_model(cfg)
    assert mcfg.arch == "dynet" and mcfg.dim == 48
    assert torch.equal(model.state_dict()["embed.weight"], state["net.patch_embed.proj.weight"])
