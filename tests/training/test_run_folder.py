"""The stage contract of the trainers' run folders (training.runfolder), exercised through training.pretrain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.pretrain import main
from training.synthetic import write_synthetic_shards

COMMON = ["--tiny", "--crop", "32", "--batch-size", "2", "--degrade-block", "16", "--mask-block", "8",
          "--shuffle-buffer", "4", "--no-progress", "--no-tensorboard", "--threads", "1", "--workers", "0",
          "--log-every", "1", "--ckpt-every", "2"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), shards=1, per_shard=6, size=32)


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def _exit_code(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


def test_existing_run_needs_resume_same_settings_or_overwrite(tmp_path, shards, capsys):
    out = tmp_path / "run"
    args = ["--shards", str(shards), "--out", str(out), *COMMON]
    main([*args, "--max-steps", "2"])
    assert _steps(out) == [1, 2]
    stage = json.loads((out / "_stage.json").read_text())
    assert stage["stage"] == "pretrain" and "lr" in stage["settings"]
    assert "workers" not in stage["settings"] and "max_steps" not in stage["settings"]  # constant LR: may grow

    code, err = _exit_code([*args, "--max-steps", "2"], capsys)  # no --resume: refused, nothing touched
    assert code == 2 and "already holds a training run" in err and "--resume" in err
    assert _steps(out) == [1, 2]

    code, err = _exit_code([*args, "--max-steps", "4", "--resume", "--lr", "5e-4", "--seed", "3"], capsys)
    assert code == 2 and "lr: recorded 0.0001, now 0.0005" in err and "seed: recorded 0, now 3" in err
    assert _steps(out) == [1, 2]

    main([*args, "--max-steps", "4", "--resume", "--workers", "1"])  # longer run, other worker count: resumes
    assert _steps(out) == [1, 2, 3, 4]

    main([*args, "--max-steps", "1", "--lr", "5e-4", "--overwrite"])  # discards the old run, starts at 0
    assert _steps(out) == [1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000001"]
    assert json.loads((out / "_stage.json").read_text())["settings"]["lr"] == 5e-4


def test_cosine_schedule_makes_max_steps_a_setting(tmp_path, shards, capsys):
    out = tmp_path / "cos"
    args = ["--shards", str(shards), "--out", str(out), "--schedule", "cosine", *COMMON]
    main([*args, "--max-steps", "2"])
    code, err = _exit_code([*args, "--max-steps", "4", "--resume"], capsys)
    assert code == 2 and "max_steps: recorded 2, now 4" in err
    main([*args, "--max-steps", "3", "--resume", "--overwrite"])  # other settings + --overwrite: a fresh run
    assert _steps(out) == [1, 2, 3]
    assert json.loads((out / "_stage.json").read_text())["settings"]["max_steps"] == 3


def test_failed_start_leaves_no_run_to_refuse(tmp_path, shards):
    out = tmp_path / "run"
    args = ["--shards", str(shards), "--out", str(out), "--max-steps", "1", *COMMON[1:]]  # no --tiny
    with pytest.raises(FileNotFoundError):  # fails after the folder check, before any step
        main([*args, "--model-config", str(tmp_path / "missing.yaml")])
    assert (out / "_stage.json").is_file() and not (out / "log.jsonl").exists()
    main([*args, "--tiny", "--lr", "2e-4"])  # a retry with other settings and without --resume is not refused
    assert _steps(out) == [1]


def test_second_trainer_on_a_locked_folder_exits_2_naming_the_holder(tmp_path, shards, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from training.runfolder import open_run_folder
        with open_run_folder({str(out)!r}, "pretrain", {{}}, resume=False, overwrite=False):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = _exit_code(["--shards", str(shards), "--out", str(out), "--max-steps", "1", *COMMON], capsys)
        assert code == 2 and f"pid {holder.pid}" in err and "pretrain" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "log.jsonl").exists()
