"""The demo's model stages: pre-train, evaluate, restore one image, and the curation report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.demo_stages import DemoContext, _cmd, _jsonable


def loss_windows(log_path: Path) -> dict:
    """Mean training loss of the first and the last logged window of log.jsonl (the last run's records)."""
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    losses: list[tuple[int, float]] = []
    for r in records:
        if "loss" not in r or not math.isfinite(r["loss"]):
            continue
        if losses and r["step"] <= losses[-1][0]:  # a restart from scratch appended a new run: keep that one
            losses = [(s, v) for s, v in losses if s < r["step"]]
        losses.append((r["step"], r["loss"]))
    if len(losses) < 2:
        raise RuntimeError(f"{log_path} has fewer than two loss records; raise --steps")
    k = max(1, len(losses) // 4)
    first, last = losses[:k], losses[-k:]
    return {"first_steps": [first[0][0], first[-1][0]], "first_loss": float(np.mean([v for _, v in first])),
            "last_steps": [last[0][0], last[-1][0]], "last_loss": float(np.mean([v for _, v in last])),
            "records": len(losses)}


def stage_pretrain(ctx: DemoContext) -> dict:
    from training import pretrain

    run = ctx.p("train")
    log_every = max(1, ctx.steps // 20)
    argv = _cmd("training.pretrain", [
        "--shards", str(ctx.p("shards")), "--out", str(run), "--tiny", "--crop", str(ctx.crop),
        "--batch-size", str(ctx.batch_size), "--workers", "0", "--shuffle-buffer", "64",
        "--max-steps", str(ctx.steps), "--lr", "1e-3", "--schedule", "cosine", "--warmup-steps", str(max(1, ctx.steps // 20)),
        "--log-every", str(log_every), "--ckpt-every", str(ctx.steps), "--keep-last", "1", "--val-every", "0",
        "--device", "cpu", "--threads", str(ctx.threads), "--no-progress", "--resume"])
    pretrain.main(argv)
    final = run / "model_final.safetensors"
    if not final.is_file():
        raise RuntimeError(f"pre-training ended without {final}")
    windows = loss_windows(run / "log.jsonl")
    print(f"loss: steps {windows['first_steps'][0]}-{windows['first_steps'][1]} mean {windows['first_loss']:.4f}  ->  "
          f"steps {windows['last_steps'][0]}-{windows['last_steps'][1]} mean {windows['last_loss']:.4f}"
          f"  ({'falling' if windows['last_loss'] < windows['first_loss'] else 'NOT falling'})")
    return {"argv": argv, "artefacts": {"model": final, "train log": run / "log.jsonl",
                                        "checkpoints": run / "checkpoints", "tensorboard": run / "tb"},
            "info": {"loss": windows, "steps": ctx.steps}}


def stage_evaluate(ctx: DemoContext) -> dict:
    from training import evaluate

    heldout, out = ctx.p("sample", "heldout"), ctx.p("eval")
    common = ["--bsd68", str(heldout), "--sigmas", str(ctx.sigma), "--device", "cpu"]
    net_argv = _cmd("training.evaluate", ["--checkpoint", str(ctx.p("train", "model_final.safetensors")),
                                          "--variant", ctx.variant, *common, "--json", str(out / "network.json"),
                                          "--save-images", str(out / "images")])
    net = evaluate.main(net_argv)
    id_argv = _cmd("training.evaluate", ["--model", "identity", *common, "--json", str(out / "identity.json")])
    ident = evaluate.main(id_argv)
    column = f"BSD68 σ{ctx.sigma}"
    table = {name: {"psnr": r["columns"][column]["psnr"], "ssim": r["columns"][column]["ssim"]}
             for name, r in (("network", net), ("identity", ident))}
    print(f"held-out denoise σ{ctx.sigma} (images never curated or trained on): network PSNR "
          f"{table['network']['psnr']:.2f} dB vs identity floor {table['identity']['psnr']:.2f} dB")
    return {"argv": net_argv, "artefacts": {"evaluation (network)": out / "network.json",
                                            "evaluation (identity floor)": out / "identity.json",
                                            "restored test images": out / "images"},
            "info": _jsonable({"column": column, **table})}


def stage_restore(ctx: DemoContext) -> dict:
    ckpt = ctx.p("train", "model_final.safetensors")
    src = next(iter(sorted(ctx.p("sample", "restore_input").glob("*.png"))))
    out = ctx.p("restore")
    from dynet_model import restore

    argv = _cmd("dynet_model.restore", [str(src), "--output", str(out), "--checkpoint", str(ckpt),
                                        "--variant", ctx.variant, "--device", "cpu"])
    restore.main(argv)
    produced = sorted(p for p in out.rglob("*") if p.is_file())
    if not produced:
        raise RuntimeError(f"restore wrote nothing under {out}")
    return {"argv": argv, "artefacts": {"restore input": src, "restored image": produced[0]},
            "info": {"outputs": [str(p) for p in produced]}}


def stage_report(ctx: DemoContext) -> dict:
    from curation import report

    argv = _cmd("curation.report", ["--root", str(ctx.out), "--out", str(ctx.p("report")), "--samples", "8"])
    report.main(argv)
    index = ctx.p("report", "index.html")
    return {"argv": argv, "artefacts": {"report (HTML)": index, "report (markdown)": ctx.p("report", "index.md")},
            "info": {}}
