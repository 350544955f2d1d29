"""Official-format state dicts with random weights of the official shapes (shared by model tests).

The shapes come from ``dynet_model/data/*_state_dict_shapes.json`` (the official checkpoints' key ->
shape maps), so tests need no ``../shared`` and no download.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "dynet_model" / "data"


def official_shapes(arch: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"{arch}_state_dict_shapes.json").read_text())["state_dict"]


def random_official_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in official_shapes(arch).items():
        if ".norm" in key and key.endswith("weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("temperature"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("prompt_param"):
            t = torch.rand(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        out[key] = t
    return out
