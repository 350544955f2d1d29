"""URL-table reading and pre-filtering (no network): column case variants, missing columns, nulls."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.downloading.urls import (
    Prefilter,
    UrlColumns,
    load_url_file,
    resolve_inputs,
)
from curation.sharding.allocation import allocate


def _write(path, table):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_prefilter_lowercase_columns_and_nulls(tmp_path):
    table = pa.table({
        "url": ["http://a/1", "http://a/2", None, "HTTPS://a/4", "http://a/5", "  ", "http://a/7", "http://a/1",
                "file:///etc/passwd"],
        "text": ["one", None, "three", "four", "five", "six", "seven", "again", "local"],
        "width": pa.array([2048, 500, 4000, None, 3000, 3000, 1024, 2048, 2048], pa.int64()),
        "height": pa.array([1024, 4000, 4000, None, 3000, 3000, 1024, 2048, 2048], pa.int64()),
        "PWATERMARK": [0.1, 0.1, 0.1, 0.1, 0.81, 0.1, None, 0.1, 0.1],
        "PUNSAFE": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0],
    })
    path = _write(tmp_path / "u" / "a.parquet", table)
    kept, stats = load_url_file(path, UrlColumns(), Prefilter(min_side=1024), source="laion-hr")
    assert kept.column("url").to_pylist() == ["http://a/1", "HTTPS://a/4"]
    assert kept.column("caption").to_pylist() == ["one", "four"]
    assert kept.column("url_row").to_pylist() == [0, 3] and set(kept.column("source").to_pylist()) == {"laion-hr"}
    assert kept.column("declared_width").to_pylist() == [2048, None]
    assert stats == {"file": "a.parquet", "rows": 9, "no_url": 2, "not_http": 1, "below_min_side": 1,
                     "watermark": 1, "unsafe": 1, "duplicate_url": 1, "size_unknown_kept": 1, "kept": 2,
                     "prefiltered": 7}


def test_missing_optional_columns_and_custom_names(tmp_path):
    table = pa.table({"link": ["http://b/1", "http://b/2"], "alt": ["x", "y"]})
    path = _write(tmp_path / "b.parquet", table)
    kept, stats = load_url_file(path, UrlColumns(url="LINK", caption="ALT"), Prefilter(min_side=4096), "other")
    assert kept.num_rows == 2 and stats["prefiltered"] == 0 and stats["size_unknown_kept"] == 2
    assert kept.column("pwatermark").null_count == 2
    with pytest.raises(ValueError, match="no URL column"):
        load_url_file(_write(tmp_path / "c.parquet", pa.table({"x": [1]})), UrlColumns(), Prefilter(), "s")


def test_resolve_inputs_file_folder_glob(tmp_path):
    for name in ("p1.parquet", "p0.parquet"):
        _write(tmp_path / "d" / name, pa.table({"URL": ["u"]}))
    assert [p.name for p in resolve_inputs(str(tmp_path / "d"))] == ["p0.parquet", "p1.parquet"]
    assert [p.name for p in resolve_inputs(str(tmp_path / "d" / "p1*"))] == ["p1.parquet"]
    with pytest.raises(FileNotFoundError):
        resolve_inputs(str(tmp_path / "nothing*.parquet"))


def test_allocation_is_stable_and_disjoint(tmp_path):
    a = allocate(tmp_path, "job-a", count=3, unit_size=10, fingerprint="f1")
    b = allocate(tmp_path, "job-b", count=2, unit_size=5, fingerprint="f2")
    assert a.shard_ids() == ["00000", "00001", "00002"] and b.shard_ids() == ["00003", "00004"]
    again = allocate(tmp_path, "job-a", count=99, unit_size=7, fingerprint="f1")
    assert (again.first, again.count, again.unit_size) == (0, 3, 10)  # a rerun keeps its plan
    with pytest.raises(ValueError, match="different input"):
        allocate(tmp_path, "job-a", count=3, unit_size=10, fingerprint="changed")


def test_fast_shard_check_agrees_with_check_shard(tmp_path):
    """check_shard headers-only and full-read verdicts agree on every truncation point."""
    import io

    import numpy as np
    from PIL import Image

    from curation import ingest
    from curation.rawshards import check_shard, shard_paths

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng(i).random((20, 30, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
        (folder / f"{i}.png").write_bytes(buf.getvalue())
    out = tmp_path / "raw"
    ingest.main(["--folder", str(folder), "--source", "t", "--out", str(out)])
    tar = shard_paths(out, "00000")[0]
    original = tar.read_bytes()
    assert check_shard(out, "00000", headers_only=True) == check_shard(out, "00000") == (True, "ok")
    for cut in list(range(0, len(original), 97)) + [len(original) - 1]:
        tar.write_bytes(original[:cut])
        assert check_shard(out, "00000", headers_only=True)[0] == check_shard(out, "00000")[0], cut
    tar.write_bytes(original)
    shard_paths(out, "00000")[2].unlink()
    assert check_shard(out, "00000", headers_only=True) == (False, "missing 00000_stats.json")


@pytest.mark.parametrize("module", ["curation.download", "curation.ingest"])
def test_cli_help_lists_every_flag(module, repo_root):
    import dataclasses
    import importlib
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=repo_root, capture_output=True, text=True,
                         check=True).stdout
    cls = {"curation.download": "DownloadConfig", "curation.ingest": "IngestConfig"}[module]
    for f in dataclasses.fields(getattr(importlib.import_module(module), cls)):
        assert "--" + f.name.replace("_", "-") in out


def test_encode_quality_defaults_per_format_and_rejects_out_of_range():
    from curation.download import DownloadConfig, _resolve_encode_quality

    base = DownloadConfig(urls="u.parquet", out="raw")
    assert _resolve_encode_quality(base).encode_quality == 95
    png = _resolve_encode_quality(DownloadConfig(urls="u.parquet", out="raw", encode_format="png"))
    assert png.encode_quality == 3
    with pytest.raises(SystemExit, match="0..9"):
        _resolve_encode_quality(DownloadConfig(urls="u.parquet", out="raw", encode_format="png", encode_quality=95))
