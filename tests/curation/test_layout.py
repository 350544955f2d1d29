"""curation.layout: schemas built from the metric table, shard ids, markers, the Manifest; curation.thresholds."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from curation import layout
from curation.layout import Manifest, ManifestShard, ShardId
from curation.scoring.metrics import METRICS as METRIC_SPECS
from curation.thresholds import Thresholds


def test_every_schema_takes_its_metric_columns_from_the_table():
    cols = layout.METRIC_COLUMNS
    assert cols == ("niqe", "brisque", "nima")
    for schema in (layout.SCORE_SCHEMA, layout.KEPT_SCHEMA, layout.DECISIONS_SCHEMA, layout.PLAN_SCHEMA,
                   layout.PATCH_SCHEMA):
        assert tuple(n for n in schema.names if n in cols) == cols
        assert all(schema.field(c).type == pa.float64() for c in cols)
    assert layout.KEPT_SCHEMA.names == layout.SCORE_SCHEMA.names + ["kept"]
    assert layout.DECISIONS_SCHEMA.names == layout.KEPT_SCHEMA.names + ["drop_reason"]
    # the shard column has one type wherever it appears: the patch shard's name
    assert layout.PLAN_SCHEMA.field("shard").type == layout.PATCH_SCHEMA.field("shard").type == pa.string()
    assert layout.DROPPED_SCHEMA.field("shard").type == pa.string()
    # the scoring engine's table names the same metrics with the same directions and defaults
    assert tuple(METRIC_SPECS) == cols
    for name, spec in METRIC_SPECS.items():
        assert (spec.lower_better, spec.default_threshold) == (layout.METRICS[name].lower_better,
                                                               layout.METRICS[name].default_threshold)


def test_shard_id_formats_parses_and_builds_paths(tmp_path):
    raw, patch = ShardId.raw(42), ShardId.patches(3)
    assert (str(raw), str(patch)) == ("00042", "patches-000003")
    assert ShardId.raw(123456).name == "123456"  # wider when needed, like img2dataset
    for text in ("00042", 42, "raw/00042.tar", raw):
        assert ShardId.parse(text) == raw
    assert ShardId.parse("patches-000003.tar") == ShardId.parse("/x/patches-000003.parquet") == patch
    with pytest.raises(ValueError, match="not a shard name"):
        ShardId.parse("dropped-000001")
    assert [p.name for p in raw.raw_paths(tmp_path)] == ["00042.tar", "00042.parquet", "00042_stats.json"]
    assert raw.score_path(tmp_path).name == "00042.parquet"
    assert (patch.tar_path(tmp_path).name, patch.table_path(tmp_path).name, patch.dropped_path(tmp_path).name,
            patch.marker_path(tmp_path).name) == ("patches-000003.tar", "patches-000003.parquet",
                                                  "dropped-000003.parquet", "patches-000003.done.json")
    assert raw.marker_path(tmp_path).name == "00042_stats.json"


def test_completion_markers_and_pending_work(tmp_path):
    for sid in (ShardId.raw(0), ShardId.raw(1)):
        for path in sid.raw_paths(tmp_path / "raw"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    ShardId.raw(1).marker_path(tmp_path / "raw").unlink()  # no marker: not complete
    assert layout.list_raw_shards(tmp_path / "raw") == [ShardId.raw(0)]
    (tmp_path / "scores").mkdir()
    assert layout.pending_scores([ShardId.raw(0)], tmp_path / "scores") == [ShardId.raw(0)]
    ShardId.raw(0).score_path(tmp_path / "scores").write_bytes(b"x")
    assert layout.pending_scores([ShardId.raw(0)], tmp_path / "scores") == []
    out = tmp_path / "shards"
    out.mkdir()
    done = ShardId.patches(0)
    for path in (done.tar_path(out), done.table_path(out), done.marker_path(out)):
        path.write_bytes(b"x")
    ShardId.patches(1).tar_path(out).write_bytes(b"x")  # tar without marker: pending
    assert layout.pending_patches(out, 3) == [ShardId.patches(1), ShardId.patches(2)]


def test_manifest_round_trip_local_and_fsspec(tmp_path):
    import fsspec

    m = Manifest(shards=[ManifestShard("patches-000000.tar", 5, 1234), ManifestShard("patches-000001.tar", 2, 99)],
                 total_samples=7, patch_size=512, images_tiled=3, tiles_total=9, tiles_dropped_flat=2,
                 duplicates=[{"key": "b", "duplicate_of": "a", "sha256": "0"}], too_small=["t"],
                 plan_fingerprint="abc")
    path = m.write(tmp_path)
    assert path.name == "manifest.json"
    assert Manifest.read(tmp_path) == Manifest.read(path) == m
    assert json.loads(path.read_text())["shards"][0] == {"name": "patches-000000.tar", "samples": 5, "bytes": 1234}
    assert m.shard_urls("s3://b/shards/") == ["s3://b/shards/patches-000000.tar", "s3://b/shards/patches-000001.tar"]
    fsspec.filesystem("memory").pipe("/layout-test/manifest.json", path.read_bytes())
    assert Manifest.read("memory://layout-test") == m
    minimal = Manifest(shards=[ManifestShard("a.tar", 1)], total_samples=1, patch_size=64)
    assert Manifest.read(minimal.write(tmp_path / "min")) == minimal
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"shards": [{"nam": "x"}]}')
    with pytest.raises(ValueError, match="not a curation manifest"):
        Manifest.read(tmp_path / "bad")


def test_one_threshold_type_with_directions_from_the_table():
    t = Thresholds.parse(" nima=4.5, niqe=6 ,brisque=45")
    assert str(t) == "niqe=6,brisque=45,nima=4.5"  # metric-table order
    assert t.describe() == "niqe<=6, brisque<=45, nima>=4.5"
    assert t.reasons({"niqe": 6.0, "brisque": 45.0, "nima": 4.5}) == []
    assert t.reasons({"niqe": 7.0, "brisque": float("nan"), "nima": 4.0}) == ["niqe>6", "brisque:nan", "nima<4.5"]
    assert str(t.only(["niqe", "brisque"])) == "niqe=6,brisque=45"
    assert Thresholds.defaults(["nima"]).as_dict() == {"nima": 4.5}
    assert str(Thresholds.defaults()) == "niqe=6,brisque=45,nima=4.5"
    for bad in ("psnr=30", "niqe", "niqe=x", "niqe=inf", ""):
        with pytest.raises(ValueError):
            Thresholds.parse(bad)
