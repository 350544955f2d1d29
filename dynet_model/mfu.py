"""Model-FLOPs utilisation: achieved FLOP/s over the accelerator's dense peak.

The peak table holds the vendors' dense (no 2:4 sparsity) tensor-core figures for the data type a
run computes in: bf16 under autocast, fp32 otherwise (plain fp32 FMA rate, since we do not enable
TF32). Unknown devices and CPUs have no entry: MFU is then reported as null unless a peak is given
(``--peak-tflops``).
"""

from __future__ import annotations

import torch

# (name fragment, bf16 dense TFLOP/s, fp32 dense TFLOP/s); the first fragment found in the device name wins
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989.0, 67.0),
    ("H100 PCIe", 756.0, 51.0),
    ("H100", 989.0, 67.0),  # SXM5 / NVL
    ("A100", 312.0, 19.5),
)


def peak_tflops_for(device_name: str, dtype: str) -> float | None:
    """Dense peak TFLOP/s of a named GPU for ``dtype`` ("bf16" or "fp32"); None when not in the table."""
    for fragment, bf16, fp32 in PEAK_TFLOPS:
        if fragment.lower() in device_name.lower():
            return bf16 if dtype in ("bf16", "fp16") else fp32
    return None


def resolve_peak_tflops(device: str | torch.device, dtype: str, override: float = 0.0) -> float | None:
    """``override`` (> 0) wins; else the table entry of the CUDA device; None on CPU / unknown GPUs."""
    if override and override > 0:
        return float(override)
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_tflops_for(torch.cuda.get_device_name(device), dtype)


def mfu(flops_per_s: float, peak_tflops: float | None) -> float | None:
    """Achieved FLOP/s as a fraction of the peak (None when the peak is unknown)."""
    if not peak_tflops:
        return None
    return flops_per_s / (peak_tflops * 1e12)
