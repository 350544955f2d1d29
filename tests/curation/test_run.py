"""``curation.run``: a folder of real photographs → shards, manifest and report in one command.

Photographs: ../shared's Kodak samples when present, else the real photographs bundled with
scikit-image (astronaut, coffee, chelsea). Everything really runs: ingest, NIQE/BRISQUE scoring on
a Dask LocalCluster, filter, shard, report.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from curation import run as curation_run
from tests.conftest import SHARED_DIR

LOOSE = ["--metrics", "niqe,brisque", "--thresholds", "niqe=100,brisque=200", "--workers", "1",
         "--report-samples", "4"]


def _photos(folder: Path) -> Path:
    folder.mkdir(parents=True)
    kodak = SHARED_DIR / "data" / "samples" / "Kodak24_500px"
    if kodak.is_dir():
        files = sorted(kodak.glob("*.png"))[:3]
    else:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        files = [data / n for n in ("astronaut.png", "coffee.png", "chelsea.png")]
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    base = tmp_path_factory.mktemp("curate")
    photos = _photos(base / "My Photos")
    out = base / "run"
    rc = curation_run.main([str(photos), "--out", str(out), "--min-side", "256", "--patch", "128", *LOOSE])
    return photos, out, rc


def test_one_command_writes_shards_manifest_and_report(curated):
    _, out, rc = curated
    assert rc == 0
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["total_samples"] > 0 and manifest["patch_size"] == 128
    with tarfile.open(out / "shards" / manifest["shards"][0]["name"]) as tar:
        assert any(n.endswith(".png") for n in tar.getnames())
    assert (out / "report" / "index.html").is_file()
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["filter"]["kept"] == 3 and summary["patches"] == manifest["total_samples"]
    assert summary["warnings"] == []
    assert list(summary["ingest"]) == ["my-photos"]  # the source is named after the folder


def test_rerun_resumes_without_redoing_work(curated, capsys):
    photos, out, _ = curated
    before = (out / "scores").stat().st_mtime_ns, sorted(p.name for p in (out / "raw").glob("*.tar"))
    rc = curation_run.main([str(photos), "--out", str(out), "--min-side", "256", "--patch", "128", *LOOSE])
    text = capsys.readouterr().out
    assert rc == 0
    assert "0 written" in text and "2 to score" not in text  # ingest and score skipped their finished shards
    assert sorted(p.name for p in (out / "raw").glob("*.tar")) == before[1]


def test_default_min_side_drops_ordinary_photos_loudly(curated, tmp_path, capsys):
    photos, _, _ = curated
    rc = curation_run.main([str(photos), "--out", str(tmp_path / "run"), *LOOSE])  # default --min-side 1024
    err = capsys.readouterr().err
    assert rc == 1
    assert "kept NONE of 3" in err and "--min-side 1024" in err and "rerun with e.g. --min-side" in err
    assert not (tmp_path / "run" / "shards").exists()
    assert (tmp_path / "run" / "report" / "index.html").is_file()  # the report is still there to look at


def test_patch_larger_than_every_photo_warns(curated, tmp_path, capsys):
    photos, out, _ = curated
    again = tmp_path / "run"
    shutil.copytree(out, again, ignore=shutil.ignore_patterns("shards", "report"))  # reuse ingest + scores
    rc = curation_run.main([str(photos), "--out", str(again), "--min-side", "256", "--patch", "1024", *LOOSE])
    err = capsys.readouterr().err
    assert rc == 1
    assert "NO PATCHES" in err and "smaller than one --patch 1024" in err


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a folder"):
        curation_run.main([str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
