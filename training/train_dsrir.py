"""Train DSRIR (all-in-one or one task) with its official recipe, on the shared training loop.

    python -m training.vgg_weights install /path/to/vgg19-dcbb9e9d.pth      # once
    python -m training.make_lists --train-dir /data/aio --out-dir datasets/train
    python -m training.train_dsrir --train-dir /data/aio --mode all_in_one --out runs/dsrir_aio
    python -m training.train_dsrir ... --resume                              # continue the latest checkpoint
    python -m training.train_dsrir ... --val-dir data/val --val-every-epochs 5   # + OUT/model_best.safetensors

``--mode all_in_one|noise|rain|haze`` picks ``{lists_dir}/train_{mode}.csv`` (or ``--train-list``).
Recipe defaults (official train.py): AdamW (0.9, 0.999), weight decay 1e-4, lr 2e-4, 3 warm-up
epochs then cosine to 1e-6; progressive patches 128/160/192/256 with batches 16/14/12/8 switched
after epochs 135/238/314/347 (:mod:`training.dsrir.schedule`; derive other switch epochs with
``python -m training.epoch_chg``); loss :mod:`training.dsrir.loss`. The loop (:mod:`training.loop`)
counts steps: the schedule's epochs are turned into steps by :class:`training.dsrir.data.StepPlan`
(``floor(N / batch)`` steps per epoch), the warm-up into the steps of the first 3 epochs, and the
cosine runs per step rather than per epoch. Outputs: ``OUT/checkpoints/step_*/``, ``OUT/log.jsonl``
(with the three loss terms, epoch, patch and batch size), ``OUT/tb/``, ``OUT/model_final.safetensors``,
``OUT/config.yaml``; with ``--val-dir`` also ``OUT/model_best.safetensors`` + ``model_best.json``
(:mod:`training.dsrir.validation`: the official every-5-epochs selection, labelled ``validation`` or
``test-set``). Evaluate with ``python -m training.evaluate --checkpoint OUT/model_best.safetensors``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.cliconfig import parse_config, save_config
from common.stagefolder import StageRefused, refuse_exit
from dynet_model.build import build_model
from dynet_model.config import DSRIRConfig
from training.acceleration import Accelerator, AccelFlags
from training.dsrir.data import PairPatchDataset, StepPlan, progressive_batches
from training.dsrir.loss import DSRIRLossWeights, build_dsrir_loss
from training.dsrir.schedule import ProgressiveSchedule
from training.loop import LoopConfig, OptimConfig, StepResult, train
from training.make_lists import MODES, missing_files, read_pair_list
from training.runfolder import open_run_folder, run_settings

log = logging.getLogger(__name__)


@dataclass
class TrainDSRIRConfig(AccelFlags):
    """Train DSRIR on target/degraded CSV lists with the official progressive recipe."""

    train_dir: str = field(metadata={"help": "dataset root; list paths are relative to it"})
    out: str = field(metadata={"help": "run folder (checkpoints, logs, final model)"})
    mode: str = field(default="all_in_one", metadata={"help": "all_in_one | noise | rain | haze"})
    train_list: str | None = field(default=None, metadata={"help": "CSV list (default LISTS_DIR/train_{mode}.csv)"})
    lists_dir: str = field(default="datasets/train", metadata={"help": "folder of train_{mode}.csv lists"})
    patch_size: tuple[int, ...] = field(default=(128, 160, 192, 256), metadata={"flag": "--crop", "aliases": ["--patch-size"], "help": "training crop (patch) size per phase"})
    batch_size: tuple[int, ...] = field(default=(16, 14, 12, 8), metadata={"help": "batch size per phase"})
    epoch_chg: tuple[int, ...] = field(default=(135, 238, 314, 347), metadata={
        "help": "last epoch of each phase (the last one is the total number of epochs)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate (AdamW)"})
    min_lr: float = field(default=1e-6, metadata={"help": "cosine floor"})
    warmup_epochs: int = field(default=3, metadata={"help": "linear warm-up epochs"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    w_uncertainty: float = field(default=1.0, metadata={"help": "weight of the uncertainty-weighted L1 term"})
    variance_penalty: float = field(default=2.0, metadata={"help": "coefficient of mean(log-variance) in it"})
    w_psnr: float = field(default=1.0, metadata={"help": "weight of the PSNR loss"})
    psnr_aux: float = field(default=0.5, metadata={"help": "weight of the stage-1/2 PSNR losses (mean) inside it"})
    w_contrast: float = field(default=0.2, metadata={"help": "weight of the VGG19 positive contrastive term"})
    positive_weights: tuple[float, ...] = field(default=(1.0, 0.25, 0.125), metadata={
        "help": "contrastive positives: gt, stage-2, stage-1"})
    layer_weights: tuple[float, ...] = field(default=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), metadata={
        "help": "VGG layer weights relu1_1..relu5_1"})
    vgg_verify_hash: bool = field(default=True, metadata={
        "help": "require torchvision's ImageNet VGG19 file (see python -m training.vgg_weights)"})
    sigma_max: int = field(default=55, metadata={"help": "denoising pairs: sigma uniform in 0..sigma_max"})
    workers: int = field(default=6, metadata={"help": "data loader worker processes"})
    seed: int = field(default=1234, metadata={"help": "seed of data order, crops, noise and init"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:i]"})
    amp: str = field(default="none", metadata={"help": "none: fp32 as the official recipe | bf16: autocast on CUDA (faster; not the official recipe)"})
    val_dir: str | None = field(default=None, metadata={"help": "validation sets (denoise/bsd68, derain/Rain100L, dehaze, as prepare_data's test/ layout); keeps OUT/model_best.safetensors"})
    val_every_epochs: int = field(default=5, metadata={"help": "validate at the end of every N-th epoch (official 5)"})
    val_is_test_set: bool = field(default=False, metadata={"help": "label the selection 'test-set' (the official DSRIR practice: --val-dir is the test set; optimistic scores); detected for prepare_data test folders"})
    val_protocol: str = field(default="dsrir", metadata={"help": "scoring of the validation: dsrir (its test.py: crop x8, Rain100L on Y) | dynet"})
    val_sigmas: list[int] = field(default_factory=lambda: [15, 25, 50], metadata={"help": "denoise validation noise levels"})
    val_max_images: int = field(default=0, metadata={"help": "first N images per validation set (0 = all)"})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop after this many steps (the schedule still spans all epochs)"})
    resume: bool = field(default=False, metadata={"help": "continue from the latest complete checkpoint"})
    overwrite: bool = field(default=False, metadata={
        "help": "discard the outputs of an earlier run in OUT (needed when OUT holds a run and --resume is not "
                "given, or its settings differ)"})
    ckpt_every: int = field(default=2000, metadata={"help": "steps between checkpoints"})
    keep_last: int = field(default=3, metadata={"help": "checkpoints kept"})
    log_every: int = field(default=50, metadata={"help": "steps between log lines"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar"})


def _loss_weights(cfg: TrainDSRIRConfig) -> DSRIRLossWeights:
    return DSRIRLossWeights(uncertainty=cfg.w_uncertainty, variance_penalty=cfg.variance_penalty,
                            psnr=cfg.w_psnr, psnr_aux=cfg.psnr_aux, contrast=cfg.w_contrast,
                            positive_weights=tuple(cfg.positive_weights), layer_weights=tuple(cfg.layer_weights))


def _read_list(cfg: TrainDSRIRConfig):
    path = Path(cfg.train_list or Path(cfg.lists_dir) / f"train_{cfg.mode}.csv")
    if not path.is_file():
        raise FileNotFoundError(f"training list {path} not found; write it with python -m training.make_lists")
    entries = read_pair_list(path)
    missing = missing_files(entries, Path(cfg.train_dir))
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} listed files missing under {cfg.train_dir}: {missing[:5]}")
    log.info("%s: %d pairs", path, len(entries))
    return entries


def run(cfg: TrainDSRIRConfig):
    if cfg.mode not in MODES:
        raise ValueError(f"--mode must be one of {MODES}, got {cfg.mode!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("training.train_dsrir runs in a single process; do not launch it with torchrun")
    from training.distributed import DistEnv, resolve_device

    env = DistEnv(device=resolve_device(cfg.device))
    schedule = ProgressiveSchedule(patch_sizes=tuple(cfg.patch_size), batch_sizes=tuple(cfg.batch_size),
                                   epoch_chg=tuple(cfg.epoch_chg), base_lr=cfg.lr, min_lr=cfg.min_lr,
                                   warmup_epochs=cfg.warmup_epochs)
    entries = _read_list(cfg)
    plan = StepPlan(schedule, len(entries))
    plan.validate()
    model_cfg = DSRIRConfig()
    validate = _make_validator(cfg, plan, model_cfg)  # --val-dir checked before any work
    loss_fn = build_dsrir_loss(_loss_weights(cfg), verify_hash=cfg.vgg_verify_hash).to(env.device)
    dataset = PairPatchDataset(entries=entries, train_dir=cfg.train_dir, seed=cfg.seed, sigma_max=cfg.sigma_max)
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg)
    last: dict[str, float] = {}

    def step_fn(net, batch, step):
        terms = loss_fn(net(batch["lq"], return_stages=True), batch["gt"], batch["lq"])
        last.update(terms.as_floats())
        epoch, _ = plan.locate(step)
        last.update(epoch=epoch, patch=int(batch["lq"].shape[-1]), batch=int(batch["lq"].shape[0]))
        return StepResult(loss=terms.total, tag=f"p{batch['lq'].shape[-1]}")

    def data_factory(start_step: int):
        return progressive_batches(dataset, plan, start_step=start_step, seed=cfg.seed, workers=cfg.workers,
                                   pin_memory=env.device.startswith("cuda"))

    warmup_steps = plan.epoch_starts[cfg.warmup_epochs]
    optim = OptimConfig(name="adamw", lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
                        schedule="cosine", warmup_steps=warmup_steps, min_lr=cfg.min_lr)
    loop = LoopConfig(out_dir=cfg.out, max_steps=plan.total_steps, stop_at_step=cfg.max_steps,
                      log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, keep_last=cfg.keep_last,
                      amp=cfg.amp, progress=cfg.progress, seed=cfg.seed,
                      val_every=1 if validate else 0)  # the validator itself runs only at the chosen epoch ends
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(cfg.out) / "config.yaml")
    log.info("DSRIR %s: %d pairs, %d epochs = %d steps (warm-up %d)", cfg.mode, len(entries),
             schedule.total_epochs, plan.total_steps, warmup_steps)
    return train(model=model, model_config=model_cfg, data_factory=data_factory, step_fn=step_fn, optim=optim,
                 loop=loop, env=env, resume=cfg.resume, extra_metrics=lambda: dict(last), validate=validate,
                 accelerator=Accelerator(cfg, model_config=model_cfg, device=env.device, amp=cfg.amp))


def _make_validator(cfg: TrainDSRIRConfig, plan: StepPlan, model_cfg: DSRIRConfig):
    if not cfg.val_dir:
        return None
    from training.dsrir import validation as val
    from training.evaluation.protocols import get_protocol

    sets, detected = val.collect_val_sets(cfg.val_dir, cfg.mode, max_images=cfg.val_max_images)
    selection = "test-set" if cfg.val_is_test_set or detected else "validation"
    log.warning("validation every %d epochs on %s; %s", cfg.val_every_epochs, cfg.val_dir, val.SELECTION_LABELS[selection])
    selector = val.BestSelector(cfg.out, model_config=model_cfg, selection=selection, resume=cfg.resume)
    return val.EpochValidator(epoch_ends=val.epoch_end_steps(plan.epoch_starts, cfg.val_every_epochs), sets=sets,
                              protocol=get_protocol(cfg.val_protocol), sigmas=list(cfg.val_sigmas), selector=selector)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(TrainDSRIRConfig, argv)
    try:
        # --max-steps is a stop point here (the schedule spans all epochs): it may change on resume;
        # the validation picks model_best, so its flags are settings
        settings = run_settings(cfg, also_exclude=("max_steps", "ckpt_every", "vgg_verify_hash"),
                                keep=("val_max_images",))
        with open_run_folder(cfg.out, "train_dsrir", settings, resume=cfg.resume, overwrite=cfg.overwrite):
            result = run(cfg)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    except (FileNotFoundError, ValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"{result.status} at step {result.final_step}; last checkpoint {result.last_checkpoint}")
    best = Path(cfg.out) / "model_best.json"
    if cfg.val_dir and best.is_file():
        rec = json.loads(best.read_text())
        print(f"model_best: epoch {rec['epoch']}, average PSNR {rec['score']:.2f} [{rec['selection_note']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
