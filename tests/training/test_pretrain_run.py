"""End-to-end pre-training on tiny shards made here: loss goes down, both variants run, resume is bit-exact."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from safetensors.torch import load_file

from dynet_model.checkpoint import load_model
from training.pretrain import DynamicDepthStep, main
from training.synthetic import png_bytes, synthetic_patch, write_synthetic_shards

COMMON = ["--tiny", "--crop", "32", "--batch-size", "4", "--degrade-block", "16", "--mask-block", "8",
          "--shuffle-buffer", "16", "--no-progress", "--no-tensorboard", "--threads", "1"]




@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = write_synthetic_shards(tmp_path_factory.mktemp("shards"), shards=3, per_shard=8, size=48)
    broken = "patches-000003.tar"  # one shard with a corrupt PNG among good samples
    with wds.TarWriter(str(root / broken)) as sink:
        for i in range(4):
            png = b"\x89PNG-damaged" if i == 1 else png_bytes(synthetic_patch(np.random.default_rng(i), 48))
            sink.write({"__key__": f"bad{i}", "png": png, "json": b"{}"})
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"].append({"name": broken, "samples": 4})
    manifest["total_samples"] += 4
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_twenty_steps_reduce_loss_use_both_variants_and_validate(tmp_path, shards):
    out = tmp_path / "run"
    main(["--shards", str(shards), "--out", str(out), "--val-shards", str(shards / "patches-000000.tar"),
          "--val-every", "20", "--val-samples", "4", "--max-steps", "20", "--log-every", "5",
          "--ckpt-every", "10", "--lr", "2e-3", "--workers", "0", *COMMON])
    train = [r for r in _log(out) if "loss" in r]
    assert train[-1]["loss"] < 0.8 * train[0]["loss"], [r["loss"] for r in train]
    assert sum(r.get("steps/S", 0) for r in train) > 0 and sum(r.get("steps/L", 0) for r in train) > 0
    assert train[-1]["skipped_samples"] >= 1  # the damaged PNG was skipped and counted
    val = [r for r in _log(out) if "val/psnr/S" in r][-1]
    assert val["val/psnr/S"] > val["val/psnr/input"] and "val/psnr/L" in val
    assert (out / "val" / "step_0000020.png").is_file()
    _, cfg, meta = load_model(out / "model_final.safetensors")
    assert cfg.arch == "dynet" and meta["step"] == "20"
    load_model(out / "checkpoints" / "step_0000020" / "model.safetensors")  # train-state weights stand alone


def test_variant_draw_is_seeded_and_balanced():
    step = DynamicDepthStep([(2, 3, 3, 4), (4, 6, 6, 8)], seed=5)
    picks = [step.pick(s) for s in range(400)]
    assert picks == [DynamicDepthStep(step.variants, seed=5).pick(s) for s in range(400)]
    assert 160 < sum(picks) < 240
    three = DynamicDepthStep([(1, 1, 1, 1), (2, 3, 3, 4), (4, 6, 6, 8)], seed=0)
    assert {three.pick(s) for s in range(60)} == {0, 1, 2}


def test_resume_is_bit_exact(tmp_path, shards):
    args = ["--shards", str(shards), "--max-steps", "8", "--ckpt-every", "4", "--log-every", "4",
            "--workers", "2", "--schedule", "cosine", "--warmup-steps", "2", "--grad-clip", "0.5", *COMMON]
    main([*args, "--out", str(tmp_path / "straight")])
    main([*args, "--out", str(tmp_path / "split"), "--stop-at-step", "4"])
    assert not (tmp_path / "split" / "model_final.safetensors").exists()
    main([*args, "--out", str(tmp_path / "split"), "--resume"])
    a = load_file(str(tmp_path / "straight" / "model_final.safetensors"))
    b = load_file(str(tmp_path / "split" / "model_final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = load_file(str(tmp_path / "straight" / "checkpoints" / "step_0000008" / "optim.safetensors"))
    ob = load_file(str(tmp_path / "split" / "checkpoints" / "step_0000008" / "optim.safetensors"))
    assert all(torch.equal(oa[k], ob[k]) for k in oa if k.startswith("optim."))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_cpu_processes_gloo(tmp_path, shards, repo_root):
    """Real DDP: torchrun, 2 CPU processes on gloo, each rank its own shard split (~13-40 s here)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "training.pretrain", "--shards", str(shards), "--out", str(out), "--max-steps", "6",
           "--ckpt-every", "3", "--log-every", "3", "--workers", "1", "--device", "cpu", *COMMON]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log(out)
    assert log[-1]["step"] == 6 and log[-1]["samples_per_s"] > 0
    state = json.loads((out / "checkpoints" / "step_0000006" / "state.json").read_text())
    assert state["extra"]["world_size"] == 2
    load_model(out / "model_final.safetensors")
    # a second launch into the finished run without --resume: rank 0 refuses, rank 1 follows (no deadlock)
    again = subprocess.run([*cmd[:6], str(_free_port()), *cmd[7:]], cwd=repo_root, env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode != 0 and "already holds a training run" in again.stderr, again.stderr[-3000:]
    assert "rank 0 refused" in again.stderr
    assert _log(out)[-1]["step"] == 6


def test_saved_config_reloads_and_every_flag_has_help(tmp_path):
    import dataclasses

    from common.cliconfig import parse_config, save_config
    from training.params import PretrainConfig

    cfg = parse_config(PretrainConfig, ["--shards", "s", "--out", "o", "--jpeg-quality", "20", "30", "--tiny"])
    save_config(cfg, tmp_path / "config.yaml")
    assert parse_config(PretrainConfig, ["--config", str(tmp_path / "config.yaml")]) == cfg
    assert all(f.metadata.get("help") for f in dataclasses.fields(PretrainConfig))
