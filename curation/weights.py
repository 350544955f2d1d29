"""Which weight files the quality metrics need, where they are, and how to provide the missing ones.

``python -m curation.weights check [--metrics niqe,brisque,nima]``
    reports, per metric, the file it needs and where it was found: the package data shipped with
    this project (NIQE pristine model, LIVE BRISQUE SVR) or pyiqa's download cache
    (``$TORCH_HOME/hub/pyiqa``, i.e. ``torch.hub.get_dir()/pyiqa``). Exit status 1 when one is missing.
``python -m curation.weights install FILE [--metric nima]``
    validates FILE (loaded with ``weights_only=True``; NIMA weights must fit the architecture) and
    copies it into pyiqa's cache under the name pyiqa expects, with a provenance note beside it.
``python -m curation.weights fetch [--metrics nima]``
    lets pyiqa download the missing files itself (needs internet; offline it fails with a clear message).

``curation.score`` calls :func:`require` before starting any worker. Files whose name contains
``TEST_ONLY`` are reported as test-only weights wherever they appear; nothing substitutes them silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from curation.scoring.metrics import (
    DATA_DIR,
    METRICS,
    load_nima,
    parse_metrics,
    read_state_dict,
)

_LOG = logging.getLogger(__name__)
PROVENANCE_SUFFIX = ".provenance.json"


class MissingWeightsError(RuntimeError):
    """A metric's weight file is absent; the message says which file and how to provide it."""


@dataclass(frozen=True)
class WeightStatus:
    metric: str
    file_name: str
    path: str  # where it was found, or where it is expected in pyiqa's cache
    present: bool
    origin: str  # "package data" | "pyiqa cache" | "missing"
    test_only: bool = False
    installed_from: str | None = None


def pyiqa_cache_dir() -> Path:
    """pyiqa's download folder, ``torch.hub.get_dir()/pyiqa`` (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "pyiqa"


def _provenance(path: Path) -> dict:
    note = path.with_name(path.name + PROVENANCE_SUFFIX)
    if note.is_file():
        try:
            return json.loads(note.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def status_of(metric: str) -> WeightStatus:
    spec = METRICS[metric]
    shipped = DATA_DIR / spec.weight_file
    if spec.shipped and shipped.is_file():
        return WeightStatus(metric, spec.weight_file, str(shipped), True, "package data")
    cached = pyiqa_cache_dir() / spec.weight_file
    if cached.is_file():
        prov = _provenance(cached)
        source = prov.get("source_file")
        test_only = bool(prov.get("test_only")) or "TEST_ONLY" in str(source or "").upper()
        return WeightStatus(metric, spec.weight_file, str(cached), True, "pyiqa cache", test_only, source)
    return WeightStatus(metric, spec.weight_file, str(cached), False, "missing")


def check(metrics: Sequence[str]) -> list[WeightStatus]:
    return [status_of(m) for m in metrics]


def missing_message(statuses: Sequence[WeightStatus]) -> str:
    lines = []
    for s in statuses:
        if s.present:
            continue
        lines.append(f"metric {s.metric!r} needs weight file {s.file_name} (expected at {s.path}).")
        lines.append(f"  provide it with: python -m curation.weights install /path/to/{s.file_name} --metric {s.metric}")
        lines.append(f"  or download it (internet needed): python -m curation.weights fetch --metrics {s.metric}")
    others = [s.metric for s in statuses if s.present]
    if lines and others:
        lines.append(f"  or score without it: --metrics {','.join(others)}")
    return "\n".join(lines)


def require(metrics: Sequence[str]) -> dict[str, str]:
    """metric → weight path for every metric, or :class:`MissingWeightsError` naming what is missing."""
    statuses = check(metrics)
    if any(not s.present for s in statuses):
        raise MissingWeightsError(missing_message(statuses))
    for s in statuses:
        if s.test_only:
            _LOG.warning("metric %s uses TEST-ONLY weights %s (installed from %s): scores are meaningless",
                         s.metric, s.path, s.installed_from)
    return {s.metric: s.path for s in statuses}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _validate(path: Path, metric: str) -> None:
    if metric == "nima":
        load_nima(path)  # strict architecture check, weights_only load
    elif metric == "brisque":
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise ValueError(f"{path} is not a BRISQUE (sv_coef, sv) tuple")
    elif metric == "niqe":
        import scipy.io

        params = scipy.io.loadmat(str(path))
        if "mu_prisparam" not in params or "cov_prisparam" not in params:
            raise ValueError(f"{path} lacks mu_prisparam / cov_prisparam")
    else:
        read_state_dict(path)


def install(file: str | Path, metric: str = "nima") -> Path:
    """Validate ``file`` and copy it atomically into pyiqa's cache under the expected name."""
    src = Path(file)
    if not src.is_file():
        raise FileNotFoundError(f"weights file {src} does not exist")
    spec = METRICS[parse_metrics(metric)[0]]
    _validate(src, spec.name)
    dest_dir = pyiqa_cache_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / spec.weight_file
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    note = {"source_file": src.name, "source_path": str(src.resolve()), "sha256": file_sha256(dest),
            "metric": spec.name, "installed_at": datetime.now(UTC).isoformat(),
            "test_only": "TEST_ONLY" in src.name.upper()}
    atomic_write_json(dest.with_name(dest.name + PROVENANCE_SUFFIX), note)
    _LOG.info("installed %s as %s", src, dest)
    return dest


def fetch(metrics: Sequence[str]) -> list[WeightStatus]:
    """Let pyiqa download each missing file into its cache; offline this raises a clear error."""
    from common.torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from pyiqa.archs.arch_util import get_url_from_name
    from pyiqa.utils.download_util import load_file_from_url

    for s in check(metrics):
        if s.present:
            continue
        url = get_url_from_name(s.file_name)
        try:
            load_file_from_url(url, model_dir=str(pyiqa_cache_dir()), file_name=s.file_name)
        except Exception as exc:  # network errors come in many types
            raise MissingWeightsError(f"could not download {s.file_name} from {url}: {type(exc).__name__}: {exc}\n"
                                      f"(no internet?) copy the file here instead and run: "
                                      f"python -m curation.weights install FILE --metric {s.metric}") from exc
    return check(metrics)


@dataclass
class WeightsConfig:
    """Report, install or download the weight files of the curation quality metrics."""

    command: list[str] = field(default_factory=lambda: ["check"], metadata={
        "positional": True, "help": "check | install FILE | fetch"})
    metric: str = field(default="nima", metadata={"help": "install: the metric the file belongs to"})
    metrics: str = field(default="niqe,brisque,nima", metadata={"help": "check/fetch: comma-separated metrics"})


def _print_status(statuses: Sequence[WeightStatus]) -> None:
    for s in statuses:
        flag = "ok     " if s.present else "MISSING"
        extra = "  [TEST-ONLY weights]" if s.test_only else ""
        print(f"{flag} {s.metric:8s} {s.file_name:40s} {s.origin:13s} {s.path}{extra}")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(WeightsConfig, argv)
    action, *rest = cfg.command
    try:
        if action == "check":
            statuses = check(parse_metrics(cfg.metrics))
            _print_status(statuses)
            if any(not s.present for s in statuses):
                print(missing_message(statuses))
                return 1
            return 0
        if action == "install":
            if len(rest) != 1:
                raise SystemExit("usage: python -m curation.weights install FILE [--metric nima]")
            print(f"installed: {install(rest[0], cfg.metric)}")
            return 0
        if action == "fetch":
            _print_status(fetch(parse_metrics(cfg.metrics)))
            return 0
    except (MissingWeightsError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    raise SystemExit(f"unknown command {action!r}: use check | install FILE | fetch")


if __name__ == "__main__":
    raise SystemExit(main())
