"""curation.filter: directions from the metric table, NaN / failed rows, drop reasons, stats that add up."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.filter import filter_scores, main, parse_thresholds
from curation.scoring.shard_task import METADATA_KEY, SCHEMA


def _row(key, niqe=3.0, brisque=20.0, nima=5.5, status="ok", w=1200, h=1100):
    return {"key": key, "raw_shard": "00000", "source": "t", "url": f"http://x/{key}", "sha256": key * 4,
            "width": w, "height": h, "niqe": niqe, "brisque": brisque, "nima": nima, "status": status,
            "error": None if status == "ok" else "why"}


def _write_scores(folder, shard, rows, metrics=("niqe", "brisque", "nima")):
    folder.mkdir(parents=True, exist_ok=True)
    meta = {METADATA_KEY: json.dumps({"metrics": {m: {} for m in metrics}})}
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata(meta), folder / f"{shard}.parquet")


@pytest.fixture()
def scores(tmp_path):
    _write_scores(tmp_path / "scores", "00000", [
        _row("good"),
        _row("blurry", niqe=7.5),
        _row("ugly", nima=3.9),
        _row("both", niqe=8.0, brisque=60.0, nima=3.0),
    ])
    _write_scores(tmp_path / "scores", "00001", [
        _row("nan", brisque=math.nan),
        _row("broken", None, None, None, status="decode_error", w=None, h=None),
        _row("dl", None, None, None, status="download_failed", w=None, h=None),
        _row("small", w=800, h=600),
        _row("edge", niqe=6.0, brisque=45.0, nima=4.5),  # exactly at every threshold: kept
    ])
    return tmp_path / "scores"


def test_directions_reasons_and_stats(scores, tmp_path):
    stats = filter_scores(scores, tmp_path / "f" / "kept.parquet", parse_thresholds("niqe=6,brisque=45,nima=4.5"),
                          min_side=1024)
    dec = {r["key"]: r for r in pq.read_table(tmp_path / "f" / "decisions.parquet").to_pylist()}
    assert {k for k, r in dec.items() if r["kept"]} == {"good", "edge"}
    assert dec["blurry"]["drop_reason"] == "niqe>6"  # lower-better
    assert dec["ugly"]["drop_reason"] == "nima<4.5"  # higher-better
    assert dec["both"]["drop_reason"] == "niqe>6;brisque>45;nima<4.5"
    assert dec["nan"]["drop_reason"] == "brisque:nan"
    assert dec["broken"]["drop_reason"] == "status:decode_error"
    assert dec["dl"]["drop_reason"] == "status:download_failed"
    assert dec["small"]["drop_reason"] == "min_side<1024"
    assert dec["good"]["drop_reason"] is None
    kept = pq.read_table(tmp_path / "f" / "kept.parquet")
    assert sorted(kept.column("key").to_pylist()) == ["edge", "good"]
    assert kept.column_names == SCHEMA.names + ["kept"] and all(kept.column("kept").to_pylist())
    on_disk = json.loads((tmp_path / "f" / "filter_stats.json").read_text())
    assert on_disk == json.loads(json.dumps(stats))
    assert stats["total"] == 9 and stats["kept"] == 2 and stats["kept"] + stats["dropped"] == stats["total"]
    assert sum(stats["dropped_by_combination"].values()) == stats["dropped"]
    assert stats["dropped_by_reason"]["niqe>6"] == 2 and stats["dropped_by_reason"]["nima<4.5"] == 2


def test_refiltering_never_touches_scores(scores, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in scores.iterdir()}
    loose = filter_scores(scores, tmp_path / "a" / "kept.parquet", {"niqe": 100.0}, min_side=0)
    strict = filter_scores(scores, tmp_path / "b" / "kept.parquet", {"niqe": 2.0}, min_side=0)
    assert loose["kept"] == 7 and strict["kept"] == 0  # status rows always dropped; thresholds only move the rest
    assert {p.name: p.stat().st_mtime_ns for p in scores.iterdir()} == before


def test_default_thresholds_only_for_scored_metrics(tmp_path):
    _write_scores(tmp_path / "s", "00000", [_row("a", nima=None), _row("b", niqe=9.0, nima=None)],
                  metrics=("niqe", "brisque"))
    stats = filter_scores(tmp_path / "s", tmp_path / "kept.parquet", None, min_side=1024)
    assert set(stats["thresholds"]) == {"niqe", "brisque"} and stats["kept"] == 1


def test_threshold_for_unscored_metric_is_a_clear_error(tmp_path, capsys):
    _write_scores(tmp_path / "s", "00000", [_row("a", nima=None)], metrics=("niqe", "brisque"))
    with pytest.raises(ValueError, match="nima"):
        filter_scores(tmp_path / "s", tmp_path / "kept.parquet", {"nima": 4.5})
    with pytest.raises(SystemExit, match="nima"):
        main(["--scores", str(tmp_path / "s"), "--thresholds", "niqe=5,nima=4.5", "--out", str(tmp_path / "k.parquet")])
    with pytest.raises(ValueError, match="METRIC=VALUE"):
        parse_thresholds("psnr=30")
    assert not (tmp_path / "kept.parquet").exists()


def test_cli_writes_all_three_outputs(scores, tmp_path, capsys):
    assert main(["--scores", str(scores), "--out", str(tmp_path / "o" / "kept.parquet"), "--min-side", "1024"]) == 0
    for name in ("kept.parquet", "decisions.parquet", "filter_stats.json"):
        assert (tmp_path / "o" / name).exists()
    assert "kept 2 of 9" in capsys.readouterr().out


def test_aspect_and_pixel_rules_live_in_the_filter(tmp_path):
    _write_scores(tmp_path / "s", "00000", [_row("square"), _row("wide", w=5000, h=1100), _row("huge", w=20000, h=15000)])
    stats = filter_scores(tmp_path / "s", tmp_path / "kept.parquet", None, min_side=1024, max_aspect=4.0,
                          max_pixels=100_000_000)
    dec = {r["key"]: r["drop_reason"] for r in pq.read_table(tmp_path / "decisions.parquet").to_pylist()}
    assert dec == {"square": None, "wide": "aspect>4", "huge": "pixels>100000000"}
    assert stats["max_aspect"] == 4.0 and stats["max_pixels"] == 100_000_000
    from curation.sharding.plan import kept_max_pixels

    assert kept_max_pixels(tmp_path / "kept.parquet") == 100_000_000  # curation.shard decodes under it


def test_vectorised_decisions_equal_the_row_rule():
    """Rules.decide() (column at a time) gives exactly Rules.reasons() on every kind of row."""
    import random

    from curation.filter import Rules
    from curation.thresholds import Thresholds

    rng = random.Random(3)
    values = {"niqe": [None, math.nan, math.inf, 6.0, 6.0001, 2.0, 9.0], "brisque": [None, 45.0, 44.9, 45.1, -math.inf],
              "nima": [None, math.nan, 4.5, 4.49, 7.0]}
    rows = [_row(f"k{i}", **{m: rng.choice(v) for m, v in values.items()},
                 status=rng.choice(["ok", "ok", "ok", "decode_error", "download_failed", None]),
                 w=rng.choice([None, 0, 1023, 1024, 3000, 5000, 20000]), h=rng.choice([None, 0, 800, 1024, 2000, 15000]))
            for i in range(800)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    for limits, min_side, aspect, pixels in (({"niqe": 6.0, "brisque": 45.0, "nima": 4.5}, 1024, 4.0, 100_000_000),
                                             ({"nima": 5.0}, 1000, 2.5, 3_000_000), ({}, 0, 100.0, 10**12)):
        rules = Rules(Thresholds.of(limits), min_side=min_side, max_aspect=aspect, max_pixels=pixels)
        want = [";".join(rules.reasons(r)) or None for r in table.to_pylist()]
        assert rules.decide(table).to_pylist() == want
        assert len(set(want)) > 3
    assert Rules(Thresholds.of({"niqe": 6.0})).decide(table.slice(0, 0)).to_pylist() == []
