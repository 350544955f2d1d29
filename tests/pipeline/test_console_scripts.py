"""``[project.scripts]``: every user-facing command has a ``dynet-…`` console script that really runs it.

The installed venv may predate the entry points (an editable install is made once), so the scripts are
checked from pyproject.toml and run through the same function the generated script calls.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import console

REPO = Path(__file__).resolve().parents[2]


def _scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_entry_point_resolves_to_a_callable_and_one_prefix():
    scripts = _scripts()
    assert scripts and all(name.startswith("dynet-") for name in scripts)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
        wrapped = console.COMMANDS[name]
        assert callable(importlib.import_module(wrapped).main), f"{name}: {wrapped}.main"
    assert set(scripts) == set(console.COMMANDS)


def test_every_runnable_module_has_a_console_script():
    runnable = {f"{p.parent.name}.{p.stem}" for pkg in ("curation", "training", "dynet_model", "pipeline")
                for p in (REPO / pkg).glob("*.py") if 'if __name__ == "__main__"' in p.read_text()}
    assert runnable <= set(console.COMMANDS.values()), runnable - set(console.COMMANDS.values())


def test_console_script_runs_ingest_and_exits_zero(tmp_path):
    """dynet-ingest's main returns a summary dict: the script must still exit 0 (sys.exit(dict) would be 1)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(photos / "a.png")
    code = ("import sys; sys.argv = ['dynet-ingest', '--folder', sys.argv[1], '--source', 'mine', "
            "'--out', sys.argv[2]]; from pipeline.console import ingest; ingest()")
    proc = subprocess.run([sys.executable, "-c", code, str(photos), str(tmp_path / "raw")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ingest mine: 1 files" in proc.stdout
    assert json.loads(next((tmp_path / "raw" / "_jobs").glob("ingest-*.json")).read_text())["files"] == 1


def test_console_script_passes_an_int_exit_status(tmp_path):
    code = "import sys; sys.argv = ['dynet-filter', '--scores', sys.argv[1]]; from pipeline.console import filter; filter()"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "no score tables" in proc.stderr
