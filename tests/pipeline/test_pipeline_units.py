"""Small parts of the demo: the loopback server, the sample files, loss windows, threshold selection."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import demo_data
from pipeline.demo_stages import thresholds_for
from pipeline.demo_train import loss_windows
from pipeline.httpserve import serve_folder


def test_server_serves_files_and_404s_the_rest(tmp_path):
    (tmp_path / "a.png").write_bytes(b"PNGDATA")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    with serve_folder(tmp_path) as base:
        assert base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{base}/a.png", timeout=5) as resp:
            assert resp.read() == b"PNGDATA" and resp.headers["Content-Type"] == "image/png"
        for bad in ("missing.jpg", "sub/b.png", "../etc/passwd", ""):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{base}/{bad}", timeout=5)
            assert err.value.code == 404
    with pytest.raises(urllib.error.URLError):  # stopped at the end of the block
        urllib.request.urlopen(f"{base}/a.png", timeout=2)


def test_url_parquet_is_laion_shaped_with_one_broken_url(tmp_path):
    sample = demo_data.SAMPLES["small"]
    table = demo_data.write_url_parquet(sample.download, "http://127.0.0.1:9", tmp_path / "u.parquet")
    assert pq.read_table(tmp_path / "u.parquet").equals(table)
    assert table.column_names == ["URL", "TEXT", "WIDTH", "HEIGHT", "pwatermark", "punsafe"]
    rows = table.to_pylist()
    assert len(rows) == len(sample.download) + 1 and rows[-1]["URL"].endswith(demo_data.BROKEN_NAME)
    with Image.open(demo_data.photo_path(sample.download[0])) as img:
        assert (rows[0]["WIDTH"], rows[0]["HEIGHT"]) == img.size


def test_heldout_is_rgb_crop_and_disjoint_from_curation(tmp_path):
    for sample in demo_data.SAMPLES.values():
        curated = {p.file for p in sample.download + sample.ingest}
        assert curated.isdisjoint(p.file for p in sample.heldout)
    files = demo_data.write_heldout(demo_data.HELDOUT, tmp_path, 96)
    noisy = demo_data.write_noisy(files[0], tmp_path / "n" / "x.png", 25)
    for f in (*files, noisy):
        with Image.open(f) as img:
            assert img.mode == "RGB" and img.size == (96, 96)
    assert all(lic["licence"] for lic in demo_data.licences(demo_data.SAMPLES["full"]))


def test_loss_windows_use_the_last_run(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [{"step": s, "loss": 9.0} for s in (1, 2, 3)]  # an abandoned run...
    recs += [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4, 5, 6, 7, 8)]  # ...restarted from scratch
    recs.insert(5, {"step": 2, "val/psnr": 20.0})
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    w = loss_windows(log)
    assert w["records"] == 8 and w["first_steps"] == [1, 2] and w["last_steps"] == [7, 8]
    assert w["first_loss"] == pytest.approx(0.75) and w["last_loss"] < w["first_loss"]


def test_thresholds_restricted_to_scored_metrics():
    assert thresholds_for("niqe=8,brisque=50,nima=4.0", ["niqe", "brisque"]) == "niqe=8,brisque=50"
