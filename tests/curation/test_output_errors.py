"""A read-only output folder or a full disk ends every stage in one line naming the folder, exit non-zero,
temp files removed (issue 13, item 8). Disk full is real: a child process under RLIMIT_FSIZE (EFBIG)."""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_shard_helpers import make_dataset

from common.outputerrors import write_error_message
from curation import filter as curation_filter
from curation import ingest, query, report, shard

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def unwritable(tmp_path):
    """A folder this process cannot create files in. chmod 0555 stops a normal user but not root, so as
    root the folder is a path under a regular file (creating it fails with ENOTDIR)."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        (tmp_path / "a_file").write_text("not a folder")
        yield tmp_path / "a_file" / "out"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("outerr")
    info = make_dataset(root, n_images=4)
    decisions = pq.read_table(root / "decisions.parquet")
    (root / "scores").mkdir()
    part = decisions.filter(pc.equal(decisions.column("raw_shard"), "00000"))
    meta = {curation_filter.METADATA_KEY: json.dumps({"metrics": {"niqe": {}, "brisque": {}, "nima": {}}})}
    pq.write_table(part.drop_columns(["kept", "drop_reason"]).replace_schema_metadata(meta),
                   root / "scores" / "00000.parquet")
    return root, info


def _images(folder: Path, n: int, side: int = 96) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng(i).random((side, side, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
        (folder / f"{i:03d}.png").write_bytes(buf.getvalue())
    return folder


def _one_line_naming(exc_info, folder: Path) -> str:
    message = exc_info.value.code
    assert isinstance(message, str) and message, "the exit must carry a message (non-zero status)"
    assert "\n" not in message and str(folder) in message and "Traceback" not in message
    return message


def test_ingest_into_an_unwritable_folder(unwritable, tmp_path):
    src = _images(tmp_path / "src", 2)
    with pytest.raises(SystemExit) as info:
        ingest.main(["--folder", str(src), "--source", "x", "--out", str(unwritable)])
    _one_line_naming(info, unwritable)


def test_filter_shard_report_query_into_an_unwritable_folder(unwritable, dataset):
    root, data = dataset
    runs = {
        "filter": lambda: curation_filter.main(["--scores", str(root / "scores"), "--out", str(unwritable / "kept.parquet"),
                                                "--min-side", "16"]),
        "shard": lambda: shard.main(["--kept", str(data["kept"]), "--raw", str(data["raw"]), "--out", str(unwritable),
                                     "--patch", "64", "--flat-cell", "32", "--workers", "0", "--log-level", "WARNING"]),
        "report": lambda: report.main(["--root", str(root), "--out", str(unwritable), "--samples", "2"]),
        "query": lambda: query.main(["SELECT * FROM kept", "--root", str(root), "--csv", str(unwritable / "k.csv")]),
    }
    for stage, run in runs.items():
        with pytest.raises(SystemExit) as info:
            run()
        assert stage in _one_line_naming(info, unwritable)


def test_write_error_message_names_an_unreadable_input_as_such(tmp_path):
    denied = PermissionError(13, "Permission denied", str(tmp_path / "elsewhere" / "in.png"))
    assert write_error_message(denied, "curation.ingest", tmp_path / "raw") == \
        f"curation.ingest: cannot access {tmp_path / 'elsewhere' / 'in.png'}: Permission denied (EACCES)"
    assert write_error_message(FileNotFoundError(2, "No such file"), "s", tmp_path) is None


def _disk_full(limit: int):
    def _apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return _apply


def _run_full(module: str, args: list[str], limit: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, check=False,
                          env=env, preexec_fn=_disk_full(limit), cwd=REPO)


def _the_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if "cannot write to" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0][lines[0].index("curation."):]  # a progress bar may share the terminal line


@pytest.mark.integration
def test_ingest_on_a_full_disk_leaves_no_partial_tar(tmp_path):
    src = _images(tmp_path / "src", 6, side=160)  # ~77 kB each: the shard tar passes the 200 kB limit
    out = tmp_path / "raw"
    proc = _run_full("curation.ingest", ["--folder", str(src), "--source", "x", "--out", str(out)], 200_000)
    assert proc.returncode != 0
    line = _the_error_line(proc)
    assert str(out) in line and "EFBIG" in line
    assert not (out / "_tmp").exists() and not list(out.glob("*.tar"))  # nothing partial anywhere
    again = ingest.main(["--folder", str(src), "--source", "x", "--out", str(out)])  # space back: it resumes
    assert again["shard_counts"] == {"written": 1} and again["new_rows_by_status"] == {"success": 6}


@pytest.mark.integration
def test_shard_on_a_full_disk_removes_its_temp_files(tmp_path):
    data = make_dataset(tmp_path, n_images=6)
    out = tmp_path / "shards"
    args = ["--kept", str(data["kept"]), "--raw", str(data["raw"]), "--out", str(out), "--patch", "64",
            "--flat-cell", "32", "--workers", "0", "--log-level", "WARNING"]
    proc = _run_full("curation.shard", args, 60_000)
    assert proc.returncode != 0
    assert str(out) in _the_error_line(proc)
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.tar"))
    assert shard.main(args)["total_samples"] > 0  # rerun with space: completes
