"""A task-agnostic training loop: optimizer + LR schedule, non-finite guard, logging, checkpoints.

The caller supplies the model, a *data factory* and a *step function*; nothing here knows about
pre-training, degradations or variants:

- ``data_factory(start_step) -> Iterator[dict]`` returns the batch stream for steps ``start_step, ...``
  (batches are ``{"lq": B×3×H×W, "gt": ..., ...}``). The loop asks for a fresh stream at the start and
  after every checkpoint, so a stream that is seeded from ``start_step`` makes ``--resume`` bit-exact:
  a resumed run sees exactly the batches an uninterrupted run sees.
- ``step_fn(model, batch, step) -> StepResult`` runs the forward pass and returns the loss (and a tag,
  e.g. the depth variant, used for per-tag loss logging). The loop does backward, clipping and the
  optimizer step, under bf16 autocast on CUDA when asked.
- ``validate(model, step) -> dict[str, float]`` (optional) runs every ``val_every`` steps on rank 0.

Outputs under ``out_dir``: ``checkpoints/step_NNNNNNN/`` (see :mod:`training.checkpointing`),
``log.jsonl``, ``tb/`` (TensorBoard), ``model_final.safetensors``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training import checkpointing
from training.distributed import DistEnv, all_reduce_mean

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (the LR is a pure function of the step: nothing to pickle)."""

    name: str = "adam"  # "adam" | "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = no clipping


@dataclass
class LoopConfig:
    out_dir: str
    max_steps: int
    stop_at_step: int | None = None  # stop early (with a checkpoint) without changing the schedule
    log_every: int = 20
    ckpt_every: int = 1000
    keep_last: int = 3
    val_every: int = 0  # 0 = no periodic validation
    max_consecutive_nonfinite: int = 20
    amp: str = "bf16"  # "bf16" | "none"; autocast is only ever used on CUDA
    progress: bool = True
    tensorboard: bool = True
    seed: int = 0
    hparams: dict | None = None  # the run's resolved config, written to TensorBoard's HParams tab at the end


@dataclass
class StepResult:
    loss: torch.Tensor
    tag: str = ""
    samples: int = 0


@dataclass
class TrainResult:
    final_step: int
    status: str  # "completed" | "stopped" | "interrupted"
    nonfinite_skipped: int
    last_checkpoint: Path | None
    history: list[dict] = field(default_factory=list)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


StepFn = Callable[[nn.Module, dict, int], StepResult]
DataFactory = Callable[[int], Iterator[dict]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"lr": cfg.lr, "betas": tuple(cfg.betas), "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    if cfg.name == "adam":
        return torch.optim.Adam(params, **kwargs)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    raise ValueError(f"unknown optimizer {cfg.name!r} (expected adam or adamw)")


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """LR for the update that produces step ``step + 1``: linear warm-up, then constant or cosine."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        span = max(1, max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {cfg.schedule!r} (expected constant or cosine)")


def _to_device(batch: dict, device: str) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if callable(close):
        close()


class _Meter:
    """Window statistics between two log lines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.wait = 0.0
        self.samples = 0
        self.steps = 0
        self.loss_sum = 0.0
        self.by_tag: dict[str, list[float]] = {}

    def add(self, loss: float, tag: str, samples: int, wait: float) -> None:
        self.steps += 1
        self.samples += samples
        self.wait += wait
        self.loss_sum += loss
        self.by_tag.setdefault(tag, []).append(loss)

    def summary(self) -> dict:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        out = {"loss": self.loss_sum / max(self.steps, 1), "samples_per_s": self.samples / elapsed,
               "steps_per_s": self.steps / elapsed, "data_wait_frac": min(1.0, self.wait / elapsed)}
        for tag, values in sorted(self.by_tag.items()):
            if tag:
                out[f"loss/{tag}"] = sum(values) / len(values)
                out[f"steps/{tag}"] = len(values)
        return out


class Trainer:
    """Holds the run state; :meth:`run` is the whole loop. Use :func:`train` for the one-call form."""

    def __init__(self, *, model: nn.Module, model_config: Any, data_factory: DataFactory, step_fn: StepFn,
                 optim: OptimConfig, loop: LoopConfig, env: DistEnv | None = None, resume: bool = False,
                 validate: Callable[[nn.Module, int], dict] | None = None,
                 extra_metrics: Callable[[], dict] | None = None,
                 save_model: checkpointing.SaveModelFn | None = None, accelerator: Any | None = None) -> None:
        self.env = env or DistEnv()
        self.model = model.to(self.env.device)
        self.accelerator = accelerator  # training.acceleration.Accelerator: compile, channels_last, MFU
        if accelerator is not None:
            accelerator.prepare(self.model)  # before the optimizer: parameters keep their identity
        self.model_config, self.data_factory, self.step_fn = model_config, data_factory, step_fn
        self.optim_cfg, self.cfg = optim, loop
        self.validate, self.extra_metrics, self.save_model = validate, extra_metrics, save_model
        self.out = Path(loop.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.optimizer = build_optimizer(self.model, optim)
        self.step, self.nonfinite_total, self.consecutive_nonfinite = 0, 0, 0
        self.last_ckpt: Path | None = None
        self.history: list[dict] = []
        torch.manual_seed(loop.seed + self.env.rank)
        if resume:
            self._resume()
        self.train_model = self._wrap(self.model)
        if accelerator is not None:
            self.train_model = accelerator.wrap(self.train_model)
        self.writer = self._tensorboard()

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.env.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [torch.device(self.env.device).index] if self.env.device.startswith("cuda") else None
        return DDP(model, device_ids=ids)

    def _tensorboard(self):
        if not (self.env.is_main and self.cfg.tensorboard):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tb"))

    def _resume(self) -> None:
        latest = checkpointing.latest_checkpoint(self.ckpt_root)
        if latest is None:
            log.info("--resume: no complete checkpoint under %s; starting from step 0", self.ckpt_root)
            return
        state = checkpointing.load_checkpoint(latest, model=self.model, optimizer=self.optimizer,
                                              model_config=self.model_config,
                                              restore_global_rng=self.env.is_main)
        self.step = int(state["step"])
        self.nonfinite_total = int(state["extra"].get("nonfinite_skipped", 0))
        self.last_ckpt = latest
        if not self.env.is_main:  # only rank 0's global RNG is stored; others reseed from the step
            torch.manual_seed(self.cfg.seed + 1_000_003 * self.env.rank + self.step)
        log.info("resumed from %s (step %d)", latest, self.step)

    def _checkpoint(self) -> None:
        if self.env.is_main:
            extra = {"nonfinite_skipped": self.nonfinite_total, "optim_config": vars(self.optim_cfg),
                     "max_steps": self.cfg.max_steps, "seed": self.cfg.seed,
                     "data_stream_start": self.step, "world_size": self.env.world_size}
            self.last_ckpt = checkpointing.save_checkpoint(
                self.ckpt_root, step=self.step, model=self.model, model_config=self.model_config,
                optimizer=self.optimizer, extra=extra, keep_last=self.cfg.keep_last, save_model=self.save_model)
        from training.distributed import barrier

        barrier(self.env)

    def _one_step(self, batch: dict) -> tuple[float, str, int, bool]:
        """Forward/backward/update; returns (rank-mean loss, tag, samples, applied?)."""
        lr = lr_at(self.step, self.optim_cfg, self.cfg.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        use_amp = self.cfg.amp == "bf16" and self.env.device.startswith("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            result = self.step_fn(self.train_model, batch, self.step)
        result.loss.backward()
        max_norm = self.optim_cfg.grad_clip if self.optim_cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        loss = all_reduce_mean(torch.stack([result.loss.detach().float(), grad_norm.detach().float()]), self.env)
        finite = bool(torch.isfinite(loss).all())
        if finite:
            self.optimizer.step()
        samples = result.samples or int(next(iter(v for v in batch.values() if isinstance(v, torch.Tensor))).shape[0])
        return float(loss[0]), result.tag, samples * self.env.world_size, finite

    def _guard(self, finite: bool) -> None:
        if finite:
            self.consecutive_nonfinite = 0
            return
        self.nonfinite_total += 1
        self.consecutive_nonfinite += 1
        log.warning("step %d: non-finite loss or gradient; update skipped (%d in a row, %d in total)",
                    self.step, self.consecutive_nonfinite, self.nonfinite_total)
        if self.consecutive_nonfinite >= self.cfg.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"{self.consecutive_nonfinite} consecutive non-finite steps at step {self.step}; stopping. "
                f"The last good checkpoint is intact: {self.last_ckpt or 'none written yet'}")

    def _log(self, meter: _Meter, bar) -> None:
        record = {"step": self.step, **meter.summary(), "lr": self.optimizer.param_groups[0]["lr"],
                  "nonfinite_skipped": self.nonfinite_total, "time": time.time()}
        if self.extra_metrics is not None:
            record.update(self.extra_metrics())
        if self.accelerator is not None:  # tflops_per_s, mfu (null without a known peak), compile counts
            record.update(self.accelerator.log_fields(time.perf_counter() - meter.t0))
        self.history.append(record)
        meter.reset()
        if not self.env.is_main:
            return
        with open(self.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, self.step)
        if bar is not None:
            bar.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{record['samples_per_s']:.1f}",
                            wait=f"{record['data_wait_frac']:.2f}")
        line = (f"step {self.step}/{self.cfg.max_steps} loss {record['loss']:.4f} lr {record['lr']:.3g} "
                f"{record['samples_per_s']:.1f} samples/s data-wait {record['data_wait_frac']:.0%}")
        if bar is not None and not bar.disable:
            bar.write(line)  # above the bar, which keeps its place
        else:
            log.info("%s", line)  # --no-progress: the loss still shows every --log-every steps

    def _validate(self) -> None:
        if self.validate is None or not self.env.is_main:
            return
        metrics = self.validate(self.model, self.step)
        if not metrics:  # the validator may decline this step (e.g. it runs at epoch ends only)
            return
        record = {"step": self.step, "time": time.time(), **{f"val/{k}": v for k, v in metrics.items()}}
        self.history.append(record)
        with open(self.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"val/{key}", value, self.step)
            grid = getattr(self.validate, "last_grid", None)  # H×W×3 uint8: input | outputs | target rows
            if grid is not None:
                self.writer.add_image("val/input_output_target", grid, self.step, dataformats="HWC")
        log.info("validation at step %d: %s", self.step, metrics)

    def _write_hparams(self) -> None:
        """The run's config with its last train loss and validation metrics (TensorBoard's HParams tab)."""
        if self.writer is None or not self.cfg.hparams:
            return
        values = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in self.cfg.hparams.items()}
        final: dict[str, float] = {}
        for record in self.history:
            final.update({f"final/{k}": float(v) for k, v in record.items()
                          if (k == "loss" or k.startswith("val/")) and isinstance(v, (int, float))})
        self.writer.add_hparams(values, final or {"final/loss": float("nan")}, run_name="hparams")

    def run(self) -> TrainResult:
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        stop = min(self.cfg.max_steps, self.cfg.stop_at_step or self.cfg.max_steps)
        bar = tqdm(total=stop, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (self.cfg.progress and self.env.is_main))
        stream, meter, status = self.data_factory(self.step), _Meter(), "completed"
        self.model.train()
        try:
            while self.step < stop:
                t_wait = time.perf_counter()
                batch = _to_device(next(stream), self.env.device)
                wait = time.perf_counter() - t_wait
                loss, tag, samples, finite = self._one_step(batch)
                self._guard(finite)
                self.step += 1
                if finite:
                    meter.add(loss, tag, samples, wait)
                bar.update(1)
                bar.set_description(f"train [{tag}]" if tag else "train")
                if self.step % self.cfg.log_every == 0 or self.step == stop:
                    self._log(meter, bar)
                if self.cfg.val_every and self.step % self.cfg.val_every == 0:
                    self._validate()
                    self.model.train()
                if self.step % self.cfg.ckpt_every == 0 and self.step < stop and not self.consecutive_nonfinite:
                    self._checkpoint()  # never during a non-finite streak: the last good one stays newest
                    _close(stream)
                    stream = self.data_factory(self.step)  # re-seeded at checkpoint boundaries
            status = "completed" if self.step >= self.cfg.max_steps else "stopped"
            self._checkpoint()
        except KeyboardInterrupt:
            status = "interrupted"
            log.warning("interrupted at step %d; writing a checkpoint", self.step)
            self._checkpoint()
        finally:
            _close(stream)
            bar.close()
            if self.writer is not None:
                self._write_hparams()
                self.writer.close()
        if status == "completed" and self.env.is_main:
            (self.save_model or checkpointing._default_save_model)(
                self.out / "model_final.safetensors", self.model, self.model_config,
                {"step": str(self.step), "kind": "final"})
        return TrainResult(self.step, status, self.nonfinite_total, self.last_ckpt, self.history)


def train(**kwargs: Any) -> TrainResult:
    """``Trainer(**kwargs).run()`` — see :class:`Trainer` for the arguments."""
    return Trainer(**kwargs).run()
