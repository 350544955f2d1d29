"""Build the official training / test layout from your downloaded folders, through the official lists.

    python -m training.prepare_data all --src ~/Downloads/datasets --out data
    python -m training.prepare_data tests --src ~/Downloads/datasets --out data --link sym
    python -m training.prepare_data all5 tests5 --src ~/dl/BSD400 ~/dl/WED ~/dl/RainTrainL ~/dl/OTS ~/dl/GOPRO_Large ~/dl/LOL --out data

Why: the official sets are defined by name lists (BSD400+WED 5,144 names, Rain100L 200, OTS 72,135);
the folders users download hold more (or fewer) files, and the trainers read whatever a folder holds.
This command links exactly the listed files into the layout the trainers and ``training.evaluate``
read (PromptIR/DyNet ``data/Train`` + ``test``; AdaIR's for GoPro/LOL), and says what was missing.

Sets: ``denoise derain dehaze`` (listed), ``deblur lowlight`` (GoPro / LOL-v1 train), ``test-bsd68
test-urban100 test-rain100l test-sots test-gopro test-lol``; groups ``all`` (the 3 training sets),
``all5`` (+ deblur, lowlight), ``tests`` (the 4 test sets of Table 1 + Urban100), ``tests5`` (+ GoPro,
LOL). Output ``OUT/prepare_report.json``: per set ``listed`` (list entries, or the standard size of a
set without a list), ``found``, ``missing`` (names), ``ambiguous``, ``unpaired``, ``extra_ignored``
(image files beside the used ones that the list does not name), ``failed`` (files that could not be
linked: name + error), ``loadable`` (the set as the trainers read it back), the out folder and the
list's sha256. A named set of which nothing is found (or a request of which nothing is found) stops
the command before anything is written (exit 2); an absent set that came with a group is skipped and
reported. Each set folder is a stage folder (``_stage.json``): rerunning with the same sources
resumes, other sources are refused unless ``--overwrite``.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from common.stagefolder import StageRefused, check_settings, folder_lock, refuse_exit
from training import official_lists as ol
from training import prepare_sets as ps
from training import restoration_data as rd

log = logging.getLogger("training.prepare_data")

OUT_DIRS = {
    "denoise": "Train/Denoise", "derain": "Train/Derain", "dehaze": "Train/Dehaze",
    "deblur": "Train/Deblur", "lowlight": "Train/Enhance",
    "test-bsd68": "test/denoise/bsd68", "test-urban100": "test/denoise/urban100",
    "test-rain100l": "test/derain/Rain100L", "test-sots": "test/dehaze",
    "test-gopro": "test/deblur/gopro", "test-lol": "test/lowlight/lol",
}
GROUPS = {
    "all": ("denoise", "derain", "dehaze"),
    "all5": ("denoise", "derain", "dehaze", "deblur", "lowlight"),
    "tests": ("test-bsd68", "test-urban100", "test-rain100l", "test-sots"),
    "tests5": ("test-bsd68", "test-urban100", "test-rain100l", "test-sots", "test-gopro", "test-lol"),
}
LINKS = ("hard", "sym", "copy")
REPORT = "prepare_report.json"


@dataclass
class PrepareConfig:
    """Lay out the official training/test sets from downloaded folders, through the official name lists."""
    sets: list[str] = field(metadata={"positional": True, "help": "sets or groups: all all5 tests tests5 denoise derain dehaze deblur lowlight test-bsd68 test-urban100 test-rain100l test-sots test-gopro test-lol"})
    src: list[str] = field(metadata={"help": "folder(s) holding your downloads, searched recursively by file name"})
    out: str = field(default="data", metadata={"help": "output root: OUT/Train/... and OUT/test/... + OUT/prepare_report.json"})
    link: str = field(default="hard", metadata={"help": "hard (hard links; copies where the file system refuses) | sym (absolute symlinks) | copy"})
    overwrite: bool = field(default=False, metadata={"help": "discard a set folder prepared from other sources / link mode and build it again"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar"})


def expand_sets(names: list[str]) -> list[str]:
    out: list[str] = []
    for raw in names:
        for name in (n.strip().lower() for n in raw.split(",") if n.strip()):
            for s in GROUPS.get(name, (name,)):
                if s not in OUT_DIRS:
                    raise ValueError(f"unknown set {name!r}; choose from {', '.join(list(GROUPS) + list(OUT_DIRS))}")
                if s not in out:
                    out.append(s)
    if not out:
        raise ValueError("no set given")
    return out


def place(src: Path, dest: Path, link: str) -> bool:
    """Link/copy ``src`` to ``dest`` atomically; returns True when a hard link fell back to a copy."""
    if dest.exists() or dest.is_symlink():
        same = dest.resolve() == src.resolve() if link == "sym" else (
            os.path.samefile(dest, src) if link == "hard" else dest.stat().st_size == src.stat().st_size)
        if same:
            return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fell_back = False
    if link == "sym":
        os.symlink(src.resolve(), tmp)
    elif link == "hard":
        try:
            os.link(src.resolve(), tmp)  # the file itself, not a symlink to it
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(src, tmp)
            fell_back = True
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return fell_back


def _clear(folder: Path) -> None:
    for child in folder.iterdir():
        if child.name in (".lock", ".lock.holder"):
            continue
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def check_loadable(name: str, folder: Path) -> int:
    """Read the prepared set back with the trainers' / evaluator's own readers; returns its size."""
    if name in ("denoise", "test-bsd68", "test-urban100"):
        return len(rd.list_images(folder, recursive=name == "denoise", what=name))
    if name in ("derain", "test-rain100l"):
        return len(rd.list_derain_pairs(folder, what=name))
    if name in ("dehaze", "test-sots"):
        return len(rd.list_dehaze_pairs(folder, what=name))
    return len(rd.list_same_name_pairs(folder, rd.TASK_PAIR_DIRS["deblur" if "gopro" in name or name == "deblur" else "lowlight"], what=name))


def _place_all(m: ps.SetMatch, folder: Path, cfg: PrepareConfig) -> tuple[int, list[dict]]:
    """Link every item; an unreadable source is recorded (name, error) and the rest goes on."""
    fell_back, failed = 0, []
    for item in tqdm(m.items, desc=m.set, disable=not cfg.progress, leave=False):
        try:
            fell_back += place(item.gt_src, folder / item.gt_out, cfg.link)
            if item.lq_src is not None:
                fell_back += place(item.lq_src, folder / item.lq_out, cfg.link)
        except OSError as exc:
            failed.append({"name": item.name, "error": f"{type(exc).__name__}: {exc}"})
    if failed:
        log.warning("%s: %d files could not be placed (see prepare_report.json 'failed')", m.set, len(failed))
    return fell_back, failed


def _report_entry(m: ps.SetMatch, folder: str, cfg: PrepareConfig, fell_back: int) -> dict:
    entry = {"listed": m.listed, "found": m.found, "missing": m.missing, "extra_ignored": m.extra_ignored,
             "ambiguous": m.ambiguous, "unpaired": m.unpaired, "out": folder, "link": cfg.link,
             "copied_instead_of_linked": fell_back, "source_dirs": m.source_dirs}
    if m.set in ol.LISTS:
        spec = ol.LISTS[m.set]
        entry.update(list=spec.file, list_official_path=spec.official_path, list_sha256=spec.sha256)
    else:
        entry.update(list=None, expected=m.listed, count_ok=m.found == m.listed,
                     missing_count=max(0, m.listed - m.found),
                     note="no official list: listed = the standard split size; missing names cannot be known")
    return entry


def _nothing_found(m: ps.SetMatch) -> str:
    if m.set in ol.LISTS:
        example = ", ".join(e for e in ol.read_list(m.set)[:3])
        hint = f"none of the {m.listed} files named in {ol.LISTS[m.set].file} (e.g. {example})"
    else:
        hint = f"no folder fitting {ps.FOUND_SPECS[m.set].help}"
    amb = f"; {len(m.ambiguous)} names are ambiguous (same name, different bytes): point --src at one copy" if m.ambiguous else ""
    return f"{m.set}: {hint} was found under the --src folders{amb}"


def run(cfg: PrepareConfig) -> dict:
    """Match every requested set (read-only), refuse if any is empty, then link and report."""
    if cfg.link not in LINKS:
        raise ValueError(f"--link must be one of {', '.join(LINKS)}, got {cfg.link!r}")
    names = expand_sets(cfg.sets)
    missing_src = [s for s in cfg.src if not Path(s).is_dir()]
    if missing_src:
        raise StageRefused(f"--src folder(s) not found: {', '.join(missing_src)}")
    out = Path(cfg.out)
    index = ps.FileIndex(cfg.src, skip=[out / d for d in OUT_DIRS.values()])  # never read our own output
    matches = [ps.match_set(index, n) for n in names]
    empty = [m for m in matches if not m.found]
    named = {n.strip().lower() for raw in cfg.sets for n in raw.split(",")}
    if empty and (len(empty) == len(matches) or any(m.set in named for m in empty)):
        raise StageRefused("nothing matches; nothing was written:\n  " + "\n  ".join(_nothing_found(m) for m in empty)
                           + f"\n(searched {', '.join(str(r) for r in index.roots)})")
    for m in empty:  # only sets that came with a group (e.g. Urban100 in 'tests') are skipped
        log.warning("skipped (part of a group): %s", _nothing_found(m))
    sources = [str(r) for r in index.roots]
    with folder_lock(out, "prepare_data"):
        report_path = out / REPORT
        import json
        report = json.loads(report_path.read_text()) if report_path.is_file() else {"sets": {}}
        for m in matches:
            if not m.found:  # keep what an earlier run prepared there
                prev = report["sets"].get(m.set)
                if prev is None or prev.get("skipped"):
                    report["sets"][m.set] = {**_report_entry(m, OUT_DIRS[m.set], cfg, 0), "skipped": _nothing_found(m)}
                continue
            folder = out / OUT_DIRS[m.set]
            folder.mkdir(parents=True, exist_ok=True)
            settings = {"set": m.set, "sources": sources, "link": cfg.link,
                        "list_sha256": ol.LISTS[m.set].sha256 if m.set in ol.LISTS else None}
            check_settings(folder, f"prepare_data:{m.set}", settings, overwrite=cfg.overwrite, clear=_clear)
            fell_back, failed = _place_all(m, folder, cfg)
            loadable = check_loadable(m.set, folder)
            report["sets"][m.set] = {**_report_entry(m, OUT_DIRS[m.set], cfg, fell_back), "failed": failed,
                                     "loadable": loadable}
            log.info("%s: %d of %d found, %d missing, %d extra ignored -> %s", m.set, m.found, m.listed,
                     len(m.missing), m.extra_ignored, folder)
        report.update(official_lists=ol.SOURCE, provenance="training/resources/official_lists/PROVENANCE.md")
        atomic_write_json(report_path, report)
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = parse_config(PrepareConfig, argv)
    try:
        report = run(cfg)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    except (ValueError, ol.OfficialListError, rd.DatasetLayoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in expand_sets(cfg.sets):
        e = report["sets"][name]
        flag = "" if e["found"] == e["listed"] else ("   <-- SKIPPED: nothing found" if e.get("skipped") else "   <-- incomplete")
        print(f"{name:14s} {e['found']:6d} / {e['listed']:6d} found, {e.get('missing_count', len(e['missing'])):5d} missing, "
              f"{e['extra_ignored']:6d} extra ignored  -> {Path(cfg.out) / e['out']}{flag}")
    print(f"report: {Path(cfg.out) / REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
