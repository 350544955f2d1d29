"""The stage contract for a folder a stage writes: settings fingerprint, one writer at a time.

Every stage that writes a folder (download, ingest, score, shard, pretrain, finetune, train_dsrir)
opens it through :func:`open_stage_folder`::

    with open_stage_folder(out_dir, "score", settings, overwrite=cfg.overwrite, clear=clear_outputs):
        ...  # resume: do only the pending work

- ``settings`` is a flat dict of the values that decide the folder's content (not worker counts,
  progress bars or scheduler addresses). It is recorded, with its fingerprint, in ``_stage.json``.
- A rerun with the same settings resumes. With different settings it raises :class:`StageRefused`
  (exit code 2) naming each differing setting, unless ``overwrite`` is set: then ``clear(folder)``
  removes the previous outputs and the new settings are recorded.
- The folder is locked (``.lock``, :mod:`filelock`) for the whole ``with`` block; a second writer gets
  :class:`StageRefused` at once naming the holder (pid, host, start time) and touches nothing.

Entry points turn :class:`StageRefused` into ``SystemExit(2)`` with its message (:func:`refuse_exit`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import filelock

from common.atomic import atomic_write_json, default_file_mode

STAGE_FILE = "_stage.json"
LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"
EXIT_REFUSED = 2


class StageRefused(RuntimeError):
    """The stage must not write this folder now (other settings, or another writer holds it)."""

    exit_code = EXIT_REFUSED


def _normalise(value: Any) -> Any:
    """JSON-stable form of a setting (tuples -> lists, paths -> str)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def fingerprint(settings: Mapping[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the settings in canonical JSON."""
    blob = json.dumps(_normalise(dict(settings)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_stage(folder: str | os.PathLike) -> dict | None:
    """The recorded ``{"stage", "settings", "fingerprint"}`` of a folder, or None."""
    path = Path(folder) / STAGE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def differing(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per differing setting: ``name: recorded X, now Y``."""
    old_n, new_n = _normalise(dict(old)), _normalise(dict(new))
    out = []
    for key in sorted(set(old_n) | set(new_n)):
        if old_n.get(key, "<unset>") != new_n.get(key, "<unset>"):
            out.append(f"{key}: recorded {old_n.get(key, '<unset>')!r}, now {new_n.get(key, '<unset>')!r}")
    return out


def _holder_text(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_FILE).read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
        return f"{info.get('stage', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, since {started})"
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, stage: str) -> Iterator[None]:
    """Hold ``folder/.lock`` or raise :class:`StageRefused` naming the holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(folder / LOCK_FILE), timeout=0, mode=default_file_mode())
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StageRefused(f"{folder} is being written by {_holder_text(folder)}; "
                           "wait for it to finish (or stop it) and run again") from None
    try:
        atomic_write_json(folder / HOLDER_FILE, {"stage": stage, "pid": os.getpid(),
                                                 "host": socket.gethostname(), "since": time.time()})
        yield
    finally:
        with contextlib.suppress(OSError):
            (folder / HOLDER_FILE).unlink()
        lock.release()


def check_settings(folder: str | os.PathLike, stage: str, settings: Mapping[str, Any], *,
                   overwrite: bool = False, clear: Callable[[Path], None] | None = None,
                   what: str = "settings") -> bool:
    """Compare with the recorded settings; record the new ones. Returns True when resuming.

    Call it while holding :func:`folder_lock`.
    """
    folder = Path(folder)
    recorded = read_stage(folder)
    if recorded is not None and recorded.get("stage") != stage:
        raise StageRefused(f"{folder} holds the output of stage {recorded.get('stage')!r}, not {stage!r}; "
                           "choose another folder")
    resuming = recorded is not None and recorded.get("fingerprint") == fingerprint(settings)
    if recorded is not None and not resuming:
        diffs = differing(recorded.get("settings", {}), settings)
        if not overwrite:
            raise StageRefused(f"{folder} was written by {stage} with other {what}:\n  " + "\n  ".join(diffs)
                               + "\nrerun with the recorded values to resume, or pass --overwrite to "
                               "discard the folder's outputs and start again")
        if clear is not None:
            clear(folder)
    atomic_write_json(folder / STAGE_FILE, {"stage": stage, "settings": _normalise(dict(settings)),
                                            "fingerprint": fingerprint(settings)})
    return resuming


@contextlib.contextmanager
def open_stage_folder(folder: str | os.PathLike, stage: str, settings: Mapping[str, Any], *,
                      overwrite: bool = False, clear: Callable[[Path], None] | None = None) -> Iterator[bool]:
    """Lock ``folder``, check/record its settings; yields True when resuming earlier work."""
    with folder_lock(folder, stage):
        yield check_settings(folder, stage, settings, overwrite=overwrite, clear=clear)


def refuse_exit(exc: StageRefused) -> SystemExit:
    """The ``SystemExit`` an entry point raises for a refusal: code 2, message on stderr."""
    import sys

    print(f"error: {exc}", file=sys.stderr)
    return SystemExit(EXIT_REFUSED)
