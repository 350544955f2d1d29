"""Speed of training.prepare_data on full-size official lists (matching is by name, nothing is decoded).

``python benchmarks/prepare_data_speed.py [--sets dehaze derain denoise] [--link hard] [--out prepare_data_speed.json]``

Builds a download-shaped tree of *empty* placeholder files named exactly like every entry of the
chosen official lists (OTS: ``OTS_BETA/haze/partK/ID_A_B.jpg`` + ``OTS_BETA/clear/ID.jpg``;
Rain100L: ``RainTrainL/{rain,norain}-N.png``; denoise: ``WED/*.bmp`` + ``BSD400/*.jpg``) in a temporary
folder, then times a first ``prepare_data`` run (index + match + link + read-back) and a rerun that
finds everything in place. Reports seconds and files per second; the machine's load is recorded.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from training import official_lists as ol
from training import prepare_data


@dataclass
class PrepareSpeedConfig:
    """Time prepare_data on placeholder trees named like the full official lists."""
    sets: list[str] = field(default_factory=lambda: ["dehaze", "derain", "denoise"], metadata={"help": "listed sets to build and time"})
    link: str = field(default="hard", metadata={"help": "hard | sym | copy"})
    out: str = field(default="prepare_data_speed.json", metadata={"help": "result JSON"})


def make_tree(root: Path, task: str) -> int:
    """Placeholder files for every entry of ``task``'s list; returns the number of files made."""
    made: set[Path] = set()
    for e in ol.read_list(task):
        name = Path(e).name
        if task == "denoise":
            paths = [root / ("WED" if name.endswith(".bmp") else "BSD400") / name]
        elif task == "derain":
            paths = [root / "RainTrainL" / name, root / "RainTrainL" / ol.rain_gt_name(e)]
        else:
            paths = [root / "OTS_BETA" / "haze" / Path(e).parent.name / name, root / "OTS_BETA" / "clear" / ol.haze_gt_name(e)]
        for p in paths:
            if p not in made:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
                made.add(p)
    return len(made)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(PrepareSpeedConfig, argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="prepare_speed_") as tmp:
        for task in cfg.sets:
            src, out = Path(tmp) / task / "dl", Path(tmp) / task / "data"
            files = make_tree(src, task)
            args = [task, "--src", str(src), "--out", str(out), "--link", cfg.link, "--no-progress"]
            t0 = time.perf_counter()
            prepare_data.main(args)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            prepare_data.main(args)
            rerun = time.perf_counter() - t0
            rows.append({"set": task, "entries": len(ol.read_list(task)), "files": files, "first_s": round(first, 2),
                         "rerun_s": round(rerun, 2), "files_per_s_first": round(files / first, 1)})
            print(rows[-1])
    result = {"rows": rows, "link": cfg.link, "cpu_count": os.cpu_count(), "loadavg_1m": os.getloadavg()[0],
              "note": "empty placeholder files: names are matched, nothing is decoded"}
    atomic_write_json(cfg.out, result)
    return result


if __name__ == "__main__":
    main()
