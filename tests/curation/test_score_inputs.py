"""curation.scoring.shard_task on one raw shard holding every kind of bad input: each ends as a recorded status.

Runs the real pyiqa NIQE / BRISQUE (shipped official parameters) and NIMA with TEST-ONLY random
weights, in-process (the Dask path is covered by test_score_dask.py).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_score_support import (
    Sample,
    encode,
    install_test_nima,
    natural_image,
    write_raw_shard,
)

from curation.score import build_settings
from curation.scoring.shard_task import read_score_metadata, score_shard
from curation.weights import require


def _png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def _exif_rotated(arr: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92, exif=exif)
    return buf.getvalue()


def _samples() -> tuple[list[Sample], dict[str, str]]:
    good = natural_image((160, 128), seed=1)
    jpeg = encode(good)
    rgba = np.dstack([good, np.full(good.shape[:2], 200, np.uint8)])
    gray16 = (good[..., 0].astype(np.uint16) * 257)
    cases = [
        (Sample("good", jpeg), "ok"),
        (Sample("zero", b""), "empty"),
        (Sample("truncated", jpeg[: len(jpeg) // 2]), "decode_error"),
        (Sample("html", b"<!DOCTYPE html><html><body>Not found</body></html>"), "decode_error"),
        (Sample("bomb", _png_bomb(), ext="png"), "too_large"),
        (Sample("cmyk", encode(good, mode="CMYK")), "ok"),
        (Sample("png16", encode(gray16, fmt="PNG"), ext="png"), "ok"),
        (Sample("gray", encode(good, mode="L")), "ok"),
        (Sample("rgba", encode(rgba, fmt="PNG"), ext="png"), "ok"),
        (Sample("exif", _exif_rotated(good)), "ok"),
        (Sample("small", encode(natural_image((200, 120), seed=2))), "ok"),  # score measures; filter decides size
        (Sample("wide", encode(natural_image((640, 100), seed=3))), "ok"),  # and aspect
        (Sample("tiny", encode(natural_image((40, 32), seed=4))), "metric_error"),  # below NIQE's 96-px blocks
        (Sample("pdfonly", None, extra_members={"pdf": b"%PDF-1.4 not an image"}), "missing_image"),
        (Sample("pdfasjpg", b"%PDF-1.4 this is not an image at all"), "decode_error"),
        (Sample("dl404", None, status="failed_to_download", error_message="HTTP Error 404: Not Found"),
         "download_failed"),
    ]
    return [s for s, _ in cases], {s.key: st for s, st in cases}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("score_inputs")
    install_test_nima(tmp)
    samples, expected = _samples()
    write_raw_shard(tmp / "raw", "00000", samples)
    metrics = ("niqe", "brisque", "nima")
    settings = build_settings(metrics, require(metrics), nima_batch=4)
    res = score_shard(str(tmp / "raw"), str(tmp / "scores"), "00000", settings)
    return tmp, res, expected


def test_every_bad_input_is_a_recorded_status(scored):
    tmp, res, expected = scored
    assert res.written and res.error is None
    rows = {r["key"]: r for r in pq.read_table(tmp / "scores" / "00000.parquet").to_pylist()}
    assert set(rows) == set(expected)  # one row per raw-parquet row, download failures included
    assert {k: r["status"] for k, r in rows.items()} == expected
    for key, row in rows.items():
        if row["status"] == "ok":
            assert row["error"] is None
            assert all(np.isfinite(row[m]) for m in ("niqe", "brisque", "nima")), key
        else:
            assert row["error"] and len(row["error"]) > 5, key
        if row["status"] in ("ok", "metric_error"):  # every decodable image has its geometry
            assert row["width"] and row["height"], key
    assert "HTML" in rows["html"]["error"]
    assert "zero-byte" in rows["zero"]["error"]
    assert "exceeds" in rows["bomb"]["error"] and "pixels" in rows["bomb"]["error"]
    assert "pdfonly.pdf" in rows["pdfonly"]["error"]
    assert "404" in rows["dl404"]["error"]
    assert (rows["small"]["width"], rows["small"]["height"]) == (200, 120)
    assert (rows["wide"]["width"], rows["wide"]["height"]) == (640, 100)
    assert (rows["tiny"]["width"], rows["tiny"]["height"]) == (40, 32)
    assert (rows["exif"]["width"], rows["exif"]["height"]) == (128, 160)  # EXIF rotation applied
    assert (rows["good"]["width"], rows["good"]["height"]) == (160, 128)
    assert rows["good"]["sha256"] and rows["good"]["raw_shard"] == "00000" and rows["good"]["source"] == "test"


def test_metadata_names_variants_versions_and_test_only_weights(scored):
    tmp, _, _ = scored
    meta = read_score_metadata(tmp / "scores" / "00000.parquet")
    from importlib.metadata import version

    assert meta["pyiqa_version"] == version("pyiqa")
    assert set(meta["metrics"]) == {"niqe", "brisque", "nima"}
    assert meta["metrics"]["nima"]["test_only_weights"] is True  # never silently passed off as real
    assert meta["metrics"]["niqe"]["weight_origin"] == "package data"
    assert "LIVE" in meta["metrics"]["brisque"]["variant"]
    assert meta["statuses"]["ok"] == 8
    assert meta["settings"]["max_pixels"] == 178_956_970 and "min_side" not in meta["settings"]


def test_existing_output_is_skipped_not_rescored(scored):
    tmp, _, _ = scored
    out = tmp / "scores" / "00000.parquet"
    before = out.stat().st_mtime_ns
    metrics = ("niqe", "brisque")
    again = score_shard(str(tmp / "raw"), str(tmp / "scores"), "00000", build_settings(metrics, require(metrics)))
    assert again.skipped and not again.written
    assert out.stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_tar_fails_the_shard_without_output(tmp_path, damage):
    write_raw_shard(tmp_path / "raw", "00001", [Sample(f"a{i}", encode(natural_image(seed=i))) for i in range(3)])
    tar = tmp_path / "raw" / "00001.tar"
    data = tar.read_bytes()
    tar.write_bytes(b"this is not a tar archive" * 40 if damage == "garbage" else data[: len(data) // 2])
    metrics = ("niqe",)
    res = score_shard(str(tmp_path / "raw"), str(tmp_path / "scores"), "00001", build_settings(metrics, require(metrics)))
    assert not res.written and res.error
    assert not (tmp_path / "scores" / "00001.parquet").exists()


def test_raw_rows_with_float_or_nan_sizes_are_normalised():
    from curation.scoring.shard_task import _row

    raw = {"key": 7, "status": "failed_to_download", "error_message": "HTTP Error 404", "url": "http://u",
           "width": 1024.0, "height": float("nan"), "sha256": float("nan"), "source": "laion-hr"}
    row = _row(raw, "00003", None, {})
    assert (row["key"], row["width"], row["height"], row["sha256"]) == ("7", 1024, None, None)
    assert row["status"] == "download_failed" and "404" in row["error"]
