"""Task datasets in the standard all-in-one layouts (PromptIR / DyNet), validated up front.

Test sets (``training.evaluate``):
  * denoise  — a flat folder of clean images (BSD68, Urban100); noise is added at evaluation time.
  * derain   — ``ROOT/{input,target}`` with the same file name in both (PromptIR), or DyNet's
    ``rain-N.png`` -> ``norain-N.png`` naming; ``ROOT/{rain,norain}`` and ``ROOT/{rainy,gt}`` also accepted.
  * dehaze   — ``ROOT/{input,target}``: hazy ``ID_A_B.jpg`` -> clear ``ID.png`` (id = name before ``_``).
Training sets (``training.finetune``):
  * denoise  — one or more folders of clean images (BSD400, WED), searched recursively.
  * derain   — ``ROOT/{rainy,gt}`` (``rain-N`` -> ``norain-N``) or any of the pair layouts above.
  * dehaze   — ``ROOT/{synthetic,original}`` (RESIDE OTS: ``synthetic/partK/ID_*.jpg`` -> ``original/ID.*``)
    or ``ROOT/{input,target}``.
Every problem (missing folder, unmatched names, empty set) raises :class:`DatasetLayoutError` naming
the path and the layout expected, before any model work starts. Files are always in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from training.augment import PROMPTIR_MODES, add_gaussian_noise, orient_mode
from training.evaluation.metrics import center_crop_multiple

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DERAIN_DIRS = (("input", "target"), ("rain", "norain"), ("rainy", "gt"))
DEHAZE_DIRS = (("input", "target"), ("synthetic", "original"), ("hazy", "clear"))
# the 5-task benchmark's extra tasks (AdaIR layouts: Train/Deblur/{blur,sharp}, Train/Enhance/{low,gt})
TASK_PAIR_DIRS = {"deblur": (("blur", "sharp"), ("input", "target")),
                  "lowlight": (("low", "gt"), ("low", "high"), ("input", "target"))}


class DatasetLayoutError(ValueError):
    """A dataset folder does not match the layout it was given as."""


@dataclass(frozen=True)
class Pair:
    name: str  # the degraded file's stem (used for saved images)
    lq: Path
    gt: Path


def list_images(folder: str | Path, recursive: bool = False, what: str = "image folder") -> list[Path]:
    """Sorted image files in ``folder``; raises if the folder is missing or holds no images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"{what}: folder not found: {folder}")
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DatasetLayoutError(f"{what}: no images ({', '.join(sorted(IMAGE_EXTS))}) in {folder}")
    return files


def _find_pair_dirs(root: Path, candidates: Sequence[tuple[str, str]], what: str) -> tuple[Path, Path]:
    if not root.is_dir():
        raise DatasetLayoutError(f"{what}: folder not found: {root}")
    for lq, gt in candidates:
        if (root / lq).is_dir() and (root / gt).is_dir():
            return root / lq, root / gt
    layouts = ", ".join(f"{root}/{{{a},{b}}}" for a, b in candidates)
    raise DatasetLayoutError(f"{what}: expected one of the layouts {layouts}; found subfolders "
                             f"{sorted(p.name for p in root.iterdir() if p.is_dir())}")


def _match(lq_files: list[Path], gt_files: list[Path], keys_for, what: str, lq_dir: Path,
           gt_dir: Path) -> list[Pair]:
    by_stem: dict[str, list[Path]] = {}
    for p in gt_files:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, missing = [], []
    for p in lq_files:
        hit = None
        for key in keys_for(p):
            cands = by_stem.get(key)
            if cands:
                same_ext = [c for c in cands if c.suffix == p.suffix]
                hit = (same_ext or cands)[0]
                break
        if hit is None:
            missing.append(p.name)
        else:
            pairs.append(Pair(name=p.stem, lq=p, gt=hit))
    if missing:
        raise DatasetLayoutError(
            f"{what}: {len(missing)} of {len(lq_files)} degraded images in {lq_dir} have no clean "
            f"counterpart in {gt_dir} (first: {missing[:5]})")
    return pairs


def _derain_keys(p: Path) -> list[str]:
    return [p.stem, "no" + p.stem]  # same name (PromptIR) or rain-N -> norain-N (DyNet)


def _dehaze_keys(p: Path) -> list[str]:
    return [p.stem.split("_")[0]]  # ID_A_B -> ID


def list_derain_pairs(root: str | Path, what: str = "derain set") -> list[Pair]:
    lq_dir, gt_dir = _find_pair_dirs(Path(root), DERAIN_DIRS, what)
    return _match(list_images(lq_dir, what=what), list_images(gt_dir, what=what), _derain_keys,
                  what, lq_dir, gt_dir)


def list_dehaze_pairs(root: str | Path, what: str = "dehaze set") -> list[Pair]:
    lq_dir, gt_dir = _find_pair_dirs(Path(root), DEHAZE_DIRS, what)
    return _match(list_images(lq_dir, recursive=True, what=what), list_images(gt_dir, what=what),
                  _dehaze_keys, what, lq_dir, gt_dir)


def list_same_name_pairs(root: str | Path, candidates: Sequence[tuple[str, str]],
                         what: str = "pair set") -> list[Pair]:
    """Pairs with the same file stem in the degraded and clean folders (GoPro, LOL)."""
    lq_dir, gt_dir = _find_pair_dirs(Path(root), candidates, what)
    return _match(list_images(lq_dir, what=what), list_images(gt_dir, what=what), lambda p: [p.stem],
                  what, lq_dir, gt_dir)


def read_rgb(path: Path) -> np.ndarray:
    """H x W x 3 uint8 (PIL ``convert('RGB')``, as the official loaders)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def iter_denoise_set(files: Sequence[Path], sigma: float, crop_base: int,
                     rng: np.random.RandomState) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, noisy uint8, clean uint8) per clean image, in the given (sorted) order."""
    for path in files:
        clean = center_crop_multiple(read_rgb(path), crop_base)
        yield path.stem, add_gaussian_noise(clean, sigma, rng), clean


def iter_pair_set(pairs: Sequence[Pair], crop_base: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, degraded uint8, clean uint8) per pair, both centre-cropped to ``crop_base``."""
    for pair in pairs:
        lq = center_crop_multiple(read_rgb(pair.lq), crop_base)
        gt = center_crop_multiple(read_rgb(pair.gt), crop_base)
        if lq.shape != gt.shape:
            raise DatasetLayoutError(f"size mismatch: {pair.lq} is {lq.shape[1]}x{lq.shape[0]} but "
                                     f"{pair.gt} is {gt.shape[1]}x{gt.shape[0]}")
        yield pair.name, lq, gt


# ----------------------------------------------------------------------------- training patches

def augment(img: np.ndarray, mode: int) -> np.ndarray:
    """PromptIR's ``data_augmentation`` modes 0..7 on H x W x C (1-7 are the non-identity ones)."""
    return np.ascontiguousarray(orient_mode(img, mode, PROMPTIR_MODES))


def random_patch(imgs: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random ``size`` x ``size`` window from each image (reflect-padded if smaller)."""
    h, w = imgs[0].shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        imgs = [np.pad(i, ((0, ph), (0, pw), (0, 0)), mode="reflect") for i in imgs]
        h, w = imgs[0].shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return [i[y:y + size, x:x + size] for i in imgs]


# ----------------------------------------------------------------------------- training sources

TASKS = ("denoise", "derain", "dehaze", "deblur", "lowlight")  # index = the batch's "task" code


@dataclass
class TrainSources:
    """Validated training files per task (only the tasks being trained are filled)."""
    denoise: list[Path]
    derain: list[Pair]
    dehaze: list[Pair]
    deblur: list[Pair] = field(default_factory=list)
    lowlight: list[Pair] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        sizes = {"denoise": len(self.denoise), "derain": len(self.derain), "dehaze": len(self.dehaze)}
        sizes.update({t: len(getattr(self, t)) for t in ("deblur", "lowlight") if getattr(self, t)})
        return sizes

    def size(self, task: str) -> int:
        return len(getattr(self, task))


def parse_tasks(tasks: Sequence[str]) -> list[str]:
    """``["denoise,derain", "dehaze"]`` -> ``["denoise", "derain", "dehaze"]`` (validated, order kept)."""
    out: list[str] = []
    for item in tasks:
        for t in (s.strip().lower() for s in item.split(",")):
            if not t:
                continue
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
            if t not in out:
                out.append(t)
    if not out:
        raise ValueError(f"no task given; choose any of {', '.join(TASKS)}")
    return out


def collect_train_sources(tasks: Sequence[str], *, denoise_dirs: Sequence[str] = (),
                          derain_dir: str | None = None, dehaze_dir: str | None = None,
                          deblur_dir: str | None = None, lowlight_dir: str | None = None) -> TrainSources:
    """List and validate the training data of every requested task (clear error before training)."""
    src = TrainSources(denoise=[], derain=[], dehaze=[])
    if "denoise" in tasks:
        if not denoise_dirs:
            raise DatasetLayoutError("task denoise needs --denoise-dirs (folders of clean images, e.g. BSD400 WED)")
        for d in denoise_dirs:
            src.denoise += list_images(d, recursive=True, what="denoise training folder (--denoise-dirs)")
    if "derain" in tasks:
        if not derain_dir:
            raise DatasetLayoutError("task derain needs --derain-dir (Train/Derain with rainy/ and gt/)")
        src.derain = list_derain_pairs(derain_dir, what="derain training set (--derain-dir)")
    if "dehaze" in tasks:
        if not dehaze_dir:
            raise DatasetLayoutError("task dehaze needs --dehaze-dir (Train/Dehaze with synthetic/ and original/)")
        src.dehaze = list_dehaze_pairs(dehaze_dir, what="dehaze training set (--dehaze-dir)")
    for task, folder, example in (("deblur", deblur_dir, "Train/Deblur with blur/ and sharp/ (GoPro)"),
                                  ("lowlight", lowlight_dir, "Train/Enhance with low/ and gt/ (LOL-v1)")):
        if task in tasks:
            if not folder:
                raise DatasetLayoutError(f"task {task} needs --{task}-dir ({example})")
            setattr(src, task, list_same_name_pairs(folder, TASK_PAIR_DIRS[task], what=f"{task} training set (--{task}-dir)"))
    return src


class TaskMixDataset:
    """Map-style dataset of training patches; sample ``i`` is a pure function of ``(seed, i)``.

    Each sample takes its task, file (and, for the official mix, σ) from ``mix``
    (:mod:`training.task_mix`: the official epoch composition, or uniform over ``tasks``; default
    uniform), then a ``patch_size`` crop (after the official centre-crop to a multiple of 16) and one of
    the 7 non-identity flips/rotations (PromptIR ``random_augmentation``); denoise adds Gaussian
    noise with the entry's σ or one drawn uniformly from ``sigmas`` (clip + uint8 truncation, as the official code).
    Returns ``{"lq", "gt"}`` as 3 x P x P float tensors in [0, 1] and ``"task"`` (index into TASKS).
    """

    def __init__(self, sources: TrainSources, *, tasks: Sequence[str], sigmas: Sequence[float],
                 patch_size: int = 128, seed: int = 0, mix=None) -> None:
        from training.task_mix import UniformMix

        self.sources, self.tasks = sources, list(tasks)
        self.mix = mix if mix is not None else UniformMix(self.tasks, {t: sources.size(t) for t in self.tasks})
        self.sigmas, self.patch_size, self.seed = [float(s) for s in sigmas], int(patch_size), int(seed)
        for t in self.tasks:
            if not sources.size(t):
                raise DatasetLayoutError(f"task {t}: no training images")

    def __len__(self) -> int:
        return 2 ** 62  # virtual: indices are sample counters

    def __getitem__(self, index: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, int(index)])
        task, item, sigma = self.mix.draw(int(index), rng)
        if task == "denoise":
            clean = _crop16(read_rgb(self.sources.denoise[item]))
            gt = augment(random_patch([clean], self.patch_size, rng)[0], int(rng.integers(1, 8)))
            if sigma is None:
                sigma = self.sigmas[int(rng.integers(len(self.sigmas)))]
            lq = add_gaussian_noise(gt, sigma, rng)
        else:
            pair = getattr(self.sources, task)[item]
            lq_img, gt_img = _crop16(read_rgb(pair.lq)), _crop16(read_rgb(pair.gt))
            if lq_img.shape != gt_img.shape:
                raise DatasetLayoutError(f"size mismatch between {pair.lq} and {pair.gt}")
            mode = int(rng.integers(1, 8))
            lq, gt = (augment(p, mode) for p in random_patch([lq_img, gt_img], self.patch_size, rng))

        def to_t(a: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div_(255.0)
        return {"lq": to_t(lq), "gt": to_t(gt), "task": TASKS.index(task)}


def _crop16(img: np.ndarray) -> np.ndarray:
    return center_crop_multiple(img, 16) if min(img.shape[:2]) >= 16 else img
