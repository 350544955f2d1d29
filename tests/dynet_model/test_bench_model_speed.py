"""benchmarks/model_speed.py --compile on a tiny network: compiled rows beside eager, equal outputs."""

from __future__ import annotations

import importlib.util
import json
import sys


def _load_bench(repo_root):
    spec = importlib.util.spec_from_file_location("model_speed_bench", repo_root / "benchmarks" / "model_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_model_speed_compile_records_diff_vs_eager(tmp_path, repo_root):
    bench = _load_bench(repo_root)
    out = tmp_path / "speed.json"
    bench.main(["--tiny", "--compile", "--models", "dynet-1,1,1,1", "--sizes", "16", "--repeats", "1",
                "--warmup", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {"eager", "compiled"}
    assert rows["compiled"]["max_abs_diff_vs_eager"] < 1e-3
    assert rows["compiled"]["compile_s"] > 0 and rows["eager"]["mfu"] is None  # no peak on cpu
    assert rows["eager"]["tflops_per_s"] > 0
    assert "dynet-1,1,1,1@16 compiled/eager" in report["ratios"]


def test_model_speed_and_profile_run_channels_last(tmp_path, repo_root):
    """The path that crashed on the 5-D prompt parameter (``--device cuda`` turns channels_last on)."""
    bench = _load_bench(repo_root)
    out = tmp_path / "cl.json"
    report = bench.main(["--tiny", "--channels-last", "--models", "dynet-1,1,1,1", "promptir", "--sizes", "16",
                         "--repeats", "1", "--warmup", "0", "--out", str(out)])
    assert report["channels_last"] is True and len(report["results"]) == 2
    from dynet_model.profile import main as profile_main

    rows = profile_main(["--models", "dynet-s", "--size", "16", "--channels-last", "--repeats", "1", "--warmup", "0"])
    assert rows[0]["images_per_s"] > 0
