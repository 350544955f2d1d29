"""DSRIR training lists: ``train_{mode}.csv`` files of ``target,degraded`` pairs, and their reader.

Format (that of the official datasets/train/*.csv): plain CSV, one pair per line, column 1 the
clean target, column 2 the degraded input, both relative to ``--train-dir`` with ``/`` separators,
no header (a first line ``target,degraded`` is accepted and skipped; note the official loader reads
the files with pandas' default header row and so silently drops the first pair - we do not). A
pair whose two paths are equal is a denoising pair: the trainer synthesises the noisy input on
the fly (Gaussian, sigma drawn from 0..55).

Layouts (``--layout``), paths relative to ``--train-dir``:

* ``dsrir`` (official utils/generate_dataset.py): noise ``BSD400/*`` + ``WED/gt/*``; rain
  ``Rain100L/train/rainy/rain-N.png`` -> ``Rain100L/train/gt/norain-N.png``; haze
  ``Reside/train/hazy/ID_*.jpg`` -> ``Reside/train/gt/ID.*``.
* ``promptir`` (PromptIR / DyNet data/Train): noise ``Denoise/*``; rain ``Derain/rainy/rain-N.png``
  -> ``Derain/gt/norain-N.png``; haze ``Dehaze/synthetic/part*/ID_*.jpg`` -> ``Dehaze/original/ID.*``.

Rain targets are ``no`` + the rainy name, else the same name. Degraded images with no target are
skipped and counted. ``all_in_one`` = noise + rain + haze. The official lists repeat Rain100L x25
(``--rain-repeat``) and use 5,000 hazy pairs (``--haze-max``, a seeded random subset; 0 = all).

    python -m training.make_lists --train-dir /data/all_in_one --layout dsrir --out-dir datasets/train
"""

from __future__ import annotations

import csv
import io
import logging
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from common.atomic import atomic_write_text
from common.cliconfig import parse_config

_LOG = logging.getLogger(__name__)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MODES = ("all_in_one", "noise", "rain", "haze")
HEADER = ("target", "degraded")


class PairEntry(NamedTuple):
    target: str
    degraded: str
    line: int  # 1-based line number in the list file (0 for pairs not read from a file)


class PairListError(ValueError):
    """Malformed lines in a pair list; ``problems`` holds ``(line_number, message)``."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]) -> None:
        self.path, self.problems = path, problems
        shown = "; ".join(f"line {n}: {msg}" for n, msg in problems[:20])
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} malformed line(s): {shown}{more}")


def _check_rel(p: str) -> str | None:
    if not p:
        return "empty path"
    pp = PurePosixPath(p.replace("\\", "/"))
    if pp.is_absolute() or (len(p) > 1 and p[1] == ":"):
        return f"absolute path {p!r} (paths must be relative to --train-dir)"
    if ".." in pp.parts:
        return f"path {p!r} leaves --train-dir ('..')"
    return None


def parse_pair_lines(text: str, path: Path) -> list[PairEntry]:
    entries, problems = [], []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = next(csv.reader([raw]))
        except csv.Error as exc:
            problems.append((n, f"unparsable CSV ({exc})"))
            continue
        row = [c.strip() for c in row]
        if n == 1 and tuple(c.lower() for c in row) == HEADER:
            continue
        if len(row) != 2:
            problems.append((n, f"expected 2 fields 'target,degraded', found {len(row)}: {raw!r}"))
            continue
        errs = [e for e in map(_check_rel, row) if e]
        if errs:
            problems.append((n, "; ".join(errs)))
            continue
        entries.append(PairEntry(row[0], row[1], n))
    if problems:
        raise PairListError(path, problems)
    return entries


def read_pair_list(path: Path) -> list[PairEntry]:
    """Read a list; raises :class:`PairListError` naming every malformed line (1-based numbers)."""
    return parse_pair_lines(Path(path).read_text(encoding="utf-8"), Path(path))


def missing_files(entries: Sequence[PairEntry], train_dir: Path) -> list[str]:
    """``"line N: path"`` for every listed file that does not exist under ``train_dir``."""
    out = []
    for e in entries:
        for p in dict.fromkeys((e.target, e.degraded)):
            if not (train_dir / p).is_file():
                out.append(f"line {e.line}: {p}")
    return out


def format_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for target, degraded in pairs:
        writer.writerow([target, degraded])
    return buf.getvalue()


def write_pair_list(path: Path, pairs: Sequence[tuple[str, str]]) -> None:
    atomic_write_text(path, format_pairs(pairs))


# ------------------------------------------------------------------ layouts
@dataclass(frozen=True)
class Layout:
    noise_dirs: tuple[str, ...]
    rain_degraded: str
    rain_target: str
    haze_degraded: str  # glob of folders relative to the train dir
    haze_target: str


LAYOUTS = {
    "dsrir": Layout(("BSD400", "WED/gt"), "Rain100L/train/rainy", "Rain100L/train/gt",
                    "Reside/train/hazy", "Reside/train/gt"),
    "promptir": Layout(("Denoise",), "Derain/rainy", "Derain/gt", "Dehaze/synthetic/part*", "Dehaze/original"),
}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def _need_dir(root: Path, rel: str, task: str) -> Path:
    d = root / rel
    if not d.is_dir():
        raise FileNotFoundError(f"{task}: folder {d} not found (layout expects {rel} under --train-dir)")
    return d


def noise_pairs(root: Path, layout: Layout) -> list[tuple[str, str]]:
    pairs = []
    for rel in layout.noise_dirs:
        pairs += [(_rel(p, root), _rel(p, root)) for p in _images(_need_dir(root, rel, "noise"))]
    return pairs


def rain_pairs(root: Path, layout: Layout) -> tuple[list[tuple[str, str]], int]:
    deg_dir = _need_dir(root, layout.rain_degraded, "rain")
    tgt_dir = _need_dir(root, layout.rain_target, "rain")
    pairs, unpaired = [], 0
    for p in _images(deg_dir):
        target = next((tgt_dir / n for n in ("no" + p.name, p.name) if (tgt_dir / n).is_file()), None)
        if target is None:
            unpaired += 1
            continue
        pairs.append((_rel(target, root), _rel(p, root)))
    return pairs, unpaired


def haze_pairs(root: Path, layout: Layout) -> tuple[list[tuple[str, str]], int]:
    deg_dirs = sorted(d for d in root.glob(layout.haze_degraded) if d.is_dir())
    if not deg_dirs:
        raise FileNotFoundError(f"haze: no folder matches {root / layout.haze_degraded}")
    targets = {p.stem: p for p in _images(_need_dir(root, layout.haze_target, "haze"))}
    pairs, unpaired = [], 0
    for d in deg_dirs:
        for p in _images(d):
            target = targets.get(p.stem.split("_")[0])
            if target is None:
                unpaired += 1
                continue
            pairs.append((_rel(target, root), _rel(p, root)))
    return pairs, unpaired


def build_lists(root: Path, layout: Layout, modes: Sequence[str], *, rain_repeat: int, haze_max: int,
                seed: int) -> dict[str, list[tuple[str, str]]]:
    need = set(modes)
    if "all_in_one" in need:
        need |= {"noise", "rain", "haze"}
    parts: dict[str, list[tuple[str, str]]] = {}
    if "noise" in need:
        parts["noise"] = noise_pairs(root, layout)
    if "rain" in need:
        rain, unpaired = rain_pairs(root, layout)
        if unpaired:
            _LOG.warning("rain: %d rainy images without a target skipped", unpaired)
        parts["rain"] = rain * rain_repeat
    if "haze" in need:
        haze, unpaired = haze_pairs(root, layout)
        if unpaired:
            _LOG.warning("haze: %d hazy images without a target skipped", unpaired)
        if 0 < haze_max < len(haze):
            haze = sorted(random.Random(seed).sample(haze, haze_max))
        parts["haze"] = haze
    for task, pairs in parts.items():
        if not pairs:
            raise ValueError(f"{task}: no image pairs found under {root}")
    if "all_in_one" in modes:
        parts["all_in_one"] = parts["noise"] + parts["rain"] + parts["haze"]
    return {m: parts[m] for m in modes}


@dataclass
class MakeListsConfig:
    """Write DSRIR training lists train_{mode}.csv (target,degraded pairs) from a folder layout."""

    train_dir: str = field(metadata={"help": "dataset root; list paths are relative to it"})
    out_dir: str = field(default="datasets/train", metadata={"help": "where train_{mode}.csv are written"})
    layout: str = field(default="dsrir", metadata={"help": "folder layout: dsrir | promptir (see module doc)"})
    modes: list[str] = field(default_factory=lambda: list(MODES), metadata={
        "help": "lists to write: all_in_one noise rain haze"})
    rain_repeat: int = field(default=25, metadata={"help": "repeat the rain pairs this many times (official 25)"})
    haze_max: int = field(default=5000, metadata={
        "help": "keep at most this many hazy pairs, a seeded random subset (official 5000; 0 = all)"})
    seed: int = field(default=1234, metadata={"help": "seed of the hazy subset"})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(MakeListsConfig, argv)
    if cfg.layout not in LAYOUTS or not set(cfg.modes) <= set(MODES) or cfg.rain_repeat < 1:
        print(f"ERROR: --layout must be one of {sorted(LAYOUTS)}, --modes from {MODES}, --rain-repeat >= 1",
              file=sys.stderr)
        return 2
    root = Path(cfg.train_dir)
    try:
        lists = build_lists(root, LAYOUTS[cfg.layout], cfg.modes, rain_repeat=cfg.rain_repeat,
                            haze_max=cfg.haze_max, seed=cfg.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    for mode, pairs in lists.items():
        path = Path(cfg.out_dir) / f"train_{mode}.csv"
        write_pair_list(path, pairs)
        _LOG.info("wrote %s: %d pairs", path, len(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
