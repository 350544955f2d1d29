"""curation.ingest on odd files: symlink loops, FIFOs, /dev/zero and oversized files become status rows,
never a traceback, a hang or a MemoryError (issue 13, item 3); the rows are deterministic (item 10)."""

from __future__ import annotations

import io
import os
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import ingest
from curation.rawshards import list_complete_shards, shard_paths

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, /dev/zero and symlinks are POSIX")


def _png(seed: int, side: int = 24) -> bytes:
    arr = (np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def hostile(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "good.png").write_bytes(_png(1))
    (root / "sub" / "good2.png").write_bytes(_png(2))
    (root / "big.png").write_bytes(_png(3, side=64))  # over the --max-image-bytes used below
    (root / "loop_a.png").symlink_to(root / "loop_b.png")
    (root / "loop_b.png").symlink_to(root / "loop_a.png")
    (root / "self.png").symlink_to(root / "self.png")
    (root / "sub" / "up").symlink_to(root)  # a folder cycle: never followed
    os.mkfifo(tmp_path / "pipe")
    (root / "fifo.png").symlink_to(tmp_path / "pipe")
    os.mkfifo(root / "sub" / "plain_fifo")
    (root / "zero.png").symlink_to("/dev/zero")
    return root


def _rows(out):
    return {r["path"]: r for sid in list_complete_shards(out) for r in pq.read_table(shard_paths(out, sid)[1]).to_pylist()}


def _ingest(folder, out, limit):
    def _hung(*_):
        raise TimeoutError("ingest hung on an odd file")

    old = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(60)
    try:
        return ingest.main(["--folder", str(folder), "--source", "odd", "--out", str(out), "--shard-size", "4",
                            "--max-image-bytes", str(limit)])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_odd_files_become_statuses_and_good_files_are_ingested(hostile, tmp_path):
    limit = len(_png(1)) + 100
    assert len((hostile / "big.png").read_bytes()) > limit
    summary = _ingest(hostile, tmp_path / "raw", limit)
    rows = _rows(tmp_path / "raw")
    assert summary["files"] == len(rows) == 9
    status = {path: r["status"] for path, r in rows.items()}
    assert status == {"good.png": "success", "sub/good2.png": "success", "big.png": "too_large",
                      "loop_a.png": "symlink_loop", "loop_b.png": "symlink_loop", "self.png": "symlink_loop",
                      "fifo.png": "not_a_regular_file", "sub/plain_fifo": "not_a_regular_file",
                      "zero.png": "not_a_regular_file"}
    assert "FIFO" in rows["fifo.png"]["error_message"] and "character device" in rows["zero.png"]["error_message"]
    assert str(limit) in rows["big.png"]["error_message"]
    assert not any(p.startswith("sub/up") for p in rows)  # the folder symlink cycle is not walked


def test_read_regular_file_caps_the_bytes_read(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    assert ingest.read_regular_file(path, 1000) == b"x" * 1000
    with pytest.raises(Exception, match="exceeds --max-image-bytes 999"):
        ingest.read_regular_file(path, 999)


def test_two_identical_ingests_write_byte_identical_parquets(hostile, tmp_path):
    (hostile / "notes.txt").write_bytes(b"not an image")  # PIL's error for it named a memory address
    (hostile / "broken.png").write_bytes(_png(4)[:60])
    first, second = tmp_path / "raw1", tmp_path / "raw2"
    _ingest(hostile, first, 10_000)
    _ingest(hostile, second, 10_000)
    shards = list_complete_shards(first)
    assert shards == list_complete_shards(second) and shards
    for sid in shards:
        assert shard_paths(first, sid)[1].read_bytes() == shard_paths(second, sid)[1].read_bytes()
    messages = " ".join(r["error_message"] or "" for r in _rows(first).values())
    assert "0x" not in messages and "object at" not in messages
