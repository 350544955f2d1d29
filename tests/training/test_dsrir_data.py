"""DSRIR data plumbing: progressive schedule, --epoch-chg derivation, CSV lists writer / reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from training import epoch_chg, make_lists
from training.dsrir.schedule import ProgressiveSchedule
from training.make_lists import (
    PairListError,
    missing_files,
    read_pair_list,
    write_pair_list,
)


# ------------------------------------------------------------------ schedule
def test_schedule_switches_patch_and_batch_at_epoch_chg():
    s = ProgressiveSchedule()
    expect = {1: (128, 16), 135: (128, 16), 136: (160, 14), 238: (160, 14), 239: (192, 12),
              314: (192, 12), 315: (256, 8), 347: (256, 8)}
    for e, (ps, bs) in expect.items():
        assert (s.patch_size(e), s.batch_size(e)) == (ps, bs), e
    assert [e for e in range(1, 348) if s.rebuilds_loader(e)] == [1, 136, 239, 315]
    assert s.total_epochs == 347
    with pytest.raises(ValueError):
        s.phase(348)
    with pytest.raises(ValueError):
        s.phase(0)


def test_schedule_lr_warmup_then_cosine_to_min():
    s = ProgressiveSchedule()
    assert s.lr(1) == pytest.approx(2e-4 / 3) and s.lr(3) == pytest.approx(2e-4)
    assert s.lr(347) == pytest.approx(1e-6)
    lrs = [s.lr(e) for e in range(3, 348)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("bad", [dict(epoch_chg=(10, 5, 20, 30)), dict(batch_sizes=(16, 14)),
                                 dict(epoch_chg=(0, 1, 2, 3))])
def test_schedule_rejects_bad_config(bad):
    with pytest.raises(ValueError):
        ProgressiveSchedule(**bad)


def test_custom_schedule():
    s = ProgressiveSchedule(patch_sizes=(32, 48), batch_sizes=(4, 2), epoch_chg=(2, 3), warmup_epochs=1)
    assert [(s.patch_size(e), s.batch_size(e), s.rebuilds_loader(e)) for e in (1, 2, 3)] == [
        (32, 4, True), (32, 4, False), (48, 2, True)]


# ------------------------------------------------------------------ epoch-chg
def test_epoch_chg_reproduces_official_defaults(tmp_path, capsys):
    iters, bs = (128_000, 112_000, 96_000, 64_000), (16, 14, 12, 8)
    assert epoch_chg.derive_epoch_chg(15144, iters, bs) == (135, 238, 314, 347)
    # hand check of the formula on small numbers: N=100, b=10 -> 10 it/epoch; 25 it -> 2 epochs
    assert epoch_chg.derive_epoch_chg(100, (25, 40), (10, 20)) == (2, 2 + 8)
    assert epoch_chg.derive_epoch_chg(105, (21,), (10,), drop_last=True) == (2,)
    with pytest.raises(ValueError, match="less than one epoch"):
        epoch_chg.derive_epoch_chg(1000, (5,), (10,))
    lst = tmp_path / "l.csv"
    write_pair_list(lst, [("a.png", "b.png")] * 100)
    out = tmp_path / "chg.json"
    assert epoch_chg.main(["--list", str(lst), "--iterations", "25", "40", "--batch-size", "10", "20",
                           "--out", str(out)]) == 0
    assert "--epoch-chg 2 10" in capsys.readouterr().out
    assert json.loads(out.read_text())["epoch_chg"] == [2, 10]


# ------------------------------------------------------------------ CSV lists
def test_pair_list_roundtrip_and_malformed_lines(tmp_path):
    pairs = [("Rain100L/train/gt/norain-1.png", "Rain100L/train/rainy/rain-1.png"),
             ("BSD400/a, with comma.png", "BSD400/a, with comma.png")]
    path = tmp_path / "train_x.csv"
    write_pair_list(path, pairs)
    entries = read_pair_list(path)
    assert [(e.target, e.degraded) for e in entries] == pairs
    assert [e.line for e in entries] == [1, 2]
    path.write_text("target,degraded\n" + path.read_text())  # a header line is accepted
    assert [(e.target, e.degraded) for e in read_pair_list(path)] == pairs

    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,b.png\n\nonly_one.png\nx.png,y.png,z.png\n/abs/t.png,d.png\nc.png,\n"
                   "../up.png,d.png\nok.png,ok2.png\n")
    with pytest.raises(PairListError) as exc:
        read_pair_list(bad)
    assert [n for n, _ in exc.value.problems] == [3, 4, 5, 6, 7]
    msg = str(exc.value)
    assert "line 3:" in msg and "line 7:" in msg and "line 8" not in msg


def _img(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_make_lists_dsrir_layout(tmp_path):
    root = tmp_path / "data"
    for n in ("1", "2"):
        _img(root / "BSD400" / f"{n}.jpg")
    _img(root / "WED" / "gt" / "w1.bmp")
    for n in (1, 2, 3):
        _img(root / "Rain100L/train/rainy" / f"rain-{n}.png")
        if n != 3:
            _img(root / "Rain100L/train/gt" / f"norain-{n}.png")
    for hid in ("0001_0.8_0.2", "0001_1_0.1", "0002_0.9_0.2", "0003_1_0.2"):
        _img(root / "Reside/train/hazy" / f"{hid}.jpg")
    for cid in ("0001", "0002"):
        _img(root / "Reside/train/gt" / f"{cid}.jpg")
    out = tmp_path / "lists"
    assert make_lists.main(["--train-dir", str(root), "--out-dir", str(out), "--rain-repeat", "3",
                            "--haze-max", "2"]) == 0
    noise = read_pair_list(out / "train_noise.csv")
    assert [(e.target, e.degraded) for e in noise] == [("BSD400/1.jpg", "BSD400/1.jpg"),
                                                      ("BSD400/2.jpg", "BSD400/2.jpg"),
                                                      ("WED/gt/w1.bmp", "WED/gt/w1.bmp")]
    rain = read_pair_list(out / "train_rain.csv")
    assert len(rain) == 6 and ("Rain100L/train/gt/norain-1.png", "Rain100L/train/rainy/rain-1.png") == rain[0][:2]
    haze = read_pair_list(out / "train_haze.csv")
    assert len(haze) == 2 and all(e.target.split("/")[-1].split(".")[0] == e.degraded.split("/")[-1][:4]
                                  for e in haze)
    allin = read_pair_list(out / "train_all_in_one.csv")
    assert len(allin) == 3 + 6 + 2
    assert missing_files(allin, root) == []
    (root / "BSD400" / "1.jpg").unlink()
    assert missing_files(allin, root) == ["line 1: BSD400/1.jpg"]


def test_make_lists_promptir_layout_and_missing_folder(tmp_path, capsys):
    root = tmp_path / "Train"
    _img(root / "Denoise" / "a.png")
    _img(root / "Derain/rainy/rain-5.png")
    _img(root / "Derain/gt/norain-5.png")
    _img(root / "Dehaze/synthetic/part1/0042_0.8_0.1.jpg")
    _img(root / "Dehaze/original/0042.jpg")
    out = tmp_path / "lists"
    assert make_lists.main(["--train-dir", str(root), "--layout", "promptir", "--out-dir", str(out),
                            "--rain-repeat", "1"]) == 0
    assert [(e.target, e.degraded) for e in read_pair_list(out / "train_all_in_one.csv")] == [
        ("Denoise/a.png", "Denoise/a.png"), ("Derain/gt/norain-5.png", "Derain/rainy/rain-5.png"),
        ("Dehaze/original/0042.jpg", "Dehaze/synthetic/part1/0042_0.8_0.1.jpg")]
    assert make_lists.main(["--train-dir", str(tmp_path / "nowhere"), "--out-dir", str(out),
                            "--modes", "rain"]) == 1
    assert "Rain100L/train/rainy" in capsys.readouterr().err
