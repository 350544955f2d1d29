"""``python -m training.pretrain --shards shards/ --out runs/NAME`` — streaming dynamic pre-training.

Each step draws ONE reuse vector from ``--variants`` (default DyNet-S 2,3,3,4 and DyNet-L 4,6,6,8,
equal probability, a pure function of (seed, step)) and runs one forward/backward of the shared
weights with an L1 loss against the clean crop. Runs under ``torchrun`` (DDP) or as one process.
See docs/training-pretrain.md.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from common.cliconfig import config_to_dict, parse_config, save_config
from common.stagefolder import StageRefused, refuse_exit
from dynet_model.build import build_model
from dynet_model.config import ModelConfig
from dynet_model.variants import parse_reuse
from training.acceleration import Accelerator
from training.augment import draw_depth_index
from training.data import (
    BatchStream,
    CropTooLarge,
    EmptyStreamError,
    ShardsNotFound,
    build_pipeline,
    check_crop,
    load_val_set,
    resolve_shards,
)
from training.degrade import DegradeConfig
from training.distributed import DistEnv, cleanup, init_distributed
from training.loop import LoopConfig, NonFiniteLossError, OptimConfig, StepResult, train
from training.params import PretrainConfig
from training.runfolder import open_run_folder, run_settings
from training.validation import Validator, variant_name

log = logging.getLogger("training.pretrain")


@dataclass
class DynamicDepthStep:
    """The loop's ``step_fn``: pick a reuse vector from (seed, step), forward, L1 to the clean crop."""

    variants: list[tuple[int, ...]]
    seed: int = 0

    def pick(self, step: int) -> int:
        return draw_depth_index(len(self.variants), self.seed, step)

    def __call__(self, model: torch.nn.Module, batch: dict, step: int) -> StepResult:
        reuse = self.variants[self.pick(step)]
        restored = model(batch["lq"], reuse=reuse)
        loss = F.l1_loss(restored.float(), batch["gt"].float())
        return StepResult(loss=loss, tag=variant_name(reuse), samples=int(batch["lq"].shape[0]))


class PretrainData:
    """The loop's ``data_factory``: a fresh, (seed, rank, worker, start)-seeded stream per call."""

    def __init__(self, cfg: PretrainConfig, env: DistEnv) -> None:
        self.cfg, self.env = cfg, env
        self.shards = resolve_shards(cfg.shards)
        check_crop(self.shards, cfg.crop)  # at start-up: a crop larger than the patches never yields a batch
        self.degrade = degrade_config(cfg)
        self.stream: BatchStream | None = None
        self.skipped_before = 0

    def __call__(self, start_step: int) -> BatchStream:
        if self.stream is not None:
            self.skipped_before += self.stream.skipped
        pipeline = build_pipeline(self.shards.urls, crop=self.cfg.crop, batch_size=self.cfg.batch_size,
                                  degrade=self.degrade, seed=self.cfg.seed, rank=self.env.rank,
                                  world_size=self.env.world_size, stream_start=start_step,
                                  shuffle_buffer=self.cfg.shuffle_buffer, augment=self.cfg.augment)
        self.stream = BatchStream(pipeline, num_workers=self.cfg.workers,
                                  pin_memory=self.env.device.startswith("cuda"))
        return self.stream

    def metrics(self) -> dict:
        skipped = self.skipped_before + (self.stream.skipped if self.stream else 0)
        return {"skipped_samples": skipped}


def degrade_config(cfg: PretrainConfig) -> DegradeConfig:
    return DegradeConfig(degrade_ratio=cfg.degrade_ratio, mask_ratio=cfg.mask_ratio, degrade_block=cfg.degrade_block,
                         mask_block=cfg.mask_block, kinds=tuple(cfg.degradations),
                         jpeg_quality=tuple(cfg.jpeg_quality), gaussian_sigma=tuple(cfg.gaussian_sigma),
                         uniform_amplitude=tuple(cfg.uniform_amplitude),
                         saltpepper_density=tuple(cfg.saltpepper_density))


def model_config_from(cfg: PretrainConfig) -> ModelConfig:
    if cfg.tiny and cfg.model_config:
        raise ValueError("give either --tiny or --model-config, not both")
    if cfg.tiny:
        mcfg = ModelConfig.tiny("dynet")
    elif cfg.model_config:
        mcfg = ModelConfig.from_dict(yaml.safe_load(Path(cfg.model_config).read_text()) or {})
    else:
        mcfg = ModelConfig.dynet()
    if mcfg.arch != "dynet":
        raise ValueError(f"dynamic pre-training needs arch 'dynet' (shared, reusable blocks), got {mcfg.arch!r}")
    return mcfg


def _validator(cfg: PretrainConfig, variants: list[tuple[int, ...]]) -> Validator | None:
    if not cfg.val_shards or cfg.val_every <= 0:
        return None
    val = load_val_set(cfg.val_shards, count=cfg.val_samples, crop=cfg.crop, degrade=degrade_config(cfg),
                       seed=cfg.seed)
    return Validator(lq=val["lq"], gt=val["gt"], variants=variants, out_dir=Path(cfg.out) / "val")


def run(cfg: PretrainConfig, env: DistEnv):
    """Build everything from ``cfg`` and train; returns :class:`training.loop.TrainResult`."""
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    mcfg = model_config_from(cfg)
    variants = [parse_reuse(v) for v in cfg.variants]
    model = build_model(mcfg)
    data = PretrainData(cfg, env)
    if env.is_main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.out) / "config.yaml")
        total = data.shards.total_samples
        epoch = f"{total} samples = {total / (cfg.batch_size * env.world_size):.0f} steps" if total else "unknown"
        log.info("%d shards, one epoch: %s; %d parameters; variants %s; %d rank(s) on %s",
                 len(data.shards.urls), epoch, sum(p.numel() for p in model.parameters()),
                 [variant_name(v) for v in variants], env.world_size, env.device)
    optim = OptimConfig(name="adam", lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                        schedule=cfg.schedule, warmup_steps=cfg.warmup_steps, min_lr=cfg.min_lr,
                        grad_clip=cfg.grad_clip)
    loop = LoopConfig(out_dir=cfg.out, max_steps=cfg.max_steps, stop_at_step=cfg.stop_at_step,
                      log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, keep_last=cfg.keep_last,
                      val_every=cfg.val_every, max_consecutive_nonfinite=cfg.max_consecutive_nonfinite,
                      amp=cfg.amp, progress=cfg.progress, tensorboard=cfg.tensorboard, seed=cfg.seed,
                      hparams=config_to_dict(cfg))
    return train(model=model, model_config=mcfg, data_factory=data, step_fn=DynamicDepthStep(variants, cfg.seed),
                 optim=optim, loop=loop, env=env, resume=cfg.resume,
                 validate=_validator(cfg, variants) if env.is_main else None, extra_metrics=data.metrics,
                 accelerator=Accelerator(cfg, model_config=mcfg, device=env.device, amp=cfg.amp))


def pretrain_settings(cfg: PretrainConfig) -> dict:
    """What decides the run folder's content; ``--max-steps`` may grow on resume under a constant LR."""
    return run_settings(cfg, also_exclude=("max_steps",) if cfg.schedule == "constant" else ())


def _sigterm_to_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_config(PretrainConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:  # before any process group, model or run folder: a typo in --shards stops here
        for specs in (cfg.shards, cfg.val_shards):
            if specs:
                resolve_shards(specs)
    except ShardsNotFound as exc:
        log.error("%s", exc)
        sys.exit(2)
    previous = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)  # preemption → checkpoint, like Ctrl-C
    env = init_distributed(cfg.device)
    try:
        with open_run_folder(cfg.out, "pretrain", pretrain_settings(cfg), resume=cfg.resume,
                             overwrite=cfg.overwrite, env=env):
            result = run(cfg, env)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    except (NonFiniteLossError, CropTooLarge) as exc:
        log.error("%s", exc)
        sys.exit(2)
    except EmptyStreamError as exc:
        log.error("the training stream stopped: %s", exc)
        sys.exit(1)
    finally:
        cleanup(env)
        signal.signal(signal.SIGTERM, previous)
    if env.is_main:
        log.info("%s at step %d (%d non-finite steps skipped); last checkpoint %s", result.status,
                 result.final_step, result.nonfinite_skipped, result.last_checkpoint)


if __name__ == "__main__":
    main()
