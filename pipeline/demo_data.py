"""The demo's bundled sample: real photographs shipped inside scikit-image (``skimage/data``).

Every file used here is public domain or CC0 according to scikit-image's own data docstrings
(``skimage/data/_fetchers.py``); see docs/pipeline.md for the per-image notes. Nothing here reads
../shared or the network.

The sample is split three ways so the demo exercises every input path and never evaluates on
training data:

* ``DOWNLOAD``: served by a loopback HTTP server and fetched by img2dataset from a Laion-HR-shaped
  URL parquet (URL, TEXT, WIDTH, HEIGHT, pwatermark, punsafe), plus one broken URL;
* ``INGEST``: copied to a local folder for ``curation.ingest``;
* ``HELDOUT``: grey photographs never seen by curation or training, centre-cropped and saved as RGB
  PNGs: the clean test set of the evaluation (a tiny BSD68-like denoise folder).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from training.augment import add_gaussian_noise

BROKEN_NAME = "missing-photo.jpg"  # never served: img2dataset records an HTTP 404 for it


@dataclass(frozen=True)
class Photo:
    file: str
    caption: str
    licence: str


DOWNLOAD = (
    Photo("astronaut.png", "portrait of astronaut Eileen Collins", "public domain (NASA)"),
    Photo("coffee.png", "a cup of coffee on a wooden table", "CC0 (photographer Rachel Michetti)"),
    Photo("rocket.jpg", "launch of DSCOVR on a Falcon 9 rocket", "public domain (SpaceX)"),
    Photo("hubble_deep_field.jpg", "Hubble eXtreme Deep Field", "public domain (NASA)"),
)
INGEST = (
    Photo("chelsea.png", "Chelsea the cat", "CC0 (photographer Stefan van der Walt)"),
    Photo("retina.jpg", "fundus photograph of a retina", "CC0 1.0 (Mikael Häggström, Wikimedia)"),
)
HELDOUT = (
    Photo("camera.png", "a photographer with a camera (grey)", "CC0 (photographer Lav Varshney)"),
    Photo("brick.png", "brick wall texture (grey)", "CC0 (CC0Textures Bricks25)"),
)


@dataclass(frozen=True)
class Sample:
    download: tuple[Photo, ...]
    ingest: tuple[Photo, ...]
    heldout: tuple[Photo, ...]
    heldout_crop: int


SAMPLES = {
    "full": Sample(DOWNLOAD, INGEST, HELDOUT, heldout_crop=256),
    "small": Sample(DOWNLOAD[:2], INGEST[:1], HELDOUT[:1], heldout_crop=128),
}


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def photo_path(photo: Photo) -> Path:
    path = skimage_data_dir() / photo.file
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image sample photograph missing: {path} (is scikit-image installed?)")
    return path


def copy_photos(photos: tuple[Photo, ...], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for photo in photos:
        dst = folder / photo.file
        if not dst.exists():
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(photo_path(photo), tmp)
            tmp.replace(dst)
        out.append(dst)
    return out


def write_url_parquet(photos: tuple[Photo, ...], base_url: str, path: Path) -> pa.Table:
    """A Laion-HR-shaped URL table for the served photographs, plus one broken URL (written atomically)."""
    rows = {"URL": [], "TEXT": [], "WIDTH": [], "HEIGHT": [], "pwatermark": [], "punsafe": []}
    for photo in photos:
        with Image.open(photo_path(photo)) as img:
            width, height = img.size
        for key, value in (("URL", f"{base_url}/{photo.file}"), ("TEXT", photo.caption), ("WIDTH", width),
                           ("HEIGHT", height), ("pwatermark", 0.05), ("punsafe", 0.001)):
            rows[key].append(value)
    for key, value in (("URL", f"{base_url}/{BROKEN_NAME}"), ("TEXT", "a link that answers 404"),
                       ("WIDTH", 800), ("HEIGHT", 600), ("pwatermark", 0.05), ("punsafe", 0.001)):
        rows[key].append(value)
    table = pa.table({"URL": pa.array(rows["URL"], pa.string()), "TEXT": pa.array(rows["TEXT"], pa.string()),
                      "WIDTH": pa.array(rows["WIDTH"], pa.int64()), "HEIGHT": pa.array(rows["HEIGHT"], pa.int64()),
                      "pwatermark": pa.array(rows["pwatermark"], pa.float32()),
                      "punsafe": pa.array(rows["punsafe"], pa.float32())})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table


def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    side = min(side, h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return img[y:y + side, x:x + side]


def write_heldout(photos: tuple[Photo, ...], folder: Path, crop: int) -> list[Path]:
    """Centre crops of the held-out photographs as RGB PNGs (the clean denoise test set)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for photo in photos:
        dst = folder / (Path(photo.file).stem + ".png")
        if not dst.exists():
            with Image.open(photo_path(photo)) as img:
                rgb = np.asarray(img.convert("RGB"))
            tmp = dst.with_name(dst.stem + ".tmp.png")
            Image.fromarray(_centre_crop(rgb, crop)).save(tmp)
            tmp.replace(dst)
        out.append(dst)
    return out


def write_noisy(clean: Path, dst: Path, sigma: float, seed: int = 0) -> Path:
    """``clean`` plus Gaussian noise of ``sigma`` (0-255 units), clipped, saved as PNG: the restore input."""
    if not dst.exists():
        img = np.asarray(Image.open(clean).convert("RGB"), dtype=np.float64)
        noisy = add_gaussian_noise(img, sigma, np.random.RandomState(seed), rounding="round")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.stem + ".tmp.png")
        Image.fromarray(noisy).save(tmp)
        tmp.replace(dst)
    return dst


def licences(sample: Sample) -> list[dict]:
    return [{"file": p.file, "use": use, "licence": p.licence}
            for use, photos in (("download", sample.download), ("ingest", sample.ingest),
                                ("held-out", sample.heldout)) for p in photos]
