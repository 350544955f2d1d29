"""All-in-one or single-task fine-tuning (the PromptIR / DyNet recipe) on the shared training loop.

    python -m training.finetune --init runs/pretrain/model_final.safetensors --out runs/ft \\
        --tasks denoise,derain,dehaze --denoise-dirs Train/Denoise --derain-dir Train/Derain \\
        --dehaze-dir Train/Dehaze                     # official recipe: DyNet-L, official task mix, fp32
    python -m training.finetune ... --resume        # continue from the newest complete checkpoint

Defaults follow the official recipe (AdamW 2e-4, L1 on the clamped output, patch 128, 7 non-identity
flips/rotations, linear warm-up 15 epochs then cosine to 150, stopped at 120); ``--max-steps`` switches
to a step-based schedule; ``--task-mix official`` (default) reproduces the official epoch composition
(:mod:`training.task_mix`, recorded in ``OUT/epoch_composition.json``). See
docs/training-finetune-evaluate.md and docs/reproduce-table1.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from common.atomic import atomic_write_json
from common.cliconfig import config_to_dict, parse_config, save_config
from common.stagefolder import StageRefused, refuse_exit
from training import restoration_data as rd
from training import task_mix
from training.acceleration import Accelerator, AccelFlags
from training.augment import draw_depth
from training.distributed import DistEnv, cleanup, init_distributed
from training.finetune_schedule import Schedule, resolve_schedule
from training.loop import LoopConfig, OptimConfig, StepResult, Trainer
from training.runfolder import open_run_folder, run_settings

log = logging.getLogger("training.finetune")


@dataclass
class FinetuneConfig(AccelFlags):
    """Fine-tune DyNet / PromptIR on denoise / derain / dehaze (any subset), all-in-one or single-task."""
    out: str = field(metadata={"help": "run folder: checkpoints/, log.jsonl, tb/, model_final.safetensors"})
    init: str | None = field(default=None, metadata={"help": "initial weights, any checkpoint: our .safetensors (pre-training model_final / any save_model file, or a checkpoints/step_N folder) or an official .ckpt/.pth (via the key map, see --arch); omitted = from scratch"})
    arch: str | None = field(default=None, metadata={"help": "dynet | promptir: the architecture of an official --init (default: detected from its keys) or of a from-scratch run (default: dynet); ours carry their own config"})
    tiny_model: bool = field(default=False, metadata={"flag": "--tiny", "aliases": ["--tiny-model"], "help": "use ModelConfig.tiny(arch) when training from scratch (smoke tests only)"})
    tasks: list[str] = field(default_factory=lambda: ["denoise,derain,dehaze"], metadata={"help": "tasks to train, any subset of denoise derain dehaze deblur lowlight (comma or space separated; all five = the 5-task benchmark)"})
    task_mix: str = field(default="official", metadata={"help": "official: the official epoch (each sigma list = clean x3, Rain100L x120, OTS x1, GoPro x5, LOL x20, shuffled per epoch; 32.5/16.9/50.6 %% on the official 3-task sets) | uniform: task drawn uniformly per sample"})
    denoise_dirs: list[str] = field(default_factory=list, metadata={"help": "folders of clean images for denoise (e.g. BSD400 WED), searched recursively"})
    derain_dir: str | None = field(default=None, metadata={"help": "derain pairs: {rainy/rain-N, gt/norain-N} (PromptIR Train/Derain) or {input,target}"})
    dehaze_dir: str | None = field(default=None, metadata={"help": "dehaze pairs: {synthetic/partK/ID_*.jpg, original/ID.*} (RESIDE OTS) or {input,target}"})
    deblur_dir: str | None = field(default=None, metadata={"help": "deblur pairs (5-task): {blur,sharp} or {input,target}, same file names (GoPro train)"})
    lowlight_dir: str | None = field(default=None, metadata={"help": "low-light pairs (5-task): {low,gt}, {low,high} or {input,target}, same file names (LOL-v1 our485)"})
    sigmas: list[float] = field(default_factory=lambda: [15.0, 25.0, 50.0], metadata={"help": "denoise noise levels (one drawn per sample)"})
    patch_size: int = field(default=128, metadata={"flag": "--crop", "aliases": ["--patch-size"], "help": "training crop (patch) size"})
    batch_size: int = field(default=8, metadata={"help": "patches per step per process (official: 8 per GPU x 4 GPUs)"})
    variant: str = field(default="l", metadata={"help": "DyNet depth trained: l (official: train.py fine-tunes DyNet-L, test.py runs S from the same weights) | s | dynamic (S or L drawn per step, as pre-training: both depths see fine-tuning gradients) | 'f1,f2,f3,f4'"})
    lr: float = field(default=2e-4, metadata={"help": "AdamW peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (torch default, as the official optim.AdamW(lr=2e-4))"})
    min_lr: float = field(default=0.0, metadata={"help": "cosine floor"})
    epochs: int = field(default=150, metadata={"help": "schedule length in epochs (cosine reaches min_lr here; official 150)"})
    warmup_epochs: int = field(default=15, metadata={"help": "linear warm-up epochs (official 15)"})
    stop_epoch: int | None = field(default=120, metadata={"help": "stop training after this epoch without changing the schedule (official 120)"})
    epoch_samples: int = field(default=0, metadata={"help": "samples per epoch of the LR schedule; 0 = the official epoch: 3x clean images per sigma + 120x rain pairs + 1x haze pairs (+5x GoPro, 20x LOL)"})
    max_steps: int = field(default=0, metadata={"help": ">0: step-based schedule of this many steps (overrides the epoch flags)"})
    warmup_steps: int = field(default=0, metadata={"help": "warm-up steps of the step-based schedule"})
    stop_at_step: int | None = field(default=None, metadata={"help": "step-based: stop early at this step (checkpoint written)"})
    grad_clip: float = field(default=0.0, metadata={"help": "max grad norm (0 = off, as official)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling, crops, noise and the variant draw (every batch is a function of seed and step)"})
    num_workers: int = field(default=4, metadata={"flag": "--workers", "aliases": ["--num-workers"], "help": "DataLoader worker processes"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    amp: str = field(default="none", metadata={"help": "none: fp32 as the official recipe | bf16: autocast on CUDA (about 1.9x faster steps on an H200, issue 15; not the official recipe)"})
    log_every: int = field(default=50, metadata={"help": "steps between log lines (log.jsonl, TensorBoard)"})
    ckpt_every: int = field(default=2000, metadata={"help": "steps between train-state checkpoints"})
    keep_last: int = field(default=3, metadata={"help": "complete checkpoints kept"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest complete checkpoint under OUT/checkpoints"})
    overwrite: bool = field(default=False, metadata={"help": "discard the outputs of an earlier run in OUT (needed when OUT holds a run and --resume is not given, or its settings differ)"})
    val_every: int = field(default=0, metadata={"help": "steps between validations (0 = none) on the --val-* sets"})
    val_sots: str | None = field(default=None, metadata={"help": "validation SOTS folder (evaluate's layout)"})
    val_rain100l: str | None = field(default=None, metadata={"help": "validation Rain100L folder"})
    val_bsd68: str | None = field(default=None, metadata={"help": "validation clean-image folder (scored at --sigmas)"})
    val_gopro: str | None = field(default=None, metadata={"help": "validation GoPro folder (5-task; evaluate's --gopro layout)"})
    val_lol: str | None = field(default=None, metadata={"help": "validation LOL folder (5-task; evaluate's --lol layout)"})
    val_max_images: int = field(default=10, metadata={"help": "images per validation set"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar"})


def _reuse_for(variant: str) -> tuple[int, ...] | None:
    if variant.lower() == "dynamic":
        return None
    from dynet_model.variants import parse_reuse
    return tuple(parse_reuse(variant))


def make_step_fn(*, arch: str, variant: str, seed: int):
    """L1 on the clamped output; DyNet runs at a fixed reuse vector or S/L drawn per step."""
    from dynet_model.variants import parse_reuse
    fixed = _reuse_for(variant) if arch == "dynet" else None
    s, l = tuple(parse_reuse("s")), tuple(parse_reuse("l"))

    def step_fn(model, batch: dict, step: int) -> StepResult:
        tag = ""
        if arch != "dynet":
            out = model(batch["lq"])
        else:
            if fixed is None:  # same draw on every rank, the one pre-training uses: a function of (seed, step)
                reuse = draw_depth((s, l), seed, step)
                tag = "S" if reuse == s else "L"
            else:
                reuse = fixed
            out = model(batch["lq"], reuse=reuse)
        loss = F.l1_loss(out.float().clamp(0.0, 1.0), batch["gt"].float())  # fp32 loss under bf16 autocast
        return StepResult(loss=loss, tag=tag, samples=int(batch["lq"].shape[0]))
    return step_fn


@dataclass(frozen=True)
class StepIndices:
    """Sample indices of steps [start, stop) for one rank, lazily (the full schedule is millions)."""
    start: int
    stop: int
    batch_size: int
    rank: int = 0
    world_size: int = 1

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for s in range(self.start, self.stop):
            first = (s * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


def make_data_factory(dataset: rd.TaskMixDataset, *, batch_size: int, num_workers: int, env: DistEnv,
                      stop_step: int):
    """Stream for steps start, start+1, ...: step s / rank r uses sample indices (s*W + r)*B + [0, B)."""
    from torch.utils.data import DataLoader

    def factory(start_step: int) -> Iterator[dict]:
        indices = StepIndices(start_step, stop_step, batch_size=batch_size, rank=env.rank,
                              world_size=env.world_size)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers,
                            pin_memory=env.device.startswith("cuda"), drop_last=False)

        def gen():
            yield from loader
        return gen()
    return factory


def build_finetune_model(cfg: FinetuneConfig):
    """(model, config): from the resumed checkpoint's config, ``--init`` (any checkpoint), or tiny/full scratch."""
    from dynet_model.build import build_model
    from dynet_model.config import ModelConfig, config_from_dict
    from dynet_model.loading import load_any
    from training.checkpointing import latest_checkpoint

    latest = latest_checkpoint(Path(cfg.out) / "checkpoints") if cfg.resume else None
    if latest is not None:  # weights come from the checkpoint; its config rebuilds the model
        import json
        mcfg = config_from_dict(json.loads((latest / "state.json").read_text())["model_config"])
        return build_model(mcfg), mcfg
    if cfg.init:
        loaded = load_any(cfg.init, arch=cfg.arch)
        log.info("initialised from %s%s", loaded.path,
                 f" (skipped {len(loaded.skipped)} unused official keys)" if loaded.skipped else "")
        return loaded.model.train(), loaded.config
    arch = cfg.arch or "dynet"
    log.warning("no --init: fine-tuning starts from random weights")
    mcfg = ModelConfig.tiny(arch) if cfg.tiny_model else ModelConfig(arch=arch)
    return build_model(mcfg), mcfg


def val_grid(sets, restorer, sigma: float, side: int = 128):
    """input | output | target of the first validation image (centre crop), H×W×3 uint8 for TensorBoard."""
    import numpy as np

    if sets.denoise:
        clean = rd.read_rgb(next(iter(sets.denoise.values()))[0])
        lq = rd.add_gaussian_noise(clean, sigma, np.random.RandomState(0))
    else:
        pair = next(iter(sets.pairs.values()))[1][0]
        clean, lq = rd.read_rgb(pair.gt), rd.read_rgb(pair.lq)
    h, w = min(clean.shape[0], lq.shape[0], side), min(clean.shape[1], lq.shape[1], side)
    y0, x0 = (clean.shape[0] - h) // 2, (clean.shape[1] - w) // 2
    clean, lq = clean[y0:y0 + h, x0:x0 + w], lq[y0:y0 + h, x0:x0 + w]
    device = next(restorer.model.parameters()).device
    x = torch.from_numpy(lq.astype("float32") / 255.0).permute(2, 0, 1)[None].to(device)
    out = restorer(x)[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.concatenate([lq, out, clean], axis=1)


def make_validate(cfg: FinetuneConfig, arch: str):
    """Periodic validation with training.evaluate's protocol on the --val-* sets (None if none given)."""
    if not cfg.val_every or not (cfg.val_sots or cfg.val_rain100l or cfg.val_bsd68 or cfg.val_gopro or cfg.val_lol):
        return None
    from training.evaluate import collect_test_sets, evaluate
    from training.evaluation.protocols import get_protocol
    from training.evaluation.restorers import Restorer

    sets = collect_test_sets(bsd68=cfg.val_bsd68, urban100=None, rain100l=cfg.val_rain100l, sots=cfg.val_sots,
                             max_images=cfg.val_max_images, gopro=cfg.val_gopro, lol=cfg.val_lol)
    benchmark = "5task" if cfg.val_gopro or cfg.val_lol else "3task"
    if arch != "dynet":
        variants = {"": None}
    elif cfg.variant.lower() == "dynamic":
        variants = {"S/": _reuse_for("s"), "L/": _reuse_for("l")}
    else:
        variants = {"": _reuse_for(cfg.variant)}

    def validate(model, step: int) -> dict:
        model.eval()
        out = {}
        for prefix, reuse in variants.items():
            res = evaluate(Restorer(name=f"step{step}", model=model, arch=arch, reuse=reuse), sets,
                           protocol=get_protocol("dynet"), sigmas=[int(s) for s in cfg.sigmas],
                           device=str(next(model.parameters()).device), benchmark=benchmark)
            for col, v in res["columns"].items():
                out[f"{prefix}psnr/{col}"], out[f"{prefix}ssim/{col}"] = v["psnr"], v["ssim"]
            out[f"{prefix}psnr/average"] = res["benchmark_average"]["psnr"]
        first = next(iter(variants.values()))
        validate.last_grid = val_grid(sets, Restorer(name="grid", model=model, arch=arch, reuse=first),
                                      cfg.sigmas[0])  # the loop puts it in TensorBoard
        return out
    return validate


def main(argv: list[str] | None = None):
    cfg = parse_config(FinetuneConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tasks = rd.parse_tasks(cfg.tasks)
    sources = rd.collect_train_sources(tasks, denoise_dirs=cfg.denoise_dirs, derain_dir=cfg.derain_dir,
                                       dehaze_dir=cfg.dehaze_dir, deblur_dir=cfg.deblur_dir,
                                       lowlight_dir=cfg.lowlight_dir)  # validated before any model work
    comp = task_mix.official_composition(sources.sizes(), tasks, cfg.sigmas, mix=cfg.task_mix)
    env = init_distributed(cfg.device)
    try:
        settings = {**run_settings(cfg, also_exclude=("ckpt_every",)), "tasks": tasks}  # "a,b" == "a b"
        with open_run_folder(cfg.out, "finetune", settings, resume=cfg.resume, overwrite=cfg.overwrite, env=env):
            return _run(cfg, env, tasks, sources, comp)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    finally:
        cleanup(env)


def _run(cfg: FinetuneConfig, env: DistEnv, tasks: list[str], sources: rd.TrainSources,
         comp: task_mix.EpochComposition):
    """Build the schedule, model, data and loop, and train (inside the locked run folder)."""
    samples = cfg.epoch_samples or comp.total
    sched: Schedule = resolve_schedule(
        max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, stop_at_step=cfg.stop_at_step,
        epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, stop_epoch=cfg.stop_epoch,
        epoch_samples=samples, global_batch=cfg.batch_size * env.world_size)
    torch.manual_seed(cfg.seed)  # a from-scratch init is reproducible too
    model, mcfg = build_finetune_model(cfg)
    if env.is_main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.out) / "finetune_config.yaml")
        atomic_write_json(Path(cfg.out) / "finetune_data.json",
                          {"tasks": tasks, "sizes": sources.sizes(), "epoch_samples": samples,
                           "schedule": vars(sched), "model_config": mcfg.to_dict()})
        atomic_write_json(Path(cfg.out) / "epoch_composition.json", comp.to_dict())
    log.info("tasks %s, data %s, %s mix %s, schedule %s", tasks, sources.sizes(), cfg.task_mix,
             {t: round(f, 4) for t, f in comp.fractions().items()}, sched)
    dataset = rd.TaskMixDataset(sources, tasks=tasks, sigmas=cfg.sigmas, patch_size=cfg.patch_size, seed=cfg.seed,
                                mix=task_mix.make_mix(comp, tasks=tasks, sizes=sources.sizes(), seed=cfg.seed))
    stop = sched.stop_at_step or sched.max_steps
    trainer = Trainer(
        model=model, model_config=mcfg, env=env, resume=cfg.resume,
        data_factory=make_data_factory(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                       env=env, stop_step=stop),
        step_fn=make_step_fn(arch=mcfg.arch, variant=cfg.variant, seed=cfg.seed),
        optim=OptimConfig(name="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, schedule="cosine",
                          warmup_steps=sched.warmup_steps, min_lr=cfg.min_lr, grad_clip=cfg.grad_clip),
        loop=LoopConfig(out_dir=cfg.out, max_steps=sched.max_steps, stop_at_step=sched.stop_at_step,
                        log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, keep_last=cfg.keep_last,
                        val_every=cfg.val_every, amp=cfg.amp, progress=cfg.progress, seed=cfg.seed,
                        hparams=config_to_dict(cfg)),
        validate=make_validate(cfg, mcfg.arch),
        accelerator=Accelerator(cfg, model_config=mcfg, device=env.device, amp=cfg.amp))
    result = trainer.run()
    log.info("finished: %s at step %d (last checkpoint %s)", result.status, result.final_step, result.last_checkpoint)
    return result

if __name__ == "__main__":
    main()
