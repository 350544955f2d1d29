"""The column-at-a-time table code (shard plan, report counts, raw-tar member reads) equals the plain row rules."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile

import numpy as np
import pyarrow as pa
import pytest

from curation import rawshards, report
from curation.layout import ShardId
from curation.sharding import plan as shardplan
from curation.sharding.tiling import tile_count


def _kept_table(n: int, seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n // 3)]
    rows = []
    for i in range(n):
        sha = rng.choice([None, "", rng.choice(shas), hashlib.sha256(f"u{i}".encode()).hexdigest()])
        rows.append({"key": f"k{i:05d}", "raw_shard": rng.choice([3, 12, 7]), "sha256": sha,
                     "width": rng.choice([None, 0, 100, 511, 512, 1500, 4000]),
                     "height": rng.choice([None, 0, 300, 512, 1024, 2500]), "niqe": 3.0, "url": f"u{i}"})
    rng.shuffle(rows)
    return pa.Table.from_pylist(rows)


def _reference_plan(table: pa.Table, patch: int, shard_bytes: int, bpp: float, params: dict) -> dict:
    """The plan rule one row at a time (the previous implementation's loops)."""
    table = table.sort_by([("raw_shard", "ascending"), ("key", "ascending")])
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    cols = [table.column(c).to_pylist() for c in ("raw_shard", "key", "sha256", "width", "height")]
    for row in zip(*cols):
        h.update(("\t".join(map(str, row)) + "\n").encode())
    rows = table.to_pylist()
    first, dup_keys, duplicates, planned, too_small = {}, {}, [], [], []
    shard, current = 0, 0.0
    for r in rows:
        sha = r["sha256"]
        if sha and sha in first:
            duplicates.append({"key": r["key"], "duplicate_of": first[sha], "sha256": sha})
            dup_keys.setdefault(first[sha], []).append(r["key"])
            continue
        if sha:
            first[sha] = r["key"]
        w, hh = r["width"], r["height"]
        n_tiles = tile_count(int(w), int(hh), patch) if w and hh else 1
        if n_tiles == 0:
            too_small.append(r["key"])
            continue
        est = n_tiles * patch * patch * bpp
        if planned and current + est > shard_bytes:
            shard, current = shard + 1, 0.0
        planned.append((r["key"], shard))
        current += est
    return {"fingerprint": h.hexdigest(), "planned": planned, "duplicates": duplicates, "too_small": too_small,
            "dup_keys": {k: dup_keys.get(k, []) for k, _ in planned}}


@pytest.mark.parametrize("seed", [0, 1])
def test_plan_equals_the_row_rule(seed):
    raw = _kept_table(400, seed)
    table = pa.Table.from_pylist(raw.to_pylist(), schema=raw.schema)
    table = table.set_column(table.schema.get_field_index("raw_shard"), "raw_shard",
                             pa.array([shardplan.raw_shard_id(v) for v in table.column("raw_shard").to_pylist()]))
    params = {"patch": 512, "seed": seed}
    got = shardplan.make_plan(table, 512, 3_000_000, 1.8, params)
    want = _reference_plan(table, 512, 3_000_000, 1.8, params)
    assert got.fingerprint == want["fingerprint"]
    names = [(k, ShardId.patches(i).name) for k, i in want["planned"]]
    assert list(zip(got.table.column("key").to_pylist(), got.table.column("shard").to_pylist())) == names
    assert got.duplicates == want["duplicates"] and got.too_small == want["too_small"]
    assert dict(zip(got.table.column("key").to_pylist(), got.table.column("duplicate_keys").to_pylist())) == want["dup_keys"]
    assert got.n_shards == want["planned"][-1][1] + 1 > 3 and want["duplicates"] and want["too_small"]
    summary = got.summary()
    assert summary["images_per_shard"] == [sum(1 for _, i in want["planned"] if i == s) for s in range(got.n_shards)]


def test_raw_shard_ids_vectorised(tmp_path):
    table = pa.table({"key": ["a", "b"], "raw_shard": pa.array([7, 12345], pa.int64()), "sha256": ["x", "y"],
                      "width": [1, 2], "height": [1, 2]})
    path = tmp_path / "kept.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    assert shardplan.read_kept(path).column("raw_shard").to_pylist() == ["00007", "12345"]
    pq.write_table(table.set_column(1, "raw_shard", pa.array(["7", "00012"])), path)
    assert shardplan.read_kept(path).column("raw_shard").to_pylist() == ["00007", "00012"]  # names normalised
    pq.write_table(table.set_column(1, "raw_shard", pa.array([None, 3], pa.int64())), path)
    with pytest.raises(ValueError, match="without raw_shard"):
        shardplan.read_kept(path)


def test_report_reason_counts_and_histogram_inputs():
    rng = random.Random(5)
    rows = [{"kept": rng.choice([True, False, None]), "drop_reason": rng.choice([None, "", "niqe>6", "nima<4.5;niqe>6"]),
             "status": rng.choice([None, "ok", "decode_error"]), "niqe": rng.choice([None, float("nan"), 1.0, 7.5])}
            for _ in range(500)]
    table = pa.Table.from_pylist(rows)
    want: dict[str, int] = {}
    for r in rows:  # one count per single reason: "nima<4.5;niqe>6" counts in both bars
        labels = ["kept"] if r["kept"] else str(r["drop_reason"] or r["status"] or "dropped").split(";")
        for label in labels:
            want[label] = want.get(label, 0) + 1
    assert report.reason_counts(table) == want
    assert np.isnan(report._floats(table, "niqe")).sum() == sum(r["niqe"] is None or r["niqe"] != r["niqe"] for r in rows)
    assert report._kept(table).sum() == sum(bool(r["kept"]) for r in rows)
    assert report.reason_counts(table.drop_columns(["status", "drop_reason"]))["dropped"] == 500 - want.get("kept", 0)


def test_read_images_reads_only_the_wanted_members(tmp_path):
    path = tmp_path / "00000.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("a.jpg", b"A"), ("a.json", b"{}"), ("b.png", b"B"), ("b.webp", b"B2"), ("c.txt", b"t"),
                           ("c.jpg", b"C")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert rawshards.read_images(path, {"a", "c", "zz"}) == {"a": b"A", "c": b"C"}
    assert rawshards.read_images(path, {"b"}) == {"b": b"B"}  # the first image member of a key, like iter_raw_tar
    assert rawshards.read_images(path, set()) == {}
