"""The demo's model stages: pre-train, denoise fine-tune, evaluate, restore one image, and the curation report."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_bytes
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


def export_patches(shards: Path, folder: Path) -> list[Path]:
    """Write the curated patches out of the shards as PNG files (the bytes unchanged: lossless).

    training.finetune reads denoise data as a folder of clean images, so the demo hands it exactly the
    patches curation produced; a rerun rewrites the same files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for tar_path in sorted(shards.glob("patches-*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".png") and "/" not in member.name:
                    dst = folder / member.name
                    atomic_write_bytes(dst, tar.extractfile(member).read())
                    written.append(dst)
    if not written:
        raise RuntimeError(f"no PNG patches in {shards}")
    return written


def final_model(ctx: DemoContext) -> Path:
    """The model evaluate / restore use: the denoise fine-tune's, or pre-training's when it was skipped."""
    tuned = ctx.p("finetune", "model_final.safetensors")
    return tuned if ctx.finetune_steps > 0 else ctx.p("train", "model_final.safetensors")


def stage_finetune(ctx: DemoContext) -> dict:
    """A short denoise fine-tune of the pre-trained model on the curated patches (the paper's recipe, scaled down)."""
    if ctx.finetune_steps <= 0:
        print("--finetune-steps 0: no fine-tune; evaluate / restore use the pre-trained model")
        return {"artefacts": {}, "info": {"steps": 0}}
    import torch

    from training import finetune

    torch.set_num_threads(ctx.threads)  # as pre-training's --threads (a rerun may skip pre-training)
    patches = export_patches(ctx.p("shards"), ctx.p("finetune_data", "denoise"))
    print(f"{len(patches)} curated patches written to {ctx.p('finetune_data', 'denoise')} as the denoise training set")
    run = ctx.p("finetune")
    steps = ctx.finetune_steps
    argv = _cmd("training.finetune", [
        "--init", str(ctx.p("train", "model_final.safetensors")), "--out", str(run), "--tasks", "denoise",
        "--denoise-dirs", str(ctx.p("finetune_data", "denoise")), "--sigmas", "15", "25", "50",
        "--crop", str(ctx.crop), "--batch-size", str(ctx.batch_size), "--workers", "0",
        "--variant", ctx.variant, "--lr", "1e-3", "--max-steps", str(steps), "--warmup-steps", str(max(1, steps // 20)),
        "--log-every", str(max(1, steps // 10)), "--ckpt-every", str(steps), "--keep-last", "1",
        "--device", "cpu", "--no-progress", "--resume"])
    finetune.main(argv)
    final = run / "model_final.safetensors"
    if not final.is_file():
        raise RuntimeError(f"fine-tuning ended without {final}")
    windows = loss_windows(run / "log.jsonl")
    print(f"denoise fine-tune loss: {windows['first_loss']:.4f} -> {windows['last_loss']:.4f}")
    return {"argv": argv, "artefacts": {"fine-tuned model": final, "fine-tune log": run / "log.jsonl",
                                        "denoise patches": ctx.p("finetune_data", "denoise")},
            "info": {"loss": windows, "steps": steps, "patches": len(patches)}}


def stage_evaluate(ctx: DemoContext) -> dict:
    from training import evaluate

    heldout, out = ctx.p("sample", "heldout"), ctx.p("eval")
    common = ["--bsd68", str(heldout), "--sigmas", str(ctx.sigma), "--device", "cpu"]
    net_argv = _cmd("training.evaluate", ["--checkpoint", str(final_model(ctx)),
                                          "--variant", ctx.variant, *common, "--json", str(out / "network.json"),
                                          "--save-images", str(out / "images")])
    net = evaluate.main(net_argv)
    id_argv = _cmd("training.evaluate", ["--model", "identity", *common, "--json", str(out / "identity.json")])
    ident = evaluate.main(id_argv)
    column = f"BSD68 σ{ctx.sigma}"
    table = {name: {"psnr": r["columns"][column]["psnr"], "ssim": r["columns"][column]["ssim"]}
             for name, r in (("network", net), ("identity", ident))}
    gain = table["network"]["psnr"] - table["identity"]["psnr"]
    print(f"held-out denoise σ{ctx.sigma} (images never curated or trained on): network PSNR "
          f"{table['network']['psnr']:.2f} dB vs identity floor {table['identity']['psnr']:.2f} dB "
          f"({gain:+.2f} dB)")
    return {"argv": net_argv, "artefacts": {"evaluation (network)": out / "network.json",
                                            "evaluation (identity floor)": out / "identity.json",
                                            "restored test images": out / "images"},
            "info": _jsonable({"column": column, **table})}


def stage_restore(ctx: DemoContext) -> dict:
    ckpt = final_model(ctx)
    src = next(iter(sorted(ctx.p("sample", "restore_input").glob("*.png"))))
    out = ctx.p("restore")
    from dynet_model import restore

    argv = _cmd("dynet_model.restore", [str(src), "--out", str(out), "--checkpoint", str(ckpt),
                                        "--variant", ctx.variant, "--device", "cpu", "--side-by-side"])
    report = restore.main(argv)
    done = [e for e in report if e["status"] == "ok"]
    if not done:
        raise RuntimeError(f"restore wrote nothing under {out}: {report}")
    return {"argv": argv, "artefacts": {"restore input": src, "restored image": done[0]["output"],
                                        "before | after": done[0]["side_by_side"]},
            "info": {"outputs": [e["output"] for e in done]}}


def stage_report(ctx: DemoContext) -> dict:
    from curation import report

    argv = _cmd("curation.report", ["--root", str(ctx.out), "--out", str(ctx.p("report")), "--samples", "8"])
    report.main(argv)
    index = ctx.p("report", "index.html")
    return {"argv": argv, "artefacts": {"report (HTML)": index, "report (markdown)": ctx.p("report", "index.md")},
            "info": {}}
