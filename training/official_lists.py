"""The official DyNet/PromptIR training lists, shipped as package data, and the expected set sizes.

Why bundled: the official training sets are *defined* by these three files (a denoise image is used
only if its name is listed, Rain100L and OTS are enumerated entry by entry); scanning folders instead
lets stray files change the data silently. The files are byte-for-byte copies (see
``training/resources/official_lists/PROVENANCE.md``); their sha256 is checked on every load so an
edited copy is never used unnoticed. Nothing here reads ../shared.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LISTS_DIR = Path(__file__).resolve().parent / "resources" / "official_lists"
PROVENANCE = LISTS_DIR / "PROVENANCE.md"
SOURCE = "akshaydudhane16/DyNet@50c46de132c63351032327975505467e304c6ffb data_dir/"


@dataclass(frozen=True)
class OfficialList:
    file: str
    official_path: str
    entries: int
    sha256: str


LISTS = {
    "denoise": OfficialList("denoise_airnet.txt", "data_dir/noisy/denoise_airnet.txt", 5_144,
                            "703269006085cb246f8aed055593b8566a8c403f13843dbee68fc02d0804d890"),
    "derain": OfficialList("rainTrain.txt", "data_dir/rainy/rainTrain.txt", 200,
                           "8ca003fb5e4ea51d3041a29f833fcbb237e3f3aebfc6fc3ccaada141004e3b10"),
    "dehaze": OfficialList("hazy_outside.txt", "data_dir/hazy/hazy_outside.txt", 72_135,
                           "e01b84818789499db89662d7f212e95ba334ebbee9c5c38539f09e9ddf503ca1"),
}

# Sizes of the sets that have no official name list (the field's standard splits).
EXPECTED_COUNTS = {
    "deblur": 2_103,        # GoPro train pairs
    "lowlight": 485,        # LOL-v1 our485
    "test-bsd68": 68,       # CBSD68 clean images
    "test-urban100": 100,
    "test-rain100l": 100,   # Rain100L test pairs
    "test-sots": 500,       # SOTS outdoor pairs
    "test-gopro": 1_111,    # GoPro test pairs
    "test-lol": 15,         # LOL-v1 eval15 pairs
}


class OfficialListError(RuntimeError):
    """A bundled list is missing or is not the official file."""


@functools.cache
def read_list(task: str) -> tuple[str, ...]:
    """The entries of ``task``'s official list (stripped, in file order), after a sha256 check."""
    spec = LISTS[task]
    path = LISTS_DIR / spec.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OfficialListError(f"bundled official list {path} is missing ({exc}); reinstall the package") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise OfficialListError(f"{path} is not the official {spec.official_path} (sha256 {digest}, "
                                f"expected {spec.sha256}); restore it from {SOURCE}")
    entries = tuple(line.strip() for line in data.decode("ascii").splitlines() if line.strip())
    if len(entries) != spec.entries:
        raise OfficialListError(f"{path}: {len(entries)} entries, expected {spec.entries}")
    return entries


def rain_gt_name(rainy_entry: str) -> str:
    """``rainy/rain-N.png`` -> ``norain-N.png`` (the official ``gt/norain-`` + the text after ``rain-``)."""
    return "norain-" + PurePosixPath(rainy_entry).name.split("rain-", 1)[-1]


def haze_gt_name(hazy_entry: str) -> str:
    """``synthetic/partK/ID_A_B.jpg`` -> ``ID.jpg`` (the id before ``_`` + the hazy file's extension)."""
    name = PurePosixPath(hazy_entry).name
    return name.split("_", 1)[0] + "." + name.rsplit(".", 1)[-1]
