"""Shard-id allocation in a raw folder: which job (download input file / ingest folder) owns which ids.

Several producers (``curation.download`` per URL file, ``curation.ingest`` per local folder) write
into one ``raw/`` folder; every raw shard id must be unique there, and a rerun of the same job must
map its work to the *same* ids (so completed shards are recognised and skipped). The registry
``raw/_jobs/allocations.json`` records, per job key, the first shard id and the shard count; a new
job gets the ids after everything already allocated or present on disk. Updates take an exclusive
``flock`` on ``raw/_jobs/.lock`` and are written atomically, so two commands started at once on the
same folder still get disjoint ranges.

:func:`open_raw_job` applies the stage contract (``common.stagefolder``) to a raw folder shared by
several producers: the whole ``raw/`` is locked while one download / ingest writes it, and each
producer identity (a download ``--source``; an ingest ``--folder`` + ``--source``) records the
settings it was written with in ``raw/_jobs/<stage>-<name>/_stage.json``. Another producer into the
same ``raw/`` is not a conflict; the same producer with other settings is refused (exit 2) unless
``--overwrite``, which releases its shards (:func:`release`) before they are redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_json
from common.stagefolder import check_settings, folder_lock
from curation.layout import ShardId

_LOG = logging.getLogger(__name__)
JOBS_DIR = "_jobs"
REGISTRY = "allocations.json"
_SHARD_FILE = re.compile(r"^(\d+)(?:\.tar|\.parquet|_stats\.json)$")


@dataclass(frozen=True)
class Allocation:
    """A contiguous range of shard ids owned by one job, and the unit size it was planned with."""

    job_key: str
    first: int
    count: int
    unit_size: int  # rows per download slice / images per ingest shard
    fingerprint: str  # what the job's input looked like when it was planned

    def shard_ids(self) -> list[str]:
        return [format_shard_id(self.first + i) for i in range(self.count)]


def format_shard_id(n: int) -> str:
    """The raw shard name of id ``n`` (:class:`curation.layout.ShardId`)."""
    return ShardId.raw(n).name


def job_key(spec: dict) -> str:
    """Stable short key for a job description (JSON-serialisable dict)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def jobs_dir(raw_dir: str | os.PathLike) -> Path:
    path = Path(raw_dir) / JOBS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(raw_dir: str | os.PathLike) -> Iterator[Path]:
    folder = jobs_dir(raw_dir)
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield folder / REGISTRY
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _highest_on_disk(raw_dir: Path) -> int:
    ids = [int(m.group(1)) for p in raw_dir.iterdir() if (m := _SHARD_FILE.match(p.name))]
    return max(ids, default=-1)


def allocate(raw_dir: str | os.PathLike, key: str, count: int, unit_size: int, fingerprint: str,
             description: dict | None = None) -> Allocation:
    """Return the job's existing allocation, or reserve ``count`` new ids after everything known.

    An existing allocation keeps its own ``unit_size`` (a rerun with another slice size still maps to
    the same shards). Raises ``ValueError`` when the job's input changed since it was planned
    (different fingerprint), because its shard ids would then no longer mean the same rows.
    """
    with _locked(raw_dir) as registry_path:
        registry = json.loads(registry_path.read_text()) if registry_path.exists() else {"jobs": {}}
        jobs = registry["jobs"]
        if key in jobs:
            rec = jobs[key]
            if rec["fingerprint"] != fingerprint:
                raise ValueError(
                    f"job {key} ({rec.get('description')}) was planned in {raw_dir} from different input "
                    f"(fingerprint {rec['fingerprint']} then, {fingerprint} now); its shard ids "
                    f"{format_shard_id(rec['first'])}.. would no longer match. Use a new --out folder or "
                    f"another --source.")
            return Allocation(key, rec["first"], rec["count"], rec["unit_size"], rec["fingerprint"])
        end_registered = max((r["first"] + r["count"] for r in jobs.values()), default=0)
        first = max(end_registered, _highest_on_disk(Path(raw_dir)) + 1)
        jobs[key] = {"first": first, "count": count, "unit_size": unit_size, "fingerprint": fingerprint,
                     "description": description or {}}
        atomic_write_json(registry_path, registry)
        _LOG.info("allocated shards %s..%s to job %s", format_shard_id(first),
                  format_shard_id(first + count - 1), key)
        return Allocation(key, first, count, unit_size, fingerprint)


def release(raw_dir: str | os.PathLike, matches: Callable[[dict], bool]) -> list[str]:
    """Forget the jobs whose description ``matches`` and delete their shards (markers first).

    Returns the shard names removed. Used by ``--overwrite``, while the stage holds the folder lock.
    """
    removed: list[str] = []
    with _locked(raw_dir) as registry_path:
        registry = json.loads(registry_path.read_text()) if registry_path.exists() else {"jobs": {}}
        for key, rec in list(registry["jobs"].items()):
            if not matches(rec.get("description") or {}):
                continue
            for i in range(rec["count"]):
                sid = ShardId.raw(rec["first"] + i)
                tar, parquet, marker = sid.raw_paths(raw_dir)
                for path in (marker, tar, parquet):
                    if path.exists():
                        path.unlink()
                        removed.append(path.name)
            for stats in Path(raw_dir, JOBS_DIR).glob(f"*-{key}.json"):
                stats.unlink()
            del registry["jobs"][key]
        atomic_write_json(registry_path, registry)
    if removed:
        _LOG.info("--overwrite: removed %d raw shard file(s)", len(removed))
    return removed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40] or "_"


@contextlib.contextmanager
def open_raw_job(raw_dir: str | os.PathLike, stage: str, identity: dict[str, Any], settings: dict[str, Any], *,
                 overwrite: bool = False) -> Iterator[bool]:
    """Lock ``raw/``, then check/record this producer's settings; yields True when resuming.

    Raises :class:`common.stagefolder.StageRefused` (other settings without ``overwrite``, or
    another writer holding the folder). With ``overwrite`` the producer's earlier shards are released.
    """
    name = f"{stage}-{_slug(str(identity.get('source', '')))}-{job_key(identity)[:8]}"

    def clear(_record: Path) -> None:
        release(raw_dir, lambda d: d.get("kind") == stage and all(d.get(k) == v for k, v in identity.items()))

    with folder_lock(raw_dir, stage):
        yield check_settings(jobs_dir(raw_dir) / name, stage, settings, overwrite=overwrite, clear=clear)
