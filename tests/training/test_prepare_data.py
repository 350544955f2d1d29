"""training.prepare_data on fake download trees named exactly like the official lists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import official_lists as ol
from training import prepare_data as pd
from training import restoration_data as rd


def _img(path: Path, seed: int, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    """A user's download folder: partial official sets, extras, a test copy, one ambiguous name."""
    dl = tmp_path_factory.mktemp("downloads")
    den = ol.read_list("denoise")
    bmp = [n for n in den if n.endswith(".bmp")][:3]
    jpg = [n for n in den if n.endswith(".jpg")][:2]
    for i, n in enumerate(bmp):
        _img(dl / "WED" / n, i)
    _img(dl / "WED" / "99999.bmp", 50)  # not listed: extra
    _img(dl / "BSD400" / jpg[0], 60)
    _img(dl / "BSD400" / jpg[1], 61)
    _img(dl / "copy2" / jpg[1], 62)  # same name, other bytes: ambiguous
    for n in (1, 2, 3, 4):
        _img(dl / "RainTrainL" / f"rain-{n}.png", 100 + n)
        if n != 4:  # rain-4 has no clean pair: missing
            _img(dl / "RainTrainL" / f"norain-{n}.png", 200 + n)
    _img(dl / "RainTrainL" / "rainregion-1.png", 300)  # extra
    haze = ol.read_list("dehaze")[:3]
    for i, e in enumerate(haze):
        _img(dl / "OTS" / "haze" / "part1" / Path(e).name, 400 + i)
    _img(dl / "OTS" / "haze" / "part1" / "0025_0.99_0.3.jpg", 410)  # extra hazy
    _img(dl / "OTS" / "clear" / "0025.jpg", 420)
    _img(dl / "OTS" / "clear" / "0026.jpg", 421)  # extra clear
    for n in (1, 2):  # Rain100L test copy with the same names as train: must lose for training
        _img(dl / "Rain100L" / "test" / "rainy" / f"rain-{n}.png", 500 + n)
        _img(dl / "Rain100L" / "test" / "gt" / f"norain-{n}.png", 510 + n)
    for seq in ("GOPR0384_11_00", "GOPR0385_11_01"):
        for n in (1, 2):
            _img(dl / "GOPRO_Large" / "test" / seq / "blur" / f"{n:06d}.png", 600 + n)
            _img(dl / "GOPRO_Large" / "test" / seq / "sharp" / f"{n:06d}.png", 610 + n)
            _img(dl / "GOPRO_Large" / "train" / seq / "blur" / f"{n:06d}.png", 620 + n)
            _img(dl / "GOPRO_Large" / "train" / seq / "sharp" / f"{n:06d}.png", 630 + n)
    for split in ("our485", "eval15"):
        for n in (1, 2, 3):
            _img(dl / "LOLdataset" / split / "low" / f"{n}.png", 700 + n)
            _img(dl / "LOLdataset" / split / "high" / f"{n}.png", 710 + n)
    for n in (1, 2):
        _img(dl / "SOTS" / "outdoor" / "hazy" / f"{n:04d}_0.8_0.2.jpg", 800 + n)
        _img(dl / "SOTS" / "outdoor" / "gt" / f"{n:04d}.png", 810 + n)
        _img(dl / "CBSD68" / "original" / f"{n}.png", 820 + n)
        _img(dl / "CBSD68" / "noisy25" / f"{n}.png", 830 + n)
    return dl


def _report(out: Path) -> dict:
    return json.loads((out / "prepare_report.json").read_text())["sets"]


def test_bundled_lists_are_the_official_files():
    assert [len(ol.read_list(t)) for t in ("denoise", "derain", "dehaze")] == [5_144, 200, 72_135]
    assert ol.rain_gt_name("rainy/rain-17.png") == "norain-17.png"
    assert ol.haze_gt_name("synthetic/part3/0123_0.9_0.2.jpg") == "0123.jpg"
    assert ol.PROVENANCE.is_file() and "50c46de1" in ol.PROVENANCE.read_text()


def test_training_sets_found_missing_extra(downloads, tmp_path):
    out = tmp_path / "data"
    assert pd.main(["all", "--src", str(downloads), "--out", str(out), "--no-progress"]) == 0
    rep = _report(out)
    den, rain, haze = rep["denoise"], rep["derain"], rep["dehaze"]
    assert (den["listed"], den["found"], len(den["missing"]), den["extra_ignored"]) == (5_144, 4, 5_140, 1)
    assert list(den["ambiguous"]) == [n for n in ol.read_list("denoise") if n.endswith(".jpg")][1:2]
    assert (rain["listed"], rain["found"], len(rain["missing"]), rain["extra_ignored"]) == (200, 3, 197, 1)
    assert "rainy/rain-4.png" in rain["missing"]
    assert (haze["listed"], haze["found"], len(haze["missing"]), haze["extra_ignored"]) == (72_135, 3, 72_132, 2)
    assert rain["list_sha256"] == ol.LISTS["derain"].sha256
    # the official layout, readable by the trainers' own readers; the train copy of rain-1 was used
    pairs = rd.list_derain_pairs(out / "Train" / "Derain")
    assert [p.lq.name for p in pairs] == ["rain-1.png", "rain-2.png", "rain-3.png"]
    assert (out / "Train/Derain/rainy/rain-1.png").samefile(downloads / "RainTrainL" / "rain-1.png")
    assert (out / "Train/Dehaze/original/0025.jpg").is_file()
    assert len(rd.list_dehaze_pairs(out / "Train" / "Dehaze")) == 3
    assert len(rd.list_images(out / "Train" / "Denoise", recursive=True)) == 4
    # rerun with the same sources resumes; other sources are refused (exit 2), --overwrite rebuilds
    assert pd.main(["derain", "--src", str(downloads), "--out", str(out), "--no-progress"]) == 0
    with pytest.raises(SystemExit) as exc:
        pd.main(["derain", "--src", str(downloads / "RainTrainL"), "--out", str(out), "--no-progress"])
    assert exc.value.code == 2
    assert pd.main(["derain", "--src", str(downloads / "RainTrainL"), "--out", str(out), "--link", "copy",
                    "--overwrite", "--no-progress"]) == 0
    assert not (out / "Train/Derain/rainy/rain-1.png").samefile(downloads / "RainTrainL" / "rain-1.png")
    assert _report(out)["denoise"]["found"] == 4  # other sets' entries kept in the merged report


def test_test_sets_and_five_task_sets(downloads, tmp_path):
    out = tmp_path / "data"
    assert pd.main(["tests5", "deblur", "lowlight", "--src", str(downloads), "--out", str(out), "--link", "sym",
                    "--no-progress"]) == 0
    rep = _report(out)
    assert rep["test-urban100"]["found"] == 0 and "Urban100" in rep["test-urban100"]["skipped"]  # came with the group
    assert not (out / "test/denoise/urban100").exists()
    assert (rep["test-rain100l"]["found"], rep["test-rain100l"]["expected"]) == (2, 100)
    assert rep["test-rain100l"]["count_ok"] is False and rep["test-rain100l"]["missing_count"] == 98
    assert rep["test-sots"]["found"] == 2 and rep["test-bsd68"]["found"] == 2
    assert rep["test-bsd68"]["source_dirs"] == [str((downloads / "CBSD68" / "original").resolve())]
    # the output inside the downloads is never read back as a source
    again = downloads / "prepared"
    assert pd.main(["test-sots", "--src", str(downloads), "--out", str(again), "--no-progress"]) == 0
    assert pd.main(["test-sots", "--src", str(downloads), "--out", str(again), "--no-progress"]) == 0
    assert _report(again)["test-sots"]["found"] == 2
    shutil.rmtree(again)
    assert rep["test-gopro"]["found"] == 4 and rep["deblur"]["found"] == 4
    assert sorted(p.name for p in (out / "test/deblur/gopro/input").iterdir()) == [
        "GOPR0384_11_00_000001.png", "GOPR0384_11_00_000002.png", "GOPR0385_11_01_000001.png", "GOPR0385_11_01_000002.png"]
    assert rep["test-lol"]["found"] == 3 and rep["lowlight"]["found"] == 3
    assert (out / "test/lowlight/lol/input/1.png").resolve() == (downloads / "LOLdataset/eval15/low/1.png").resolve()
    assert (out / "Train/Enhance/low/1.png").resolve() == (downloads / "LOLdataset/our485/low/1.png").resolve()
    assert len(rd.list_same_name_pairs(out / "Train/Deblur", rd.TASK_PAIR_DIRS["deblur"])) == 4


def test_nothing_matches_is_refused(downloads, tmp_path, capsys):
    out = tmp_path / "data"
    with pytest.raises(SystemExit) as exc:
        pd.main(["all", "test-urban100", "--src", str(downloads / "LOLdataset"), "--out", str(out), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "denoise_airnet.txt" in err and "rainTrain.txt" in err and "test-urban100" in err
    assert not (out / "Train").exists() and not (out / "prepare_report.json").exists()
    assert pd.main(["nosuchset", "--src", str(downloads), "--out", str(out)]) == 1


def test_complete_list_has_nothing_missing(tmp_path):
    """All 200 Rain100L train pairs present (empty files: names are what is matched) -> found == listed."""
    dl = tmp_path / "RainTrainL"
    dl.mkdir()
    for entry in ol.read_list("derain"):
        (dl / Path(entry).name).touch()
        (dl / ol.rain_gt_name(entry)).touch()
    (dl / "rainstreak-1.png").touch()
    out = tmp_path / "data"
    assert pd.main(["derain", "--src", str(dl), "--out", str(out), "--no-progress"]) == 0
    rep = _report(out)["derain"]
    assert (rep["found"], rep["missing"], rep["extra_ignored"], rep["loadable"], rep["failed"]) == (200, [], 1, 200, [])
    # a dangling symlink under a listed name is no file: that entry is missing; a symlinked file is linked itself
    (dl / "rain-7.png").unlink()
    (dl / "rain-7.png").symlink_to(tmp_path / "gone.png")
    (dl / "norain-8.png").rename(tmp_path / "real.png")
    (dl / "norain-8.png").symlink_to(tmp_path / "real.png")
    out2 = tmp_path / "data2"
    assert pd.main(["derain", "--src", str(dl), "--out", str(out2), "--no-progress"]) == 0
    rep = _report(out2)["derain"]
    assert rep["missing"] == ["rainy/rain-7.png"] and rep["loadable"] == 199 and rep["failed"] == []
    assert (out2 / "Train/Derain/gt/norain-8.png").samefile(tmp_path / "real.png")
    assert not (out2 / "Train/Derain/gt/norain-8.png").is_symlink()


def test_group_run_keeps_sets_prepared_earlier(downloads, tmp_path):
    out = tmp_path / "data"
    assert pd.main(["test-sots", "--src", str(downloads), "--out", str(out), "--no-progress"]) == 0
    # from a folder holding only LOL: the group's other sets are skipped, the earlier SOTS entry stays
    assert pd.main(["tests5", "--src", str(downloads / "LOLdataset"), "--out", str(out), "--no-progress"]) == 0
    rep = _report(out)
    assert rep["test-sots"]["found"] == 2 and "skipped" not in rep["test-sots"]
    assert rep["test-lol"]["found"] == 3 and rep["test-gopro"]["skipped"]
