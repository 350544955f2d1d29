"""Official DSRIR checkpoint -> our :class:`~dynet_model.dsrir.DSRIR` state dict.

Our module tree mirrors the official one, so the key map is the identity after removing wrapper
prefixes: ``module.`` (``nn.DataParallel``, which the official train.py uses on multi-GPU machines)
and ``model.`` / ``net.`` style prefixes are stripped. Official training checkpoints are dicts
``{"epoch", "state_dict", "optimizer"}`` (``model_best.pth`` / ``model_latest.pth``); a bare state
dict also works. Files are read with ``torch.load(weights_only=True)`` (never unpickled).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

_PREFIXES = ("module.", "model.", "net.")


def official_key_to_ours(key: str) -> str:
    for prefix in _PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def map_official_state_dict(official: Mapping[str, torch.Tensor],
                            reference: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map official keys onto ``reference`` (our model's state dict).

    Returns ``(state_dict, skipped)``; ``skipped`` lists official keys with no counterpart (none for
    a genuine DSRIR checkpoint). Raises ``ValueError`` naming every shape mismatch and every key of
    ours that the checkpoint does not provide.
    """
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    bad_shape: list[str] = []
    for key, value in official.items():
        ours = official_key_to_ours(key)
        if ours not in reference:
            skipped.append(key)
        elif tuple(reference[ours].shape) != tuple(value.shape):
            bad_shape.append(f"{key}: {tuple(value.shape)} vs ours {tuple(reference[ours].shape)}")
        else:
            mapped[ours] = value
    missing = sorted(set(reference) - set(mapped))
    if bad_shape or missing:
        raise ValueError("official DSRIR state dict does not fit our model: "
                         + "; ".join(bad_shape + [f"missing {k}" for k in missing[:20]])
                         + (f" (+{len(missing) - 20} more missing)" if len(missing) > 20 else ""))
    return mapped, skipped


def reference_state_dict() -> dict[str, torch.Tensor]:
    """Our DSRIR's state dict on the meta device (names and shapes only, no memory)."""
    from dynet_model.dsrir import DSRIR

    with torch.device("meta"):
        return DSRIR().state_dict()


def map_official_dsrir(official: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official DSRIR state dict -> ``(our state dict in fp32, skipped keys)`` (what
    :func:`dynet_model.checkpoint.load_official_checkpoint` returns for ``arch="dsrir"``)."""
    mapped, skipped = map_official_state_dict(official, reference_state_dict())
    return {k: v.detach().to(torch.float32) for k, v in mapped.items()}, skipped


def load_official_dsrir(path: str | Path, reference: Mapping[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Read an official ``.pth`` (the shared reader: ``weights_only=True``) and map it onto ``reference``."""
    from dynet_model.checkpoint import read_official_state

    return map_official_state_dict(read_official_state(path), reference)
