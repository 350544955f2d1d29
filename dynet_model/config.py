"""Model configurations: :class:`ModelConfig` (DyNet / PromptIR) and :class:`DSRIRConfig`; each rebuilds its network.

The defaults are the official DyNet / PromptIR hyper-parameters (dim 48, heads 1/2/4/8, GDFN
expansion 2.66, no conv bias, WithBias LayerNorm, 4 refinement blocks, 5 prompt components).
For ``arch="dynet"`` ``reuse`` is the default reuse-frequency vector (how many times each level's
single shared block is applied: encoder levels 1-3 + latent, mirrored in the decoder); for
``arch="promptir"`` it is the number of (unshared) blocks per level.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

ARCHS = ("dynet", "promptir")  # ModelConfig's archs; DSRIR has its own DSRIRConfig
ALL_ARCHS = ("dynet", "promptir", "dsrir")

DYNET_S = (2, 3, 3, 4)
DYNET_L = (4, 6, 6, 8)


@dataclass
class ModelConfig:
    arch: str = "dynet"
    in_channels: int = 3
    out_channels: int = 3
    dim: int = 48
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    layernorm_type: str = "WithBias"
    num_refinement_blocks: int = 4
    reuse: tuple[int, ...] = DYNET_L
    # prompt settings, ordered (level-2 skip, level-3 skip, latent) = official prompt1, prompt2, prompt3
    prompt_len: int = 5
    prompt_dims: tuple[int, ...] = (64, 128, 320)
    prompt_sizes: tuple[int, ...] = (64, 32, 16)
    prompt_heads: int = 4  # heads of the prompt-interaction transformer blocks (official: heads[2])

    def __post_init__(self) -> None:
        for name in ("heads", "reuse", "prompt_dims", "prompt_sizes"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.layernorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"layernorm_type must be 'WithBias' or 'BiasFree', got {self.layernorm_type!r}")
        if len(self.heads) != 4 or len(self.reuse) != 4:
            raise ValueError(f"heads and reuse need 4 entries, got {self.heads} / {self.reuse}")
        if any(r < 1 for r in self.reuse):
            raise ValueError(f"reuse entries must be >= 1, got {self.reuse}")
        if len(self.prompt_dims) != 3 or len(self.prompt_sizes) != 3:
            raise ValueError("prompt_dims and prompt_sizes need 3 entries (level-2, level-3, latent)")
        widths = [self.dim, 2 * self.dim, 4 * self.dim, 8 * self.dim]
        for c, h in zip(widths, self.heads):
            if c % h:
                raise ValueError(f"channels {c} not divisible by {h} heads")
        if (2 * self.dim) % self.heads[0]:
            raise ValueError("decoder level-1 width 2*dim must be divisible by heads[0]")
        for c, p in zip((2 * self.dim, 4 * self.dim, 8 * self.dim), self.prompt_dims):
            if (c + p) % self.prompt_heads:
                raise ValueError(f"prompt block width {c + p} not divisible by prompt_heads={self.prompt_heads}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown} (written by a newer version?)")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def tiny(cls, arch: str = "dynet") -> ModelConfig:
        """A test-size config of the same structure (a few thousand parameters, fast on CPU)."""
        return cls(arch=arch, dim=8, heads=(1, 1, 2, 2), num_refinement_blocks=1, reuse=(1, 2, 2, 2),
                   prompt_dims=(4, 8, 16), prompt_sizes=(8, 4, 2), prompt_heads=2)

    @classmethod
    def dynet(cls) -> ModelConfig:
        return cls(arch="dynet", reuse=DYNET_L)

    @classmethod
    def promptir(cls) -> ModelConfig:
        return cls(arch="promptir", reuse=DYNET_L)


@dataclass
class DSRIRConfig:
    """DSRIR's constructor arguments (defaults: the official network, 3,516,837 parameters).

    Its own dataclass because DSRIR shares no hyper-parameter with DyNet / PromptIR beyond the
    channel counts; files written before it existed stored a ``ModelConfig`` with ``arch="dsrir"``
    whose DyNet-only fields were never used: :func:`config_from_dict` reads them as this class.
    """

    arch: str = "dsrir"
    in_channels: int = 3
    out_channels: int = 3
    sn1_feats: int = 32
    sn2_feats: int = 48
    sn3_feats: int = 64
    feats_step1: int = 32
    feats_step2: int = 16
    kernel_size: int = 3
    reduction: int = 8
    bias: bool = False
    sn1_blocks: tuple[int, int, int] = (2, 2, 2)
    sn2_blocks: tuple[int, int] = (2, 4)
    sn3_groups: int = 4

    def __post_init__(self) -> None:
        if self.arch != "dsrir":
            raise ValueError(f"DSRIRConfig.arch must be 'dsrir', got {self.arch!r}")
        self.sn1_blocks = tuple(int(v) for v in self.sn1_blocks)
        self.sn2_blocks = tuple(int(v) for v in self.sn2_blocks)
        if len(self.sn1_blocks) != 3 or len(self.sn2_blocks) != 2:
            raise ValueError("sn1_blocks needs 3 entries and sn2_blocks 2")

    def network_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`dynet_model.dsrir.DSRIR`."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "arch"}

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DSRIRConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        legacy = set(data) & _MODELCONFIG_ONLY
        if legacy:  # an old ModelConfig(arch="dsrir"): only in/out_channels and bias reached DSRIR
            data = {k: v for k, v in data.items() if k not in legacy}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown DSRIRConfig keys {unknown} (written by a newer version?)")
        return cls(**data)


_MODELCONFIG_ONLY = {f.name for f in dataclasses.fields(ModelConfig)} - {f.name for f in dataclasses.fields(DSRIRConfig)}
AnyConfig = ModelConfig | DSRIRConfig


def config_from_dict(data: dict[str, Any]) -> AnyConfig:
    """The config of any network from its dict (``arch`` picks the class; old DSRIR dicts are read too)."""
    return DSRIRConfig.from_dict(data) if data.get("arch") == "dsrir" else ModelConfig.from_dict(data)


def config_from_json(text: str) -> AnyConfig:
    return config_from_dict(json.loads(text))


def default_config(arch: str) -> AnyConfig:
    """The paper-size config of ``arch`` (what an official checkpoint of that architecture holds)."""
    if arch == "dsrir":
        return DSRIRConfig()
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ALL_ARCHS}, got {arch!r}")
    return ModelConfig(arch=arch)
