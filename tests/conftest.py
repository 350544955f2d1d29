"""Test-session setup: offline, CPU, isolated caches.

Environment variables are set here, at import time, because pyiqa / albumentations / huggingface
read them when first imported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp(prefix="torch_home_tests_"))
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (reference facts, sample images); tests using it skip without it."""
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared is not present beside the checkout")
    return SHARED_DIR


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """One intra-op torch thread for the whole session.

    The test machine has 2 cores shared by pytest, Dask workers and img2dataset subprocesses; with
    torch's default thread count OpenMP spin-waiting made tiny-model steps 10-40x slower there.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
