"""Key map from the official DyNet / PromptIR state dicts onto this package's module names.

Official checkpoints name modules after the original code (``encoder_level1``, ``noise_level3``,
``prompt1`` ...); ours use shorter names. The map is explicit: a table of top-level prefixes and a
table of in-block renames. Keys of modules the official code creates but never calls are skipped
(and reported); any key that matches no rule raises, so a checkpoint of a different architecture
cannot load silently.

Official -> ours (prompt modules: prompt3/noise_level3/reduce_noise_level3 act on the latent,
prompt2/noise_level2/reduce_noise_level2 on level 3, prompt1/noise_level1/reduce_noise_level1 on level 2)::

    patch_embed.proj -> embed           encoder_levelN -> encN      latent -> latent
    down1_2.body.0 -> down1.conv        up4_3.body.0 -> up3.conv    decoder_levelN -> decN
    reduce_chan_level3 -> fuse3         refinement -> refine        output -> head
    prompt3 -> prompt_latent.gen        noise_level3 -> prompt_latent.block
    reduce_noise_level3 -> prompt_latent.reduce   (likewise prompt2/1 -> prompt_level3/2)
"""

from __future__ import annotations

import torch

UNUSED_PREFIXES = {
    "dynet": ("reduce_noise_channel_1.", "reduce_noise_channel_2.", "reduce_noise_channel_3."),
    "promptir": ("reduce_noise_channel_1.", "reduce_noise_channel_2.", "reduce_noise_channel_3.",
                 "chnl_reduce1.", "chnl_reduce2.", "chnl_reduce3."),
}

_TOP = (
    ("patch_embed.proj.", "embed."),
    ("encoder_level1.", "enc1."), ("encoder_level2.", "enc2."), ("encoder_level3.", "enc3."),
    ("latent.", "latent."),
    ("decoder_level3.", "dec3."), ("decoder_level2.", "dec2."), ("decoder_level1.", "dec1."),
    ("down1_2.body.0.", "down1.conv."), ("down2_3.body.0.", "down2.conv."), ("down3_4.body.0.", "down3.conv."),
    ("up4_3.body.0.", "up3.conv."), ("up3_2.body.0.", "up2.conv."), ("up2_1.body.0.", "up1.conv."),
    ("reduce_chan_level3.", "fuse3."), ("reduce_chan_level2.", "fuse2."),
    ("prompt3.", "prompt_latent.gen."), ("noise_level3.", "prompt_latent.block."),
    ("reduce_noise_level3.", "prompt_latent.reduce."),
    ("prompt2.", "prompt_level3.gen."), ("noise_level2.", "prompt_level3.block."),
    ("reduce_noise_level2.", "prompt_level3.reduce."),
    ("prompt1.", "prompt_level2.gen."), ("noise_level1.", "prompt_level2.block."),
    ("reduce_noise_level1.", "prompt_level2.reduce."),
    ("refinement.", "refine."),
    ("output.", "head."),
)

_INNER = (  # renames inside a transformer block / prompt generator (applied to the key remainder)
    ("norm1.body.", "norm1."), ("norm2.body.", "norm2."),
    ("attn.qkv_dwconv.", "attn.qkv_dw."), ("attn.project_out.", "attn.proj."),
    ("ffn.project_in.", "ffn.fc_in."), ("ffn.dwconv.", "ffn.dw."), ("ffn.project_out.", "ffn.fc_out."),
    ("prompt_param", "components"), ("linear_layer.", "weight_fc."), ("conv3x3.", "conv."),
)


def official_to_ours(key: str) -> str:
    """Our parameter name for an official key (raises ``KeyError`` when no rule matches)."""
    for old, new in _TOP:
        if key.startswith(old):
            rest = key[len(old):]
            for inner_old, inner_new in _INNER:
                idx = rest.find(inner_old)
                if idx >= 0 and (idx == 0 or rest[idx - 1] == "."):
                    rest = rest[:idx] + inner_new + rest[idx + len(inner_old):]
                    break
            return new + rest
    raise KeyError(f"official key {key!r} matches no rule of the DyNet/PromptIR key map")


def is_unused(key: str, arch: str) -> bool:
    return key.startswith(UNUSED_PREFIXES[arch])


def map_official_state_dict(official: dict[str, torch.Tensor], arch: str
                            ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an official state dict (no ``net.`` prefix) -> ``(our state dict in fp32, skipped keys)``."""
    if arch not in UNUSED_PREFIXES:
        raise ValueError(f"no official key map for arch {arch!r}")
    ours: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    unknown: list[str] = []
    for key, value in official.items():
        if is_unused(key, arch):
            skipped.append(key)
            continue
        try:
            ours[official_to_ours(key)] = value.detach().to(torch.float32)
        except KeyError:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} official keys match no rule (wrong arch?): {unknown[:5]}")
    return ours, sorted(skipped)
