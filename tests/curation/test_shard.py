"""curation.shard end to end on small synthetic raw shards: geometry, WebDataset, lineage, idempotence."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from test_shard_helpers import make_dataset

from common import pngcodec
from common.imagedecode import decode_rgb
from curation import rawshards, shard
from curation.sharding import flat, tiling
from curation.sharding.plan import parse_size

PATCH, CELL = 64, 32
ARGS = ["--patch", str(PATCH), "--flat-cell", str(CELL), "--shard-size", "60KB", "--log-level", "WARNING"]


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    root = tmp_path_factory.mktemp("shardrun")
    info = make_dataset(root, n_images=6)
    out = root / "shards"
    manifest = shard.main(["--kept", str(info["kept"]), "--raw", str(info["raw"]), "--out", str(out), *ARGS,
                           "--workers", "1"])  # a real Dask LocalCluster
    return {**info, "root": root, "out": out, "manifest": manifest}


def _file_hashes(folder: Path) -> dict[str, str]:
    """Every output's hash; markers without their timings (the one non-deterministic field)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".done.json"):
            out[p.name] = {k: v for k, v in json.loads(p.read_text()).items() if k != "timing"}
        elif p.is_file() and p.suffix != ".yaml":
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_tile_boxes_cover_exactly_and_never_overlap():
    for w, h in [(200, 136), (64, 64), (511, 1025), (130, 64)]:
        boxes = tiling.tile_boxes(w, h, PATCH)
        assert len(boxes) == tiling.tile_count(w, h, PATCH) == (w // PATCH) * (h // PATCH)
        cover = np.zeros((h, w), np.int32)
        for x0, y0, x1, y1 in boxes:
            assert x1 - x0 == PATCH and y1 - y0 == PATCH
            cover[y0:y1, x0:x1] += 1
        assert cover.max() == 1
        assert cover[: h // PATCH * PATCH, : w // PATCH * PATCH].min() == 1  # exact coverage of the grid
        assert cover.sum() == len(boxes) * PATCH * PATCH
    assert tiling.tile_boxes(63, 500, PATCH) == [] and tiling.tile_boxes(500, 40, PATCH) == []
    img = np.zeros((136, 200, 3), np.uint8)
    assert [t.box for t in tiling.tile_image(img, PATCH, cell=CELL)] == tiling.tile_boxes(200, 136, PATCH)
    assert tiling.tile_image(np.zeros((40, 300, 3), np.uint8), PATCH, cell=CELL) == []


def test_parse_size():
    assert parse_size("1GB") == 10**9 and parse_size("200MB") == 200 * 10**6 and parse_size("512MiB") == 512 * 2**20
    assert parse_size("12345") == 12345 and parse_size("1.5kb") == 1500
    for bad in ("", "1XB", "-3", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_webdataset_reads_every_sample_the_manifest_counts(produced):
    manifest, out = produced["manifest"], produced["out"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest)) and on_disk["patch_size"] == PATCH
    assert sorted(s["name"] for s in on_disk["shards"]) == sorted(p.name for p in out.glob("patches-*.tar"))
    assert len(on_disk["shards"]) > 1  # --shard-size split the work
    urls = [str(out / s["name"]) for s in on_disk["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert len(samples) == on_disk["total_samples"] == sum(s["samples"] for s in on_disk["shards"]) > 0
    for s in samples:
        assert s["png"].shape == (PATCH, PATCH, 3) and s["png"].dtype == np.uint8
        assert s["json"]["key"] == s["__key__"]
    assert len({s["__key__"] for s in samples}) == len(samples)


def test_lineage_columns_consistent_with_tar_and_source(produced):
    out, raw = produced["out"], produced["raw"]
    kept = {r["key"]: r for r in pq.read_table(produced["kept"]).to_pylist()}
    sources = {s.key: s.image for sid in ("00000", "00001") for s in rawshards.iter_raw_tar(raw / f"{sid}.tar")}
    rows = pq.read_table(sorted(out.glob("patches-*.parquet"))).to_pylist()
    assert len(rows) == produced["manifest"]["total_samples"]
    for name in sorted(p.name for p in out.glob("patches-*.tar")):
        with tarfile.open(out / name) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        shard_rows = [r for r in rows if r["shard"] == name[:-4]]
        assert len(members) == 2 * len(shard_rows)  # exactly one .png + .json per row, nothing partial
        for r in shard_rows:
            assert json.loads(members[f"{r['key']}.json"]) == r
            src = kept[r["source_key"]]
            assert r["source_sha256"] == src["sha256"] == hashlib.sha256(sources[r["source_key"]]).hexdigest()
            assert (r["url"], r["source"], r["niqe"], r["nima"]) == (src["url"], src["source"], src["niqe"], src["nima"])
            patch = pngcodec.decode_png(members[f"{r['key']}.png"])  # lossless: identical to the decoded crop
            expected = tiling.crop(decode_rgb(sources[r["source_key"]]), r["box"])
            assert np.array_equal(patch, expected)
            assert r["flat_fraction"] == flat.flat_fraction(patch, cell=CELL) <= 0.5


def test_every_grid_tile_is_either_kept_or_dropped_as_flat(produced):
    out = produced["out"]
    kept_rows = pq.read_table(sorted(out.glob("patches-*.parquet"))).to_pylist()
    dropped = pq.read_table(sorted(out.glob("dropped-*.parquet"))).to_pylist()
    assert dropped and all(d["flat_fraction"] > 0.5 for d in dropped)
    assert produced["manifest"]["tiles_dropped_flat"] == len(dropped)
    by_source: dict[str, list] = {}
    for r in kept_rows + dropped:
        by_source.setdefault(r["source_key"], []).append(tuple(r["box"]))
    assert by_source["img0000"] and sorted(by_source["img0000"]) == sorted(tiling.tile_boxes(200, 136, PATCH))
    assert sorted(by_source["exif0000"]) == sorted(tiling.tile_boxes(96, 160, PATCH))  # EXIF-rotated 160×96 → 96×160
    textured = [r for r in kept_rows if r["source_key"] == "img0000"]
    assert len(textured) == 6 and all(r["flat_fraction"] == 0.0 for r in textured)
    assert not [r for r in kept_rows if r["source_key"] == "img0002"]  # the flat image gives no patch


def test_duplicates_and_too_small_recorded_not_tiled(produced):
    manifest, out = produced["manifest"], produced["out"]
    dup, original = produced["duplicate"]
    assert [(d["key"], d["duplicate_of"]) for d in manifest["duplicates"]] == [(dup, original)]
    assert manifest["too_small"] == ["tiny0000"]
    rows = pq.read_table(sorted(out.glob("patches-*.parquet"))).to_pylist()
    assert not [r for r in rows if r["source_key"] in (dup, "tiny0000")]
    assert all(r["duplicate_keys"] == [dup] for r in rows if r["source_key"] == original)
    assert manifest["images_tiled"] == len({r["source_key"] for r in rows} | {"img0002", "img0005"})
    assert manifest["image_errors"] == []


def test_rerun_is_idempotent_and_redoes_an_incomplete_shard(produced, tmp_path, capsys):
    out = produced["out"]
    before = _file_hashes(out)
    cli = ["--kept", str(produced["kept"]), "--raw", str(produced["raw"]), "--out", str(out), *ARGS, "--workers", "0"]
    assert shard.main(cli) == produced["manifest"]
    assert _file_hashes(out) == before  # nothing rewritten differently
    (out / "patches-000001.done.json").unlink()  # as if killed after the tar rename, before the marker
    (out / "patches-000001.tar").write_bytes(b"partial garbage")
    (out / ".patches-000002.tar.deadbeef.tmp").write_bytes(b"stale temp")
    shard.main(cli)
    assert _file_hashes(out) == before
    with pytest.raises(SystemExit) as exited:  # other settings: refused (stage contract), folder untouched
        shard.main([*cli, "--max-flat", "0.9"])
    assert exited.value.code == 2 and "max_flat: recorded 0.5, now 0.9" in capsys.readouterr().err
    assert _file_hashes(out) == before


def test_bad_flags_are_refused(produced, tmp_path):
    base = ["--kept", str(produced["kept"]), "--raw", str(produced["raw"]), "--out", str(tmp_path / "o"), "--workers", "0"]
    for extra in (["--patch", "64", "--flat-cell", "48"], ["--max-flat", "1.5"], ["--shard-size", "lots"]):
        with pytest.raises(SystemExit):
            shard.main([*base, *extra])


def test_bad_images_are_recorded_not_fatal(tmp_path):
    import pyarrow as pa
    from test_shard_helpers import encode, textured, write_raw_shard
    good = encode(textured(64, 128, 1))
    rows = write_raw_shard(tmp_path / "raw", "00000", [("good", good, 128, 64), ("broken", b"<html>oops</html>", 128, 64)], "t")
    kept = [{"key": r["key"], "raw_shard": "00000", "sha256": r["sha256"], "width": 128, "height": 64, "kept": True}
            for r in rows]
    kept += [{"key": "absent", "raw_shard": "00000", "sha256": "a" * 64, "width": 128, "height": 64, "kept": True},
             {"key": "elsewhere", "raw_shard": "00009", "sha256": "b" * 64, "width": 128, "height": 64, "kept": True},
             {"key": "rejected", "raw_shard": "00000", "sha256": "c" * 64, "width": 128, "height": 64, "kept": False}]
    pq.write_table(pa.Table.from_pylist(kept), tmp_path / "kept.parquet")
    manifest = shard.main(["--kept", str(tmp_path / "kept.parquet"), "--raw", str(tmp_path / "raw"),
                           "--out", str(tmp_path / "shards"), *ARGS, "--workers", "0"])
    assert manifest["total_samples"] == 2 and manifest["images_tiled"] == 1
    statuses = {e["key"]: e["status"] for e in manifest["image_errors"]}
    assert statuses == {"broken": "decode_error", "absent": "missing_in_raw", "elsewhere": "raw_shard_unreadable"}
    rows = pq.read_table(sorted((tmp_path / "shards").glob("patches-*.parquet"))).to_pylist()
    assert {r["source_key"] for r in rows} == {"good"} and rows[0]["url"] is None  # optional columns may be absent


def test_empty_kept_table_gives_an_empty_manifest(tmp_path):
    from curation.layout import KEPT_SCHEMA
    pq.write_table(KEPT_SCHEMA.empty_table(), tmp_path / "kept.parquet")
    (tmp_path / "raw").mkdir()
    manifest = shard.main(["--kept", str(tmp_path / "kept.parquet"), "--raw", str(tmp_path / "raw"),
                           "--out", str(tmp_path / "shards"), *ARGS, "--workers", "0"])
    assert manifest["shards"] == [] and manifest["total_samples"] == 0
