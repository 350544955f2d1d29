"""Tables, plots and JSON for training.evaluate (paper Table 1 layout, depth sweeps)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from training.evaluation.metrics import mean_or_nan

TABLE1_COLUMNS = ("SOTS", "Rain100L", "BSD68 σ15", "BSD68 σ25", "BSD68 σ50")


def table1_average(columns: dict[str, dict], table: tuple[str, ...] = TABLE1_COLUMNS) -> dict:
    """Mean PSNR/SSIM over the ``table`` columns present (the papers average all five)."""
    present = [c for c in table if c in columns]
    return {"psnr": mean_or_nan([columns[c]["psnr"] for c in present]),
            "ssim": mean_or_nan([columns[c]["ssim"] for c in present]),
            "columns": present, "complete": len(present) == len(table)}


def _cell(psnr: float, ssim: float) -> str:
    if math.isnan(psnr):
        return "–"
    p = "inf" if math.isinf(psnr) else f"{psnr:.2f}"
    return f"{p}/{ssim:.3f}"


def _headers(runs: list[dict], table: tuple[str, ...] = TABLE1_COLUMNS) -> tuple[list[str], list[str]]:
    seen = {c for r in runs for c in r["columns"]}
    main = [c for c in table if c in seen]
    extra = sorted(c for c in seen if c not in table)
    return main, extra


def _protocol_line(runs: list[dict]) -> str:
    protos = sorted({(r["protocol"], r["protocol_description"]) for r in runs})
    seeding = sorted({f"noise seed {r['noise_seed']} ({r['noise_seeding']})" for r in runs})
    return "\n".join(f"Protocol: **{n}** — {d}; {', '.join(seeding)}" for n, d in protos)


def table1_markdown(runs: list[dict], table: tuple[str, ...] = TABLE1_COLUMNS,
                    average_key: str = "table1_average") -> str:
    """Markdown table, one row per run: the table's columns, their average, then extra columns."""
    main, extra = _headers(runs, table)
    avg_head = "Average" if len(main) == len(table) else f"Average ({len(main)} of {len(table)})"
    head = ["Model"] + main + [avg_head] + extra
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cols, avg = r["columns"], r[average_key]
        cells = [_cell(cols[c]["psnr"], cols[c]["ssim"]) if c in cols else "–" for c in main]
        cells.append(_cell(avg["psnr"], avg["ssim"]))
        cells += [_cell(cols[c]["psnr"], cols[c]["ssim"]) if c in cols else "–" for c in extra]
        lines.append("| " + " | ".join([r["model"]] + cells) + " |")
    counts = ", ".join(f"{c}: {n}" for c, n in _counts(runs).items())
    return "\n".join(lines) + f"\n\nPSNR (dB) / SSIM; images per column: {counts}\n" + _protocol_line(runs)


def _counts(runs: list[dict]) -> dict[str, int]:
    return {c: v["n"] for r in runs[:1] for c, v in r["columns"].items()}


def sweep_markdown(runs: list[dict]) -> str:
    """PSNR-vs-latency table of a depth sweep (one row per reuse vector)."""
    main, extra = _headers(runs)
    head = ["reuse", "avg PSNR", "avg SSIM", "ms / image"] + [f"{c} PSNR" for c in main + extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        avg = r.get("benchmark_average", r["table1_average"])  # the chosen benchmark's average
        cells = [",".join(map(str, r["reuse"])), f"{avg['psnr']:.2f}", f"{avg['ssim']:.4f}",
                 f"{1000 * sweep_latency(r):.1f}"]
        cells += [f"{r['columns'][c]['psnr']:.2f}" if c in r["columns"] else "–" for c in main + extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _protocol_line(runs)


def sweep_latency(run: dict) -> float:
    """Mean forward seconds per image over every scored image of the run."""
    tot = sum(c["seconds_per_image"] * c["n"] for c in run["columns"].values())
    n = sum(c["n"] for c in run["columns"].values())
    return tot / n if n else math.nan


def sweep_plot(runs: list[dict], path: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [1000 * sweep_latency(r) for r in runs]
    ys = [r.get("benchmark_average", r["table1_average"])["psnr"] for r in runs]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(xs, ys, "o-")
    for x, y, r in zip(xs, ys, runs):
        ax.annotate(",".join(map(str, r["reuse"])), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("latency (ms / image)")
    ax.set_ylabel("average PSNR (dB)")
    ax.set_title(f"DyNet depth sweep ({runs[0]['protocol']} protocol)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def json_safe(obj: Any) -> Any:
    """Replace inf/nan floats by strings ("inf", "nan") so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def load_runs(paths: list[str | Path]) -> list[dict]:
    """Earlier ``evaluate --json`` results as runs for one table; each row is named by its file stem."""
    import json

    def back(obj: Any) -> Any:  # json_safe's strings -> floats again
        if isinstance(obj, str) and obj in ("inf", "-inf", "nan"):
            return float(obj)
        if isinstance(obj, dict):
            return {k: back(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [back(v) for v in obj]
        return obj

    runs = []
    for p in paths:
        run = back(json.loads(Path(p).read_text()))
        if "columns" not in run:
            raise ValueError(f"{p}: not a single-model evaluate --json result (a sweep?)")
        runs.append({**run, "model": Path(p).stem})
    return runs
