"""Periodic validation during pre-training: PSNR of each depth variant on held-out crops + a PNG grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dynet_model.config import DYNET_L, DYNET_S


def variant_name(reuse: Sequence[int]) -> str:
    """``S`` / ``L`` for the paper's vectors, else ``2-3-3-4`` style."""
    reuse = tuple(reuse)
    return {DYNET_S: "S", DYNET_L: "L"}.get(reuse, "-".join(str(v) for v in reuse))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of [0,1] tensors B×C×H×W."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(1.0 / mse)


def _grid(columns: list[torch.Tensor], rows: int) -> np.ndarray:
    """rows × len(columns) tiles (each column a B×3×H×W batch) → H'×W'×3 uint8 RGB."""
    lines = [torch.cat([col[i] for col in columns], dim=2) for i in range(rows)]
    img = torch.cat(lines, dim=1).clamp(0, 1).mul(255).round().byte()
    return img.permute(1, 2, 0).cpu().numpy()


@dataclass
class Validator:
    """Callable for :func:`training.loop.train`'s ``validate``: returns ``{"psnr/S": …, "psnr/input": …}``."""

    lq: torch.Tensor
    gt: torch.Tensor
    variants: list[tuple[int, ...]]
    out_dir: Path
    chunk: int = 8
    grid_rows: int = 4

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, step: int) -> dict:
        model.eval()
        device = next(model.parameters()).device
        metrics = {"psnr/input": float(psnr(self.lq, self.gt).mean())}
        columns = [self.lq]
        for reuse in self.variants:
            outs = [model(self.lq[i:i + self.chunk].to(device), reuse=reuse).float().clamp(0, 1).cpu()
                    for i in range(0, len(self.lq), self.chunk)]
            restored = torch.cat(outs)
            metrics[f"psnr/{variant_name(reuse)}"] = float(psnr(restored, self.gt).mean())
            columns.append(restored)
        columns.append(self.gt)
        grid = _grid(columns, min(self.grid_rows, len(self.gt)))
        self.last_grid = grid  # the training loop also puts it in TensorBoard
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(self.out_dir / f"step_{step:07d}.png"), np.ascontiguousarray(grid[..., ::-1]))
        return metrics
