"""The Python API example of docs/model.md, run exactly as written (on a tiny model and a small photo)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DOC = Path(__file__).resolve().parents[2] / "docs" / "model.md"


def example_code() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- api-example:[^>]*-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/model.md lost its api-example block"
    return match.group(1)


def test_docs_api_example_runs(tmp_path, monkeypatch):
    from dynet_model.build import build_model
    from dynet_model.checkpoint import save_model
    from dynet_model.config import ModelConfig

    code = example_code()
    assert len([line for line in code.splitlines() if line.strip()]) <= 6
    torch.manual_seed(0)
    save_model(tmp_path / "model_final.safetensors", build_model(ModelConfig.tiny("dynet")), ModelConfig.tiny("dynet"))
    noisy = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the documented example itself
    restored = np.asarray(Image.open(tmp_path / "restored.png"))
    assert restored.shape == noisy.shape and restored.dtype == np.uint8
    model = namespace["model"]
    assert model.reuse == (2, 3, 3, 4)  # variant="s"
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():  # the per-call depth the docs promise
        assert model(x, reuse=(2, 3, 3, 4)).shape == x.shape
