"""curation.ingest: local folders -> raw shards (statuses, idempotent reruns, redo of damaged shards)."""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import ingest
from curation.rawshards import (
    check_shard,
    iter_raw_tar,
    list_complete_shards,
    shard_paths,
)
from curation.sharding.allocation import allocate


def _img(w: int, h: int, fmt: str, seed: int, mode: str = "RGB") -> bytes:
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "DIV2K_like"
    png, jpg = _img(40, 30, "PNG", 1), _img(40, 30, "JPEG", 6)
    files = {
        "0001.png": png,
        "a/0002.png": _img(33, 35, "PNG", 2, "L"),
        "a/0003.jpg": _img(50, 20, "JPEG", 3),
        "b/deep/0004.png": _img(31, 31, "PNG", 4, "RGBA"),
        "b/deep/0005.jpeg": _img(64, 48, "JPEG", 5),
        "b/truncated.png": png[: len(png) // 2],
        "b/truncated.jpg": jpg[: len(jpg) // 2],
        "empty.jpg": b"",
        "notes.txt": b"licence text, not an image",
        "page.jpg": b"<!DOCTYPE html><html><body>404</body></html>",
        ".hidden.png": png,
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root, files


def _rows(out):
    tables = [pq.read_table(shard_paths(out, sid)[1]) for sid in list_complete_shards(out)]
    return {r["path"]: r for t in tables for r in t.to_pylist()}


def test_ingest_statuses_bytes_and_rerun(corpus, tmp_path):
    root, files = corpus
    out = tmp_path / "raw"
    summary = ingest.main(["--folder", str(root), "--source", "div2k", "--out", str(out), "--shard-size", "4"])
    shards = list_complete_shards(out)
    assert shards == ["00000", "00001", "00002"] and summary["files"] == 10  # hidden file skipped
    assert all(check_shard(out, s)[0] for s in shards)
    rows = _rows(out)
    assert set(rows) == set(files) - {".hidden.png"}
    assert list(rows) == sorted(rows)  # deterministic sorted order across shards
    assert len({r["key"] for r in rows.values()}) == len(rows)
    good = ["0001.png", "a/0002.png", "a/0003.jpg", "b/deep/0004.png", "b/deep/0005.jpeg"]
    for rel in good:
        r = rows[rel]
        assert r["status"] == "success" and r["source"] == "div2k" and r["url"] == (root / rel).resolve().as_uri()
        assert r["sha256"] == hashlib.sha256(files[rel]).hexdigest() and r["size_bytes"] == len(files[rel])
        assert (r["width"], r["height"]) == Image.open(io.BytesIO(files[rel])).size
    assert rows["empty.jpg"]["status"] == "empty"
    for rel in ("notes.txt", "page.jpg"):
        assert rows[rel]["status"] == "failed_to_decode" and "not" in rows[rel]["error_message"]
    assert rows["b/truncated.png"]["status"] == "failed_to_decode"  # the header probe reads to the end of a PNG
    assert rows["b/truncated.jpg"]["status"] == "success"  # JPEG header is fine; --full-decode catches it (below)

    samples = {s.meta["path"]: s for sid in shards for s in iter_raw_tar(shard_paths(out, sid)[0])}
    assert set(samples) == set(good) | {"b/truncated.jpg"}
    assert all(samples[rel].image == files[rel] for rel in good)  # original bytes, untouched
    assert samples["a/0003.jpg"].image_member.endswith(".jpg") and samples["0001.png"].image_member.endswith(".png")
    stats = json.loads(shard_paths(out, shards[0])[2].read_text())
    assert stats["count"] == 4 and sum(stats["status_dict"].values()) == 4 and stats["source"] == "div2k"

    # Rerun: nothing rewritten.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    again = ingest.main(["--folder", str(root), "--source", "div2k", "--out", str(out), "--shard-size", "4"])
    assert again["shard_counts"] == {"skipped": 3}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == mtimes

    # A truncated tar is detected and only that shard is rewritten, identically.
    tar = shard_paths(out, "00001")[0]
    original = tar.read_bytes()
    tar.write_bytes(original[:700])
    redo = ingest.main(["--folder", str(root), "--source", "div2k", "--out", str(out), "--shard-size", "4"])
    assert redo["shard_counts"] == {"skipped": 2, "redone": 1, "written": 1}
    assert tar.read_bytes() == original and check_shard(out, "00001")[0]
    assert shard_paths(out, "00000")[0].stat().st_mtime_ns == mtimes["00000.tar"]

    # The same folder changed since it was planned: a clear error, nothing touched.
    (root / "new.png").write_bytes(files["0001.png"])
    with pytest.raises(ValueError, match="different input"):
        ingest.main(["--folder", str(root), "--source", "div2k", "--out", str(out)])


def test_ingest_ids_continue_after_existing_shards(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "raw"
    out.mkdir()
    allocate(out, "some-download-job", count=3, unit_size=10, fingerprint="x")  # e.g. download shards 0-2
    (out / "00005.tar").write_bytes(b"")  # a stray shard file on disk also reserves its id
    first = ingest.main(["--folder", str(root / "a"), "--source", "flickr2k", "--out", str(out),
                         "--shard-size", "1", "--workers", "2"])  # one Dask task per shard, 2 workers
    assert first["shards"] == ["00006", "00007"] and first["shard_counts"] == {"written": 2}
    second = ingest.main(["--folder", str(root), "--source", "lsdir", "--out", str(out), "--no-recursive",
                          "--full-decode", "--shard-size", "2", "--extensions", "png", "jpg"])
    assert second["shards"] == ["00008", "00009"] and second["files"] == 3  # 0001.png, empty.jpg, page.jpg
    rows = _rows(out)
    assert rows["0001.png"]["source"] == "lsdir" and rows["empty.jpg"]["status"] == "empty"
    assert rows["0003.jpg"]["status"] == "success" and rows["0003.jpg"]["source"] == "flickr2k"
    assert {r["source"] for r in rows.values()} == {"flickr2k", "lsdir"}
    keys = [r["key"] for r in rows.values()]
    assert len(keys) == len(set(keys))


def test_ingest_full_decode_flags_truncated(corpus, tmp_path):
    root, _ = corpus
    out = root / "b" / "raw"  # output inside the ingested folder: never ingested itself
    ingest.main(["--folder", str(root / "b"), "--source", "ntire", "--out", str(out), "--full-decode"])
    again = ingest.main(["--folder", str(root / "b"), "--source", "ntire", "--out", str(out), "--full-decode"])
    assert again["files"] == 4 and again["shard_counts"] == {"skipped": 1}
    rows = _rows(out)
    assert rows["truncated.jpg"]["status"] == "failed_to_decode"
    assert "truncated" in rows["truncated.jpg"]["error_message"].lower()
    assert rows["deep/0004.png"]["status"] == "success"


def test_ingest_dangling_symlink_is_a_status(corpus, tmp_path):
    root, _ = corpus
    (root / "a" / "0009.png").symlink_to(root / "a" / "gone.png")
    ingest.main(["--folder", str(root / "a"), "--source", "x", "--out", str(tmp_path / "raw")])
    rows = _rows(tmp_path / "raw")
    assert rows["0009.png"]["status"] == "failed_to_read" and "FileNotFoundError" in rows["0009.png"]["error_message"]
    assert rows["0002.png"]["status"] == "success" and len(rows) == 3


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads mode-000 files")
def test_ingest_unreadable_file_is_a_status(corpus, tmp_path):
    root, _ = corpus
    locked = root / "a" / "0002.png"
    locked.chmod(0)
    try:
        ingest.main(["--folder", str(root / "a"), "--source", "x", "--out", str(tmp_path / "raw")])
    finally:
        locked.chmod(0o644)
    rows = _rows(tmp_path / "raw")
    assert rows["0002.png"]["status"] == "failed_to_read" and "Permission" in rows["0002.png"]["error_message"]
    assert rows["0003.jpg"]["status"] == "success"
