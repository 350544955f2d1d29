"""DSRIR validation every N epochs and ``model_best`` selection.

Why: DSRIR's published numbers come from ``model_best.pth``, the checkpoint with the best average
PSNR on its *test* sets (BSD68 σ15/25/50, Rain100L test, SOTS outdoor; official ``train.py``
validates every 5 epochs and keeps a new best when the average is strictly higher). Keeping only the
last checkpoint cannot reproduce that; choosing on the test set overstates the test scores. So the
validation set is the user's choice (``--val-dir``), and the selection is labelled: ``validation``
(a held-out set) or ``test-set`` (``--val-is-test-set``, or detected when ``--val-dir`` is a
``training.prepare_data`` test folder) — the label goes into ``model_best.json``, the log and stdout.

``--val-dir`` layout (that of ``prepare_data``'s ``OUT/test``): ``denoise/bsd68/`` (or clean images
directly in ``denoise/``), ``derain/Rain100L/`` (or ``derain/``) with ``{input,target}``,
``dehaze/`` with ``{input,target}``; the sets of the training ``--mode`` are used (all three for
``all_in_one``). The average is over the mode's columns, as the official ``validation()``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.atomic import atomic_write_json
from training import restoration_data as rd

log = logging.getLogger(__name__)

SELECTION_LABELS = {
    "validation": "validation: model_best chosen on a held-out validation set",
    "test-set": "test-set: model_best chosen by its score on the TEST set itself, as the official DSRIR "
                "train.py does; its scores on that set are optimistically biased (reproduction only)",
}
MODE_SETS = {"all_in_one": ("denoise", "derain", "dehaze"), "noise": ("denoise",), "rain": ("derain",),
             "haze": ("dehaze",)}


def _first_dir(*cands: Path) -> Path | None:
    return next((c for c in cands if c.is_dir()), None)


def _is_prepared_test_set(folder: Path) -> bool:
    marker = folder / "_stage.json"
    try:
        return json.loads(marker.read_text()).get("stage", "").startswith("prepare_data:test-")
    except (OSError, ValueError):
        return False


def collect_val_sets(val_dir: str | Path, mode: str, *, max_images: int | None = None):
    """(TestSets for the mode's tasks, True when they are prepare_data test sets)."""
    from training.evaluate import collect_test_sets

    root = Path(val_dir)
    if not root.is_dir():
        raise rd.DatasetLayoutError(f"--val-dir: folder not found: {root}")
    folders = {"denoise": _first_dir(root / "denoise" / "bsd68", root / "denoise"),
               "derain": _first_dir(root / "derain" / "Rain100L", root / "derain"),
               "dehaze": _first_dir(root / "dehaze")}
    need = MODE_SETS[mode]
    absent = [t for t in need if folders[t] is None]
    if absent:
        raise rd.DatasetLayoutError(f"--val-dir {root}: mode {mode} validates {', '.join(need)}, but "
                                    f"{', '.join(f'{t}/' for t in absent)} is missing (see docs/dsrir.md)")
    use = {t: str(folders[t]) if t in need else None for t in folders}
    sets = collect_test_sets(bsd68=use["denoise"], urban100=None, rain100l=use["derain"], sots=use["dehaze"],
                             max_images=max_images or None)
    return sets, any(_is_prepared_test_set(Path(use[t])) for t in need)


class BestSelector:
    """Keeps ``OUT/model_best.safetensors`` = the model at the best validation average so far."""

    def __init__(self, out_dir: str | Path, *, model_config: Any, selection: str, metric: str = "psnr/average",
                 resume: bool = False, save_model: Callable | None = None) -> None:
        if selection not in SELECTION_LABELS:
            raise ValueError(f"selection must be one of {sorted(SELECTION_LABELS)}")
        self.out, self.model_config, self.selection, self.metric = Path(out_dir), model_config, selection, metric
        self.save_model = save_model
        self.record: dict | None = None
        path = self.out / "model_best.json"
        if resume and path.is_file():
            self.record = json.loads(path.read_text())

    @property
    def best_score(self) -> float | None:
        return None if self.record is None else float(self.record["score"])

    def update(self, model: torch.nn.Module, *, step: int, epoch: int, metrics: dict[str, float]) -> bool:
        """Save the model when ``metrics[metric]`` beats the best so far (strictly, as the official)."""
        score = float(metrics[self.metric])
        if self.best_score is not None and not score > self.best_score:
            return False
        from training.checkpointing import _default_save_model

        self.out.mkdir(parents=True, exist_ok=True)
        (self.save_model or _default_save_model)(
            self.out / "model_best.safetensors", model, self.model_config,
            {"step": str(step), "epoch": str(epoch), "kind": "best", "selection": self.selection,
             self.metric: f"{score:.6f}"})
        self.record = {"epoch": epoch, "step": step, "metric": self.metric, "score": score,
                       "selection": self.selection, "selection_note": SELECTION_LABELS[self.selection],
                       "metrics": metrics}
        atomic_write_json(self.out / "model_best.json", self.record)  # written after the weights
        log.info("model_best: epoch %d, %s %.4f (%s)", epoch, self.metric, score, self.selection)
        return True


@dataclass
class EpochValidator:
    """The loop's ``validate`` callback: runs only at the end of every ``every_epochs``-th epoch.

    ``epoch_ends`` maps the global step reached when an epoch finishes to that epoch; the loop calls
    this every step and an empty dict means "not now".
    """
    epoch_ends: dict[int, int]
    sets: Any
    protocol: Any
    sigmas: list[int]
    selector: BestSelector
    arch: str = "dsrir"

    def __call__(self, model: torch.nn.Module, step: int) -> dict:
        epoch = self.epoch_ends.get(step)
        if epoch is None:
            return {}
        from training.evaluate import evaluate
        from training.evaluation.metrics import mean_or_nan
        from training.evaluation.restorers import Restorer

        model.eval()
        res = evaluate(Restorer(name=f"epoch{epoch}", model=model, arch=self.arch), self.sets,
                       protocol=self.protocol, sigmas=self.sigmas, device=str(next(model.parameters()).device),
                       warmup=False)
        metrics: dict[str, float] = {"epoch": float(epoch)}
        for col, v in res["columns"].items():
            metrics[f"psnr/{col}"], metrics[f"ssim/{col}"] = v["psnr"], v["ssim"]
        metrics["psnr/average"] = mean_or_nan([v["psnr"] for v in res["columns"].values()])
        metrics["ssim/average"] = mean_or_nan([v["ssim"] for v in res["columns"].values()])
        self.selector.update(model, step=step, epoch=epoch, metrics=metrics)
        metrics["best/psnr_average"] = self.selector.best_score
        metrics["best/epoch"] = float(self.selector.record["epoch"])
        return metrics


def epoch_end_steps(epoch_starts: list[int], every_epochs: int) -> dict[int, int]:
    """{global step at which epoch e has finished: e} for e = every, 2*every, ... (``epoch_starts[e]``)."""
    if every_epochs < 1:
        raise ValueError("--val-every-epochs must be >= 1")
    total = len(epoch_starts) - 1
    return {epoch_starts[e]: e for e in range(every_epochs, total + 1, every_epochs)}
