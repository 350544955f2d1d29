"""Loop mechanics (checkpoint format, resume, non-finite guard, LR schedule).

These tests are about the task-agnostic loop only, so they use a small stand-in conv net
(``_StandInNet``) and a stand-in model writer; the DyNet end-to-end runs are in test_pretrain_run.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training import checkpointing
from training.loop import (
    LoopConfig,
    NonFiniteLossError,
    OptimConfig,
    StepResult,
    lr_at,
    train,
)


class _StandInNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _standin_save_model(path: Path, model: nn.Module, cfg, metadata: dict) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(cfg), **metadata})


def _data_factory(seed: int = 0):
    def factory(start_step: int):
        gen = torch.Generator().manual_seed(seed * 1000 + start_step)
        while True:
            gt = torch.rand(4, 3, 16, 16, generator=gen)
            yield {"lq": (gt + 0.2 * torch.randn(gt.shape, generator=gen)).clamp(0, 1), "gt": gt}
    return factory


def _l1_step(model, batch, step):
    return StepResult(loss=(model(batch["lq"]) - batch["gt"]).abs().mean(), tag="a" if step % 2 else "b")


def _run(out: Path, *, max_steps: int, stop_at: int | None = None, resume: bool = False, step_fn=_l1_step,
         max_nonfinite: int = 20):
    torch.manual_seed(0)
    model = _StandInNet()
    result = train(model=model, model_config={"arch": "stand-in"}, data_factory=_data_factory(), step_fn=step_fn,
                   optim=OptimConfig(lr=1e-3, warmup_steps=2, schedule="cosine", grad_clip=1.0),
                   loop=LoopConfig(out_dir=str(out), max_steps=max_steps, stop_at_step=stop_at, log_every=2,
                                   ckpt_every=3, keep_last=2, progress=False, tensorboard=False,
                                   max_consecutive_nonfinite=max_nonfinite),
                   resume=resume, save_model=_standin_save_model)
    return model, result


def test_resume_is_bit_exact_and_checkpoints_are_pruned(tmp_path):
    straight, res = _run(tmp_path / "a", max_steps=12)
    assert res.status == "completed" and res.final_step == 12
    _, res1 = _run(tmp_path / "b", max_steps=12, stop_at=6)
    assert res1.status == "stopped" and res1.final_step == 6
    resumed, res2 = _run(tmp_path / "b", max_steps=12, resume=True)
    assert res2.final_step == 12
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    kept = [p.name for _, p in checkpointing.list_checkpoints(tmp_path / "b" / "checkpoints")]
    assert kept == ["step_0000009", "step_0000012"]
    ck = tmp_path / "b" / "checkpoints" / "step_0000012"
    assert sorted(p.name for p in ck.iterdir()) == ["COMPLETE", "model.safetensors", "optim.safetensors", "state.json"]
    tensors = load_file(str(ck / "optim.safetensors"))
    assert any(k.endswith(".exp_avg_sq") for k in tensors) and "rng.torch" in tensors
    assert json.loads((ck / "state.json").read_text())["step"] == 12
    assert (tmp_path / "b" / "model_final.safetensors").is_file()
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "samples_per_s", "data_wait_frac", "loss/a", "loss/b"} <= set(log[-1])


def test_incomplete_checkpoint_is_ignored(tmp_path):
    _run(tmp_path, max_steps=3)
    fake = tmp_path / "checkpoints" / "step_0000099"
    fake.mkdir()
    (fake / "state.json").write_text("{}")
    assert checkpointing.latest_checkpoint(tmp_path / "checkpoints").name == "step_0000003"


def test_nonfinite_steps_are_skipped_and_counted(tmp_path):
    def flaky(model, batch, step):
        r = _l1_step(model, batch, step)
        return StepResult(r.loss * float("nan"), r.tag) if step in (1, 4) else r

    _, res = _run(tmp_path, max_steps=6, step_fn=flaky)
    assert res.status == "completed" and res.nonfinite_skipped == 2


def test_repeated_nonfinite_stops_with_last_good_checkpoint(tmp_path):
    def broken(model, batch, step):
        r = _l1_step(model, batch, step)
        return StepResult(r.loss * float("nan"), r.tag) if step >= 4 else r

    with pytest.raises(NonFiniteLossError, match="step_0000003"):
        _run(tmp_path, max_steps=20, step_fn=broken, max_nonfinite=3)
    assert checkpointing.latest_checkpoint(tmp_path / "checkpoints").name == "step_0000003"


def test_lr_schedule_warmup_then_cosine():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr=0.0)
    assert lr_at(0, cfg, 110) == pytest.approx(0.1)
    assert lr_at(9, cfg, 110) == pytest.approx(1.0)
    assert lr_at(60, cfg, 110) == pytest.approx(0.5)
    assert lr_at(110, cfg, 110) == pytest.approx(0.0)
    assert lr_at(5, OptimConfig(lr=2.0), 100) == 2.0


def test_interrupt_writes_a_checkpoint_at_exit(tmp_path):
    def interrupted(model, batch, step):
        if step == 4:
            raise KeyboardInterrupt
        return _l1_step(model, batch, step)

    _, res = _run(tmp_path, max_steps=20, step_fn=interrupted)
    assert res.status == "interrupted" and res.final_step == 4
    assert checkpointing.latest_checkpoint(tmp_path / "checkpoints").name == "step_0000004"
    assert not (tmp_path / "model_final.safetensors").exists()
