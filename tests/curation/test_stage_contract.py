"""The stage contract on every curation stage that writes a folder: download, ingest, score, shard.

Per stage: a rerun with the same settings resumes; with different settings it exits 2 naming each
setting and changes nothing; ``--overwrite`` recomputes; while another process holds the folder a run
exits 2 at once naming the holder and deletes none of its files.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_score_support import Sample, encode, natural_image, write_raw_shard
from test_shard_helpers import encode as encode_png
from test_shard_helpers import half_flat, textured
from test_shard_helpers import write_raw_shard as write_patch_source

from common.stagefolder import read_stage
from curation import download, ingest, score, shard
from curation.rawshards import list_complete_shards

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _png(w: int, h: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _refused(capsys, fn, argv) -> str:
    """Run an entry point that must refuse: exit code 2; returns its stderr."""
    with pytest.raises(SystemExit) as exited:
        fn(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@contextlib.contextmanager
def _held(folder: Path, stage: str):
    """Another process holding ``folder``'s lock, as a running stage does."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from common.stagefolder import folder_lock
        with folder_lock({str(folder)!r}, {stage!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


# ---- ingest ------------------------------------------------------------------------------------

def test_ingest_resume_refuse_overwrite_and_other_producers(tmp_path, capsys):
    folder, other, raw = tmp_path / "div2k", tmp_path / "flickr", tmp_path / "raw"
    for i in range(3):
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        (folder / ("sub" if i else "") / f"{i}.png").write_bytes(_png(40, 30, i))
    other.mkdir()
    (other / "a.png").write_bytes(_png(30, 30, 9))
    base = ["--folder", str(folder), "--source", "div2k", "--out", str(raw), "--shard-size", "2"]
    first = ingest.main(base)
    assert first["shard_counts"] == {"written": 2}
    assert ingest.main(base)["shard_counts"] == {"skipped": 2}  # same settings: resumes
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir() if p.is_file()}
    err = _refused(capsys, ingest.main, [*base, "--no-recursive", "--full-decode"])
    assert "recursive: recorded True, now False" in err and "full_decode: recorded False, now True" in err
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir() if p.is_file()} == before  # nothing changed
    # another folder / source into the same raw/ is another producer, not a conflict
    assert ingest.main(["--folder", str(other), "--source", "flickr", "--out", str(raw)])["shard_counts"] == {"written": 1}
    redone = ingest.main([*base, "--no-recursive", "--overwrite"])  # recomputes: old shards released
    assert redone["files"] == 1 and redone["shard_counts"] == {"written": 1}
    assert sorted(list_complete_shards(raw)) == sorted(["00002", *redone["shards"]])  # flickr's 00002 kept
    assert not set(first["shards"]) & set(list_complete_shards(raw))


def test_ingest_refused_while_another_process_writes_raw(tmp_path, capsys):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.png").write_bytes(_png(30, 30, 1))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "_tmp").mkdir()
    (raw / "_tmp" / "00000.x").write_bytes(b"the holder's work in progress")
    with _held(raw, "download") as holder:
        err = _refused(capsys, ingest.main, ["--folder", str(tmp_path / "f"), "--source", "s", "--out", str(raw)])
    assert f"pid {holder.pid}" in err and "download" in err
    assert (raw / "_tmp" / "00000.x").exists() and not list_complete_shards(raw)


# ---- download ----------------------------------------------------------------------------------

@pytest.fixture()
def served(tmp_path):
    from pipeline.httpserve import serve_folder

    site = tmp_path / "site"
    site.mkdir()
    sizes = [(90, 80), (100, 100)]
    for i, (w, h) in enumerate(sizes):
        (site / f"p{i}.png").write_bytes(_png(w, h, i))
    with serve_folder(site) as base:
        urls = tmp_path / "urls.parquet"
        pq.write_table(pa.table({"URL": [f"{base}/p{i}.png" for i in range(2)],
                                 "WIDTH": [float(w) for w, _ in sizes], "HEIGHT": [float(h) for _, h in sizes]}), urls)
        yield urls


def test_download_resume_refuse_overwrite(served, tmp_path, capsys, scheduler):
    raw = tmp_path / "raw"
    base = ["--urls", str(served), "--out", str(raw), "--min-side", "64", "--scheduler", scheduler, "--timeout", "5",
            "--encode-format", "png", "--slice-timeout", "120", "--allow-private-addresses"]  # loopback server
    assert download.main(base)["rows_by_status"] == {"success": 2}
    first = list_complete_shards(raw)
    assert download.main(base)["slices"] == {"skipped": 1}
    err = _refused(capsys, download.main, [*base[:4], "--min-side", "85", *base[6:]])
    assert "min_side: recorded 64, now 85" in err and list_complete_shards(raw) == first
    again = download.main([*base[:4], "--min-side", "85", *base[6:], "--overwrite"])
    assert again["slices"] == {"downloaded": 1} and again["rows_by_status"] == {"success": 1}  # 90x80 now too small
    (sid,) = list_complete_shards(raw)  # the old shard was released; the new one holds only p1
    assert [r["url"].rsplit("/", 1)[-1] for r in pq.read_table(raw / f"{sid}.parquet").to_pylist()] == ["p1.png"]
    with _held(raw, "ingest") as holder:
        assert f"pid {holder.pid}" in _refused(capsys, download.main, base + ["--overwrite"])
    assert len(list_complete_shards(raw)) == 1


# ---- score -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scheduler():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="3GiB") as cluster:
        yield cluster.scheduler_address


def test_score_resume_refuse_overwrite_and_lock(tmp_path, capsys, scheduler):
    write_raw_shard(tmp_path / "raw", "00000", [Sample(f"a{i}", encode(natural_image((128, 112), seed=i)))
                                                for i in range(2)])
    scores = tmp_path / "scores"
    base = [str(tmp_path / "raw"), "--out", str(scores), "--metrics", "niqe,brisque", "--scheduler", scheduler]
    assert score.main(base) == 0
    table = scores / "00000.parquet"
    stamp = table.stat().st_mtime_ns
    assert read_stage(scores)["settings"]["metrics"] == ["niqe", "brisque"]
    assert score.main(base) == 0 and table.stat().st_mtime_ns == stamp  # resumed: nothing rescored
    err = _refused(capsys, score.main, [*base[:3], "--metrics", "niqe", "--max-pixels", "1000000", *base[5:]])
    assert "metrics: recorded ['niqe', 'brisque'], now ['niqe']" in err and "max_pixels" in err
    assert table.stat().st_mtime_ns == stamp
    config = (scores / "_score_config.yaml").read_text()
    assert "niqe,brisque" in config  # the recorded config is not rewritten as if the refused run applied
    assert score.main([*base[:3], "--metrics", "niqe", *base[5:], "--overwrite"]) == 0
    rescored = pq.read_table(table)
    assert rescored.column("brisque").null_count == 2 and rescored.column("niqe").null_count == 0
    (scores / ".00001.parquet.abc.tmp").write_bytes(b"the holder's temp file")
    with _held(scores, "score") as holder:
        err = _refused(capsys, score.main, [*base[:3], "--metrics", "niqe", *base[5:]])
    assert f"pid {holder.pid}" in err and (scores / ".00001.parquet.abc.tmp").exists()


def test_refilter_without_rescoring_keeps_600px_photos_with_their_scores(tmp_path, capsys, scheduler):
    """Score measures, the filter decides: a default score, then --min-side 400, keeps 800x600 photos."""
    from curation import filter as filt

    samples = [Sample(f"photo{i}", encode(natural_image((800, 600), seed=i))) for i in range(2)]
    write_raw_shard(tmp_path / "raw", "00000", [*samples, Sample("wee", encode(natural_image((300, 200), seed=5)))])
    scores = tmp_path / "scores"
    assert score.main([str(tmp_path / "raw"), "--out", str(scores), "--metrics", "niqe,brisque",
                       "--scheduler", scheduler]) == 0  # default flags otherwise (no NIMA weights in the suite)
    stamp = {p.name: p.stat().st_mtime_ns for p in scores.iterdir()}
    rows = {r["key"]: r for r in pq.read_table(scores / "00000.parquet").to_pylist()}
    assert {k: (r["status"], r["width"], r["height"]) for k, r in rows.items()} == {
        "photo0": ("ok", 800, 600), "photo1": ("ok", 800, 600), "wee": ("ok", 300, 200)}
    loose = ["--scores", str(scores), "--thresholds", "niqe=100,brisque=200"]
    assert filt.main([*loose, "--out", str(tmp_path / "a" / "kept.parquet")]) == 0  # default --min-side 1024
    assert pq.read_table(tmp_path / "a" / "kept.parquet").num_rows == 0
    decisions = pq.read_table(tmp_path / "a" / "decisions.parquet").column("drop_reason").to_pylist()
    assert decisions == ["min_side<1024"] * 3
    assert filt.main([*loose, "--min-side", "400", "--out", str(tmp_path / "b" / "kept.parquet")]) == 0
    kept = {r["key"]: r for r in pq.read_table(tmp_path / "b" / "kept.parquet").to_pylist()}
    assert set(kept) == {"photo0", "photo1"}
    assert all(kept[k]["niqe"] == rows[k]["niqe"] and kept[k]["brisque"] == rows[k]["brisque"] for k in kept)
    assert {p.name: p.stat().st_mtime_ns for p in scores.iterdir()} == stamp  # never rescored


def _dataset(root: Path, n: int) -> tuple[Path, Path]:
    """raw/ with n 768x512 images (textured / half flat) and a kept.parquet listing them all."""
    samples = [(f"im{i:03d}", encode_png((textured if i % 2 else half_flat)(512, 768, i)), 768, 512) for i in range(n)]
    rows = write_patch_source(root / "raw", "00000", samples, "synthetic")
    kept = [{**{k: r[k] for k in ("key", "source", "url", "sha256", "width", "height")}, "raw_shard": "00000",
             "niqe": 3.0, "brisque": 20.0, "nima": 5.0, "status": "ok", "kept": True} for r in rows]
    pq.write_table(pa.Table.from_pylist(kept), root / "kept.parquet")
    return root / "kept.parquet", root / "raw"


# ---- shard -------------------------------------------------------------------------------------

SHARD_ARGS = ["--patch", "64", "--flat-cell", "32", "--shard-size", "700KB", "--log-level", "WARNING"]


def test_shard_refuses_other_settings_and_overwrite_recomputes(tmp_path, capsys):
    kept, raw = _dataset(tmp_path, n=4)
    out = tmp_path / "shards"
    base = ["--kept", str(kept), "--raw", str(raw), "--out", str(out), "--workers", "0"]
    first = shard.main([*base, *SHARD_ARGS])
    err = _refused(capsys, shard.main, [*base, *SHARD_ARGS[:-2], "--png-level", "6", "--patch", "128"])
    assert "png_level: recorded 3, now 6" in err and "patch: recorded 64, now 128" in err
    assert shard.main([*base, *SHARD_ARGS]) == first  # same settings resume, same manifest
    other = pq.read_table(kept).slice(0, 2)  # a re-filtered kept.parquet is other content
    pq.write_table(other, tmp_path / "kept2.parquet")
    err = _refused(capsys, shard.main, ["--kept", str(tmp_path / "kept2.parquet"), *base[2:], *SHARD_ARGS])
    assert "kept_rows: recorded" in err and "kept_images: recorded 4, now 2" in err
    redone = shard.main([*base, *SHARD_ARGS[:1], "128", *SHARD_ARGS[2:], "--overwrite"])
    assert redone["patch_size"] == 128 and redone["total_samples"] < first["total_samples"]
    assert len(list(out.glob("patches-*.tar"))) == len(redone["shards"])  # the 64-px shards are gone


def test_second_shard_run_exits_2_while_the_first_runs_and_the_first_completes(tmp_path, capsys):
    kept, raw = _dataset(tmp_path, n=16)
    out = tmp_path / "shards"
    argv = ["--kept", str(kept), "--raw", str(raw), "--out", str(out), *SHARD_ARGS, "--workers", "0"]
    first = subprocess.Popen([sys.executable, "-m", "curation.shard", *argv], cwd=REPO, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "plan.json").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    err = _refused(capsys, shard.main, argv)
    assert not (out / "manifest.json").exists(), "the first run finished before the second started"
    assert f"pid {first.pid}" in err and "shard" in err
    assert first.wait(timeout=120) == 0, first.stderr.read()[-2000:]
    assert (out / "manifest.json").exists() and not list(out.glob(".*.tmp"))
