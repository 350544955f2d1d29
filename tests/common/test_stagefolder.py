"""The stage contract: settings fingerprint (resume / refuse / overwrite), the folder lock, file modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from common.atomic import atomic_write_json
from common.stagefolder import StageRefused, fingerprint, open_stage_folder, read_stage


def test_same_settings_resume_different_settings_refused_naming_each(tmp_path):
    with open_stage_folder(tmp_path, "score", {"metrics": ["niqe"], "engine": "fast"}) as resuming:
        assert resuming is False
    with open_stage_folder(tmp_path, "score", {"metrics": ("niqe",), "engine": "fast"}) as resuming:
        assert resuming is True  # tuple == list after normalisation
    with pytest.raises(StageRefused) as err:
        with open_stage_folder(tmp_path, "score", {"metrics": ["brisque"], "engine": "pyiqa"}):
            pass
    assert "metrics: recorded ['niqe'], now ['brisque']" in str(err.value)
    assert "engine: recorded 'fast', now 'pyiqa'" in str(err.value)
    assert read_stage(tmp_path)["settings"]["metrics"] == ["niqe"]  # the refusal changed nothing


def test_overwrite_clears_and_records_new_settings(tmp_path):
    with open_stage_folder(tmp_path, "shard", {"patch": 512}):
        (tmp_path / "out.tar").write_bytes(b"x")
    cleared = []
    with open_stage_folder(tmp_path, "shard", {"patch": 256}, overwrite=True,
                           clear=lambda f: cleared.append((f / "out.tar").unlink() or f)) as resuming:
        assert resuming is False
    assert cleared == [tmp_path] and not (tmp_path / "out.tar").exists()
    assert read_stage(tmp_path)["fingerprint"] == fingerprint({"patch": 256})


def test_other_stage_folder_refused(tmp_path):
    with open_stage_folder(tmp_path, "score", {"a": 1}):
        pass
    with pytest.raises(StageRefused, match="stage 'score', not 'shard'"):
        with open_stage_folder(tmp_path, "shard", {"a": 1}):
            pass


def test_second_writer_refused_at_once_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from common.stagefolder import open_stage_folder
        with open_stage_folder({str(tmp_path)!r}, "ingest", {{"x": 1}}):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StageRefused) as err:
            with open_stage_folder(tmp_path, "ingest", {"x": 1}):
                pass
        assert f"pid {holder.pid}" in str(err.value) and "ingest" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    with open_stage_folder(tmp_path, "ingest", {"x": 1}) as resuming:  # a dead holder leaves no stale lock
        assert resuming is True


def test_outputs_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o002)
        atomic_write_json(tmp_path / "b.json", {"b": 1})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}
