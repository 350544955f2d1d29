"""Command-line configuration of ``python -m training.pretrain`` (one dataclass; ``--help`` lists it)."""

from __future__ import annotations

from dataclasses import dataclass, field


def _h(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class PretrainConfig:
    """Streaming dynamic pre-training of DyNet on WebDataset patch shards (paper §3.2)."""

    # data
    shards: list[str] = field(metadata=_h("patch shards: a folder with manifest.json (local or fsspec URL), a manifest "
                                          "path, brace patterns (shards/patches-{000000..000099}.tar), pipe: commands "
                                          "or http(s)/fsspec URLs"))
    out: str = field(metadata=_h("run folder: checkpoints/, log.jsonl, tb/, val/, model_final.safetensors"))
    val_shards: list[str] = field(default_factory=list,
                                  metadata=_h("held-out shard(s) for periodic validation (PSNR per variant + PNG grid)"))
    crop: int = field(default=128, metadata=_h("random crop size taken from each patch (paper: 128)"))
    batch_size: int = field(default=32, metadata=_h("batch size per process (paper: 32)"))
    workers: int = field(default=4, metadata=_h("DataLoader worker processes per rank (0 = load in the main process)"))
    shuffle_buffer: int = field(default=1000, metadata=_h("samples held in the shuffle buffer of each worker"))
    augment: bool = field(default=True, metadata=_h("random flips/90° rotations of each crop"))
    # corruption (paper: 50 % degraded + 30 % masked; levels are our documented choice)
    degrade_ratio: float = field(default=0.5, metadata=_h("fraction of the crop area degraded (paper: 0.5)"))
    mask_ratio: float = field(default=0.3, metadata=_h("further fraction of the crop area zero-masked, outside the "
                                                       "degraded area (paper: 0.3)"))
    degrade_block: int = field(default=32, metadata=_h("cell size of the grid the degraded area is chosen on"))
    mask_block: int = field(default=16, metadata=_h("MAE-style mask block size (divides --degrade-block)"))
    degradations: list[str] = field(default_factory=lambda: ["jpeg", "gaussian", "random"],
                                    metadata=_h("degradation kinds, one picked per sample: jpeg gaussian random"))
    jpeg_quality: tuple[int, int] = field(default=(10, 60), metadata=_h("JPEG quality range (uniform)"))
    gaussian_sigma: tuple[float, float] = field(default=(5.0, 50.0),
                                                metadata=_h("Gaussian noise σ range, 0-255 units (uniform)"))
    uniform_amplitude: tuple[float, float] = field(default=(10.0, 60.0),
                                                   metadata=_h("'random' kind, uniform noise amplitude range (0-255)"))
    saltpepper_density: tuple[float, float] = field(default=(0.02, 0.2),
                                                    metadata=_h("'random' kind, salt-and-pepper density range"))
    # model
    model_config: str | None = field(default=None, metadata=_h("YAML file of ModelConfig fields (default: DyNet "
                                                               "paper size)"))
    tiny: bool = field(default=False, metadata=_h("use ModelConfig.tiny() (tests / demo)"))
    variants: list[str] = field(default_factory=lambda: ["2,3,3,4", "4,6,6,8"],
                                metadata=_h("reuse vectors drawn with equal probability, one per step (names s / l "
                                            "allowed); default DyNet-S and DyNet-L"))
    # optimisation
    max_steps: int = field(default=1_000_000, metadata=_h("training length in steps (paper: 1M)"))
    stop_at_step: int | None = field(default=None, metadata=_h("stop (with a checkpoint) at this step without changing "
                                                                "the LR schedule; continue later with --resume"))
    lr: float = field(default=1e-4, metadata=_h("peak learning rate (paper: 1e-4)"))
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=_h("Adam betas (paper: 0.9 0.999)"))
    weight_decay: float = field(default=0.0, metadata=_h("weight decay (Adam, coupled)"))
    schedule: str = field(default="constant", metadata=_h("LR schedule after warm-up: constant | cosine"))
    warmup_steps: int = field(default=0, metadata=_h("linear warm-up steps"))
    min_lr: float = field(default=0.0, metadata=_h("final LR of the cosine schedule"))
    grad_clip: float = field(default=0.0, metadata=_h("clip the global gradient norm to this (0 = off)"))
    amp: str = field(default="bf16", metadata=_h("bf16 autocast on CUDA (never on CPU): bf16 | none"))
    seed: int = field(default=0, metadata=_h("seed of everything: weights, variant draw, data stream, corruption"))
    device: str = field(default="auto", metadata=_h("auto | cpu | cuda"))
    threads: int = field(default=0, metadata=_h("torch intra-op threads of the training process (0 = torch's "
                                                 "default); 1 avoids OpenMP spin-waiting on a busy CPU"))
    # logging / checkpoints
    log_every: int = field(default=50, metadata=_h("steps between log lines (JSONL, TensorBoard, tqdm postfix)"))
    ckpt_every: int = field(default=5000, metadata=_h("steps between checkpoints (also the data-stream reseed point)"))
    keep_last: int = field(default=3, metadata=_h("complete checkpoints kept"))
    val_every: int = field(default=5000, metadata=_h("steps between validations (needs --val-shards; 0 = never)"))
    val_samples: int = field(default=16, metadata=_h("validation crops taken from the held-out shards"))
    max_consecutive_nonfinite: int = field(default=20, metadata=_h("stop after this many non-finite steps in a row"))
    resume: bool = field(default=False, metadata=_h("continue from the latest complete checkpoint in OUT/checkpoints"))
    overwrite: bool = field(default=False, metadata=_h("discard the outputs of an earlier run in OUT (needed when OUT "
                                                       "holds a run and --resume is not given, or its settings differ)"))
    progress: bool = field(default=True, metadata=_h("tqdm progress bar"))
    tensorboard: bool = field(default=True, metadata=_h("write TensorBoard scalars to OUT/tb"))
