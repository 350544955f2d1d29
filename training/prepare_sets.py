"""Find the official training / test sets inside a user's downloads (by name, never by folder scan).

Two kinds of set:

* **listed** (denoise, derain, dehaze): the bundled official list (:mod:`training.official_lists`)
  names every file. Each name is looked up by its base name anywhere under the ``--src`` folders;
  when several files share a base name the one whose parent folders best match the listed path
  (``rainy/``, ``synthetic/part1/``...) wins, a copy under a ``test`` folder loses for a training set
  (and under ``train`` for a test set); a tie between files with different bytes is *ambiguous* and
  reported, never guessed.
* **discovered** (GoPro, LOL-v1 and the test sets, which have no official list): a folder whose path
  names the data set (``gopro``, ``our485``, ``sots``/``outdoor``...) and holds the degraded/clean
  subfolder pair (``blur``/``sharp``, ``low``/``high``, ``hazy``/``gt``, ``input``/``target``...);
  the count is checked against the standard split size.

Either way the result is a list of :class:`Item` (source file -> path in the official layout) plus
what was missing and how many image files beside the used ones were ignored.
"""

from __future__ import annotations

import filecmp
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from training import official_lists as ol
from training.restoration_data import IMAGE_EXTS


@dataclass(frozen=True)
class Item:
    """One output: the clean file and, for pair sets, the degraded one (paths relative to the set folder)."""
    name: str
    gt_src: Path
    gt_out: str
    lq_src: Path | None = None
    lq_out: str | None = None


@dataclass
class SetMatch:
    set: str
    listed: int
    items: list[Item] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)
    unpaired: list[str] = field(default_factory=list)
    extra_ignored: int = 0
    source_dirs: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.items)


# ----------------------------------------------------------------------------- the file index

def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


class FileIndex:
    """Every image under the source folders, by base name (one walk; ``skip``: our own output folders)."""

    def __init__(self, roots: Sequence[str | Path], skip: Sequence[Path] = ()) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.by_name: dict[str, list[Path]] = {}
        self.dirs: dict[Path, list[str]] = {}
        skips = [p.resolve() for p in skip]
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root):
                d = Path(dirpath)
                if any(d == sk or sk in d.parents for sk in skips):
                    dirnames[:] = []
                    continue
                dirnames.sort()
                images = sorted(f for f in filenames if _is_image(f) and os.path.isfile(os.path.join(dirpath, f)))
                if images:
                    self.dirs[d] = images
                for f in images:
                    self.by_name.setdefault(f, []).append(d / f)

    def rel(self, path: Path) -> PurePosixPath:
        """Path relative to the parent of its source root (so the root's own name counts for hints)."""
        for root in self.roots:
            if path == root or root in path.parents:
                return PurePosixPath(root.name) / path.relative_to(root).as_posix()
        return PurePosixPath(path.as_posix())


def _split_penalty(index: FileIndex, path: Path, split: str) -> int:
    other = "test" if split == "train" else "train"
    return int(any(other in part.lower() for part in index.rel(path).parts[:-1]))


def _suffix_len(path: Path, want_parents: Sequence[str]) -> int:
    have = [p.lower() for p in path.parts[:-1]]
    n = 0
    for a, b in zip(reversed(have), reversed([w.lower() for w in want_parents])):
        if a != b:
            break
        n += 1
    return n


def pick(index: FileIndex, name: str, want_parents: Sequence[str], split: str) -> tuple[Path | None, list[Path]]:
    """(chosen file, []) or (None, tied candidates) or (None, []) when the name is absent."""
    cands = index.by_name.get(name, [])
    if len(cands) <= 1:
        return (cands[0] if cands else None), []
    scored = sorted(cands, key=lambda p: (_split_penalty(index, p, split), -_suffix_len(p, want_parents), str(p)))
    best_key = (_split_penalty(index, scored[0], split), -_suffix_len(scored[0], want_parents))
    tied = [p for p in scored if (_split_penalty(index, p, split), -_suffix_len(p, want_parents)) == best_key]
    if len(tied) == 1 or all(filecmp.cmp(tied[0], p, shallow=False) for p in tied[1:]):
        return tied[0], []
    return None, tied


def _extra_count(index: FileIndex, used: set[Path], named: set[str] | None = None) -> int:
    """Image files in the folders the set's files came from that the set does not use.

    With ``named`` (a list's base names) only files the list does not name count: a listed file left
    out because its pair is missing or its name is ambiguous is reported as such, not as extra.
    """
    dirs = {p.parent for p in used}
    return sum(1 for d in dirs for f in index.dirs.get(d, [])
               if (f not in named if named is not None else d / f not in used))


# ----------------------------------------------------------------------------- listed sets

def _listed_items(task: str, entry: str) -> list[tuple[str, list[str], str]]:
    """(base name to find, wanted parent folders, output path) for each file of one list entry."""
    if task == "denoise":
        return [(entry, [], entry)]
    parts = PurePosixPath(entry).parts
    if task == "derain":
        gt = ol.rain_gt_name(entry)
        return [(gt, ["gt"], f"gt/{gt}"), (parts[-1], list(parts[:-1]), entry)]
    gt = ol.haze_gt_name(entry)
    return [(gt, ["original"], f"original/{gt}"), (parts[-1], list(parts[:-1]), entry)]


def match_listed(index: FileIndex, task: str) -> SetMatch:
    entries = ol.read_list(task)
    m = SetMatch(set=task, listed=len(entries))
    used: set[Path] = set()
    for entry in entries:
        found: list[Path] = []
        specs = _listed_items(task, entry)
        for name, parents, _ in specs:
            path, tied = pick(index, name, parents, "train")
            if tied:
                m.ambiguous[name] = [str(p) for p in tied]
            if path is None:
                break
            found.append(path)
        if len(found) != len(specs):
            m.missing.append(entry)
            continue
        if task == "denoise":
            m.items.append(Item(name=entry, gt_src=found[0], gt_out=specs[0][2]))
        else:
            m.items.append(Item(name=entry, gt_src=found[0], gt_out=specs[0][2], lq_src=found[1], lq_out=specs[1][2]))
        used.update(found)
    named = {name for entry in entries for name, _, _ in _listed_items(task, entry)}
    m.extra_ignored = _extra_count(index, used, named)
    m.source_dirs = sorted({str(p.parent) for p in used})
    return m


# ----------------------------------------------------------------------------- discovered sets

KeyFn = Callable[[str], list[str]]
_SAME: KeyFn = lambda stem: [stem]
_RAIN: KeyFn = lambda stem: [stem, "no" + stem]
_HAZE: KeyFn = lambda stem: [stem.split("_")[0]]


@dataclass(frozen=True)
class FoundSpec:
    """A set without an official list: where it is recognised and how it is laid out."""
    name: str
    split: str  # train | test
    where: str  # regex on the lower-cased folder path (source root's own name included)
    pair_dirs: tuple[tuple[str, str], ...] = ()  # (degraded, clean) subfolder names; () = clean images only
    keys: KeyFn = _SAME
    out_dirs: tuple[str, str] = ("input", "target")
    help: str = ""


FOUND_SPECS = {
    "deblur": FoundSpec("deblur", "train", r"gopro.*train|train.*gopro", (("blur", "sharp"), ("input", "target")),
                        out_dirs=("blur", "sharp"), help="GoPro train: GOPRO_Large/train/<seq>/{blur,sharp}"),
    "lowlight": FoundSpec("lowlight", "train", r"our485|lol.*train", (("low", "high"), ("low", "gt"), ("input", "target")),
                          out_dirs=("low", "gt"), help="LOL-v1 train: LOLdataset/our485/{low,high}"),
    "test-bsd68": FoundSpec("test-bsd68", "test", r"bsd68(/original(_png)?)?$", help="CBSD68/original or .../bsd68 (clean images)"),
    "test-urban100": FoundSpec("test-urban100", "test", r"urban100(/hr|/original)?$", help="Urban100 or Urban100/HR (clean images)"),
    "test-rain100l": FoundSpec("test-rain100l", "test", r"rain100l", (("input", "target"), ("rainy", "gt"), ("rain", "norain")),
                               keys=_RAIN, help="Rain100L test: .../Rain100L/{input,target} (PromptIR) or {rainy,gt}"),
    "test-sots": FoundSpec("test-sots", "test", r"sots.*outdoor|outdoor.*sots|test/dehaze",
                           (("hazy", "gt"), ("hazy", "clear"), ("input", "target")), keys=_HAZE,
                           help="SOTS outdoor: SOTS/outdoor/{hazy,gt} or PromptIR test/dehaze/{input,target}"),
    "test-gopro": FoundSpec("test-gopro", "test", r"gopro.*test|test.*gopro", (("blur", "sharp"), ("input", "target")),
                            help="GoPro test: GOPRO_Large/test/<seq>/{blur,sharp} or test/GoPro/{input,target}"),
    "test-lol": FoundSpec("test-lol", "test", r"eval15|lol.*test", (("low", "high"), ("low", "gt"), ("input", "target")),
                          help="LOL-v1 test: LOLdataset/eval15/{low,high}"),
}


def _groups(index: FileIndex, spec: FoundSpec) -> list[tuple[Path, Path | None, Path]]:
    """(group folder, degraded folder or None, clean folder) for every folder that fits ``spec``."""
    rx = re.compile(spec.where)
    out, seen = [], set()
    for d in sorted(index.dirs):
        for folder in (d.parent, d) if spec.pair_dirs else (d,):
            rel = index.rel(folder).as_posix().lower()
            if folder in seen or not rx.search(rel) or _split_penalty(index, folder / "x", spec.split):
                continue
            if not spec.pair_dirs:
                seen.add(folder)
                out.append((folder, None, folder))
                continue
            names = {c.name.lower(): c for c in folder.iterdir() if c.is_dir()} if folder.is_dir() else {}
            for lq, gt in spec.pair_dirs:
                if lq in names and gt in names:
                    seen.add(folder)
                    out.append((folder, names[lq], names[gt]))
                    break
    return out


def match_found(index: FileIndex, spec: FoundSpec) -> SetMatch:
    m = SetMatch(set=spec.name, listed=ol.EXPECTED_COUNTS[spec.name])
    groups = _groups(index, spec)
    used: set[Path] = set()
    for group, lq_dir, gt_dir in groups:
        prefix = "" if len(groups) == 1 else index.rel(group).name + "_"
        gts = [gt_dir / f for f in index.dirs.get(gt_dir, [])]
        if lq_dir is None:
            for p in gts:
                m.items.append(Item(name=p.name, gt_src=p, gt_out=prefix + p.name))
                used.add(p)
            continue
        by_stem: dict[str, list[Path]] = {}
        for p in gts:
            by_stem.setdefault(p.stem, []).append(p)
        lq_out, gt_out = spec.out_dirs
        for f in index.dirs.get(lq_dir, []):
            lq = lq_dir / f
            hit = next((by_stem[k] for k in spec.keys(lq.stem) if k in by_stem), None)
            if hit is None:
                m.unpaired.append(str(lq))
                continue
            gt = next((c for c in hit if c.suffix == lq.suffix), hit[0])
            m.items.append(Item(name=prefix + lq.name, lq_src=lq, lq_out=f"{lq_out}/{prefix}{lq.name}",
                                gt_src=gt, gt_out=f"{gt_out}/{prefix}{gt.name}"))
            used.update((lq, gt))
    m.extra_ignored = _extra_count(index, used)
    m.source_dirs = sorted({str(p.parent) for p in used})
    return m


def match_set(index: FileIndex, name: str) -> SetMatch:
    return match_listed(index, name) if name in ol.LISTS else match_found(index, FOUND_SPECS[name])
