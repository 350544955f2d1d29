"""VGG19 ImageNet weights for DSRIR's contrastive regulariser: check, offline install, load.

The weights are torchvision's ``VGG19_Weights.IMAGENET1K_V1`` file (``vgg19-dcbb9e9d.pth``, 548 MB),
a download this project never performs itself. Fetch it anywhere with internet
(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) and install it::

    python -m training.vgg_weights install /path/to/vgg19-dcbb9e9d.pth   # verify + copy
    python -m training.vgg_weights check                                 # is it there and valid?

``install`` reads the file with ``torch.load(weights_only=True)``, checks that the VGG19
``features`` tensors the loss uses are present with the right shapes, checks that the SHA-256 starts
with torchvision's ``dcbb9e9d`` (``--no-verify-hash`` skips this for other VGG19 weights), and copies
it atomically to ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth`` - the place torchvision itself
would cache it. Loading (:func:`load_vgg19_features`) never substitutes anything: a missing file is a
:class:`VGGWeightsMissing` error naming the file and the install command. Tests build clearly
labelled random weights with :func:`random_vgg19_features_TEST_ONLY`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from common.cliconfig import parse_config

_LOG = logging.getLogger(__name__)

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILENAME
VGG19_HASH_PREFIX = "dcbb9e9d"
#: features[:30] = conv1_1 ... relu5_1, the layers the contrastive loss reads.
NUM_FEATURE_LAYERS = 30


class VGGWeightsMissing(FileNotFoundError):
    """The VGG19 weights file is not installed."""


class VGGWeightsInvalid(ValueError):
    """A VGG19 weights file has the wrong tensors or the wrong hash."""


def checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch.hub's cache folder, where torchvision looks)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def installed_path() -> Path:
    return checkpoints_dir() / VGG19_FILENAME


def install_hint(path: Path | None = None) -> str:
    return (f"VGG19 ImageNet weights not found at {path or installed_path()}. Download {VGG19_URL} "
            f"on a machine with internet, then run: python -m training.vgg_weights install "
            f"/path/to/{VGG19_FILENAME}")


def _vgg19_features_module() -> nn.Sequential:
    """torchvision's VGG19 (weights=None) ``features[:30]``, storage allocated but uninitialised.

    Built on the meta device first so the 120M-parameter classifier is never materialised.
    """
    from common.torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.models import vgg19

    with torch.device("meta"):
        feats = vgg19(weights=None).features[:NUM_FEATURE_LAYERS]
    return feats.to_empty(device="cpu")


@functools.lru_cache(maxsize=1)
def expected_shapes() -> dict[str, tuple[int, ...]]:
    """``features.N.weight/bias`` -> shape for the layers the loss uses."""
    feats = _vgg19_features_module()
    return {f"features.{k}": tuple(v.shape) for k, v in feats.state_dict().items()}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_state_dict(sd: Mapping[str, torch.Tensor], source: str) -> None:
    problems = []
    for key, shape in expected_shapes().items():
        if key not in sd:
            problems.append(f"missing {key}")
        elif tuple(sd[key].shape) != shape:
            problems.append(f"{key} has shape {tuple(sd[key].shape)}, expected {shape}")
    if problems:
        raise VGGWeightsInvalid(f"{source} is not a torchvision VGG19 state dict: " + "; ".join(problems[:10]))


def read_weights(path: Path, *, verify_hash: bool) -> dict[str, torch.Tensor]:
    """Read + validate a weights file; returns its state dict."""
    if not path.is_file():
        raise VGGWeightsMissing(install_hint(path))
    if verify_hash:
        digest = sha256_file(path)
        if not digest.startswith(VGG19_HASH_PREFIX):
            raise VGGWeightsInvalid(
                f"{path}: SHA-256 {digest[:16]}... does not start with {VGG19_HASH_PREFIX} (torchvision's "
                f"{VGG19_FILENAME}); to use other VGG19 weights deliberately pass --no-verify-hash "
                f"(training.vgg_weights) / --no-vgg-verify-hash (training.train_dsrir)")
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VGGWeightsInvalid(f"{path}: cannot be read as a weights-only torch file ({exc})") from exc
    if not isinstance(sd, Mapping):
        raise VGGWeightsInvalid(f"{path}: expected a state dict, got {type(sd).__name__}")
    validate_state_dict(sd, str(path))
    return dict(sd)


def install(src: Path, *, verify_hash: bool = True) -> Path:
    """Validate ``src`` and copy it atomically to :func:`installed_path`; idempotent."""
    read_weights(src, verify_hash=verify_hash)
    dest = installed_path()
    if dest.is_file() and sha256_file(dest) == sha256_file(src):
        _LOG.info("already installed: %s", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _LOG.info("installed %s -> %s", src, dest)
    return dest


def build_vgg19_features(state_dict: Mapping[str, torch.Tensor]) -> nn.Sequential:
    """Frozen VGG19 ``features[:30]`` in eval mode with the given weights."""
    feats = _vgg19_features_module()
    own = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")
           and int(k.split(".")[1]) < NUM_FEATURE_LAYERS}
    feats.load_state_dict(own, strict=True)
    feats.eval()
    for p in feats.parameters():
        p.requires_grad_(False)
    return feats


def load_vgg19_features(*, verify_hash: bool = True) -> nn.Sequential:
    """The installed ImageNet VGG19 features; :class:`VGGWeightsMissing` if not installed."""
    return build_vgg19_features(read_weights(installed_path(), verify_hash=verify_hash))


def random_vgg19_features_TEST_ONLY(seed: int = 0) -> nn.Sequential:
    """RANDOM (untrained) VGG19 features for tests. Never use for training."""
    feats = _vgg19_features_module()
    gen = torch.Generator().manual_seed(seed)
    for layer in feats:
        if isinstance(layer, nn.Conv2d):  # torchvision's VGG init: kaiming normal (fan_out), zero bias
            std = (2.0 / (layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1])) ** 0.5
            with torch.no_grad():
                layer.weight.normal_(0.0, std, generator=gen)
                layer.bias.zero_()
    feats.eval()
    for p in feats.parameters():
        p.requires_grad_(False)
    return feats


@dataclass
class VGGWeightsConfig:
    """Check or install the VGG19 ImageNet weights used by DSRIR's contrastive loss."""

    command: list[str] = field(metadata={"positional": True,
                                         "help": "'check' or 'install FILE' (FILE: a downloaded vgg19-dcbb9e9d.pth)"})
    verify_hash: bool = field(default=True, metadata={
        "help": "require the SHA-256 to start with dcbb9e9d (torchvision's file); --no-verify-hash accepts "
                "other VGG19 weights of the same shapes"})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(VGGWeightsConfig, argv)
    action, *rest = cfg.command
    try:
        if action == "install" and len(rest) == 1:
            dest = install(Path(rest[0]), verify_hash=cfg.verify_hash)
            print(f"OK: VGG19 weights installed at {dest}")
        elif action == "check" and not rest:
            read_weights(installed_path(), verify_hash=cfg.verify_hash)
            print(f"OK: VGG19 weights present and valid at {installed_path()}")
        else:
            print("usage: python -m training.vgg_weights check | install FILE", file=sys.stderr)
            return 2
    except (VGGWeightsMissing, VGGWeightsInvalid) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
