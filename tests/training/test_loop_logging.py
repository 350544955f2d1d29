"""What the training loop shows: a loss line every --log-every steps (bar or not), TensorBoard images, hparams."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from dynet_model.build import build_model
from dynet_model.config import ModelConfig
from training.loop import LoopConfig, OptimConfig, StepResult, train
from training.validation import Validator


def _data(start_step: int):
    gen = torch.Generator().manual_seed(start_step)
    while True:
        gt = torch.rand(2, 3, 16, 16, generator=gen)
        yield {"lq": (gt + 0.1 * torch.randn(gt.shape, generator=gen)).clamp(0, 1), "gt": gt}


def _step(model, batch, step):
    return StepResult(loss=(model(batch["lq"], reuse=(1, 1, 1, 1)) - batch["gt"]).abs().mean())


def _run(out: Path, *, progress: bool, validate=None, hparams=None):
    torch.manual_seed(0)
    model = build_model(ModelConfig.tiny("dynet"))
    return train(model=model, model_config=ModelConfig.tiny("dynet"), data_factory=_data, step_fn=_step,
                 optim=OptimConfig(lr=1e-3),
                 loop=LoopConfig(out_dir=str(out), max_steps=4, log_every=2, ckpt_every=100, progress=progress,
                                 val_every=4 if validate else 0, tensorboard=True, hparams=hparams),
                 validate=validate)


def test_loss_line_without_progress_bar(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="training.loop"):
        _run(tmp_path / "run", progress=False)
    lines = [r.getMessage() for r in caplog.records if "loss" in r.getMessage()]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]


def test_loss_line_with_progress_bar(tmp_path, capsys):
    _run(tmp_path / "run", progress=True)
    captured = capsys.readouterr()
    assert "step 2/4 loss" in captured.out + captured.err and "step 4/4 loss" in captured.out + captured.err


def test_tensorboard_gets_validation_grid_and_hparams(tmp_path):
    gen = torch.Generator().manual_seed(1)
    gt = torch.rand(3, 3, 16, 16, generator=gen)
    validator = Validator(lq=(gt + 0.1).clamp(0, 1), gt=gt, variants=[(1, 1, 1, 1)], out_dir=tmp_path / "val")
    _run(tmp_path / "run", progress=False, validate=validator, hparams={"lr": 1e-3, "crop": 16, "tasks": ["a"]})
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert "val/input_output_target" in acc.Tags()["images"]
    image = acc.Images("val/input_output_target")[0]
    assert (image.width, image.height) == (3 * 16, 3 * 16)  # input | output | target, one row per crop
    plugins = set()
    for f in (tmp_path / "run" / "tb" / "hparams").glob("events.*"):
        for event in EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                plugins.add(value.metadata.plugin_data.plugin_name)
    assert "hparams" in plugins


def test_finetune_validation_grid_reaches_tensorboard(tmp_path):
    from tests.restoration_fixtures import make_test_sets, make_train_sets
    from training import finetune

    train = make_train_sets(tmp_path / "train", n=2, size=(32, 32))
    val = make_test_sets(tmp_path / "val", n=1, size=(32, 32))
    finetune.main(["--out", str(tmp_path / "run"), "--tiny", "--tasks", "denoise", "--denoise-dirs",
                   str(train["denoise"]), "--crop", "16", "--batch-size", "2", "--max-steps", "2", "--workers", "0",
                   "--val-every", "2", "--val-bsd68", str(val["bsd68"]), "--val-max-images", "1", "--no-progress",
                   "--device", "cpu"])
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    acc.Reload()
    image = acc.Images("val/input_output_target")[0]
    assert (image.width, image.height) == (3 * 32, 32)
