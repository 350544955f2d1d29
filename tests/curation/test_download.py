"""curation.download end to end: a loopback HTTP server, real img2dataset, a real Dask LocalCluster."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask.distributed import LocalCluster
from PIL import Image

from common.imagedecode import decode_rgb
from curation import download
from curation.rawshards import (
    check_shard,
    iter_raw_tar,
    list_complete_shards,
    shard_paths,
)

MIN_SIDE = 64


def _image_bytes(w: int, h: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


class _Server:
    """Serves ``routes`` {path: (bytes, content type)} on 127.0.0.1; 404 elsewhere; counts requests."""

    def __init__(self, routes: dict[str, tuple[bytes, str]]):
        self.routes, self.hits, lock = routes, Counter(), threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    server.hits[self.path] += 1
                if self.path not in server.routes:
                    self.send_error(404, "Not Found")
                    return
                body, ctype = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def total(self) -> int:
        return sum(self.hits.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/refused.jpg"


@pytest.fixture()
def site(tmp_path):
    good = {f"/good{i}.jpg": (_image_bytes(80 + i, 72, "JPEG", i), "image/jpeg") for i in range(4)}
    jpeg = _image_bytes(96, 80, "JPEG", 9)
    routes = {
        **good,
        "/good.png": (_image_bytes(70, 66, "PNG", 5), "image/png"),
        "/zero.jpg": (b"", "image/jpeg"),
        "/truncated.jpg": (jpeg[: len(jpeg) // 2], "image/jpeg"),
        "/page.jpg": (b"<!DOCTYPE html><html><body>not an image</body></html>", "image/jpeg"),
        "/tiny.jpg": (_image_bytes(40, 40, "JPEG", 7), "image/jpeg"),  # declared big, actually small
        "/declared-small.jpg": (_image_bytes(80, 80, "JPEG", 8), "image/jpeg"),
        "/watermarked.jpg": (_image_bytes(80, 80, "JPEG", 10), "image/jpeg"),
        "/unsafe.jpg": (_image_bytes(80, 80, "JPEG", 11), "image/jpeg"),
    }
    server = _Server(routes)
    b = server.base
    rows = [  # (URL, WIDTH, HEIGHT, pwatermark, punsafe)
        (b + "/good0.jpg", 80, 72, 0.1, 0.0), (b + "/zero.jpg", 100, 100, 0.1, 0.0),
        (b + "/declared-small.jpg", 32, 200, 0.1, 0.0), (b + "/good1.jpg", 81, 72, 0.1, 0.0),
        (b + "/truncated.jpg", 96, 80, 0.1, 0.0), (b + "/page.jpg", 100, 100, None, None),
        (b + "/watermarked.jpg", 80, 80, 0.95, 0.0), (b + "/missing.jpg", 100, 100, 0.1, 0.0),
        (_refused_url(), 100, 100, 0.1, 0.0), (b + "/good.png", 70, 66, 0.1, 0.0),
        (b + "/unsafe.jpg", 80, 80, 0.1, 0.9), (b + "/tiny.jpg", 100, 100, 0.1, 0.0),
        (b + "/good2.jpg", 82, 72, 0.1, 0.0), (b + "/good3.jpg", 83, 72, 0.1, 0.0),
    ]
    table = pa.table({
        "URL": [r[0] for r in rows], "TEXT": [f"caption {i}" for i in range(len(rows))],
        "WIDTH": pa.array([r[1] for r in rows], pa.float64()), "HEIGHT": pa.array([r[2] for r in rows], pa.float64()),
        "similarity": [0.3] * len(rows), "hash": list(range(len(rows))),
        "pwatermark": pa.array([r[3] for r in rows], pa.float64()),
        "punsafe": pa.array([r[4] for r in rows], pa.float64()),
    })
    urls = tmp_path / "urls" / "part-00000.parquet"
    urls.parent.mkdir()
    pq.write_table(table, urls)
    yield server, urls, routes
    server.close()


def _args(urls: Path, out: Path) -> list[str]:
    return ["--urls", str(urls), "--out", str(out), "--min-side", str(MIN_SIDE), "--slice-size", "4",
            "--workers", "2", "--timeout", "5", "--thread-count", "4", "--allow-private-addresses"]


def _raw_rows(out: Path) -> dict[str, dict]:
    rows = {}
    for sid in list_complete_shards(out):
        for row in pq.read_table(shard_paths(out, sid)[1]).to_pylist():
            rows[row["url"].rsplit("/", 1)[-1]] = {**row, "shard": sid}
    return rows


def test_download_statuses_rerun_and_redo(site, tmp_path):
    server, urls, routes = site
    out = tmp_path / "raw"
    summary = download.main(_args(urls, out))

    shards = list_complete_shards(out)
    assert len(shards) == 3 and summary["slices"] == {"downloaded": 3}  # 11 kept rows / 4 per slice
    assert all(check_shard(out, s)[0] for s in shards)
    for name in ("declared-small.jpg", "watermarked.jpg", "unsafe.jpg"):  # pre-filtered: never requested
        assert server.hits["/" + name] == 0
    job_stats = [json.loads(p.read_text()) for p in (out / "_jobs").glob("download-*.json")]
    assert len(job_stats) == 1 and job_stats[0]["prefiltered"] == 3
    assert (job_stats[0]["below_min_side"], job_stats[0]["watermark"], job_stats[0]["unsafe"]) == (1, 1, 1)

    rows = _raw_rows(out)
    assert len(rows) == 11 and len({r["key"] for r in rows.values()}) == 11
    assert {r["source"] for r in rows.values()} == {"laion-hr"}
    for name in ("good0.jpg", "good1.jpg", "good2.jpg", "good3.jpg", "good.png"):
        assert rows[name]["status"] == "success", rows[name]
    assert rows["missing.jpg"]["status"] == "failed_to_download" and "404" in rows["missing.jpg"]["error_message"]
    assert rows["refused.jpg"]["status"] == "failed_to_download"
    assert "refused" in rows["refused.jpg"]["error_message"].lower()
    for name in ("zero.jpg", "page.jpg"):
        assert rows[name]["status"] == "failed_to_resize" and rows[name]["error_message"], rows[name]
    assert rows["tiny.jpg"]["status"] == "failed_to_resize" and rows["tiny.jpg"]["error_message"] == "image too small"

    samples = {s.meta["url"].rsplit("/", 1)[-1]: s for sid in shards for s in iter_raw_tar(shard_paths(out, sid)[0])}
    assert set(samples) == {n for n, r in rows.items() if r["status"] == "success"}
    for i in range(4):  # JPEGs are stored as the original bytes, hashed
        body = routes[f"/good{i}.jpg"][0]
        assert samples[f"good{i}.jpg"].image == body
        assert rows[f"good{i}.jpg"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert samples[f"good{i}.jpg"].caption and samples[f"good{i}.jpg"].meta["source"] == "laion-hr"
    # skip_reencode keeps only bytes already in --encode-format (jpg): the PNG was re-encoded to JPEG.
    assert samples["good.png"].image[:3] == b"\xff\xd8\xff" and samples["good.png"].image_member.endswith(".jpg")
    assert decode_rgb(samples["good.png"].image).shape == (66, 70, 3)
    assert rows["truncated.jpg"]["status"] == "failed_to_resize"  # OpenCV 4.14 refuses a truncated JPEG

    # Rerun (through --scheduler this time): every slice complete -> no request at all.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        _rerun_and_redo(server, urls, out, rows, shards, cluster.scheduler_address)


def _rerun_and_redo(server, urls, out, rows, shards, scheduler):
    args = _args(urls, out) + ["--scheduler", scheduler]
    before = server.total()
    summary = download.main(args)
    assert server.total() == before and summary["slices"] == {"skipped": 3}

    # Damage two shards: a missing completion marker, a truncated tar. Only those slices are redone.
    first, second, third = shards
    shard_paths(out, second)[2].unlink()
    tar = shard_paths(out, third)[0]
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    untouched = shard_paths(out, first)[0].stat().st_mtime_ns
    hits_before = Counter(server.hits)
    summary = download.main(args)
    assert summary["slices"] == {"skipped": 1, "downloaded": 2, "redone": 2}
    assert shard_paths(out, first)[0].stat().st_mtime_ns == untouched
    new_hits = server.hits - hits_before
    redone_urls = {n for n, r in rows.items() if r["shard"] in (second, third) and n != "refused.jpg"}
    assert {p.lstrip("/") for p in new_hits} == redone_urls and all(v == 1 for v in new_hits.values())
    assert all(check_shard(out, s)[0] for s in shards) and list_complete_shards(out) == shards
    assert {n: r["status"] for n, r in _raw_rows(out).items()} == {n: r["status"] for n, r in rows.items()}
    assert not (out / "_tmp").exists() or not any((out / "_tmp").iterdir())  # no scratch left behind
    assert os.path.exists(out / "_jobs" / "download_summary.json")


@pytest.mark.slow
def test_failed_slice_is_reported_then_recovered(site, tmp_path):
    """A slice killed by --slice-timeout is a reported failure (no shard published); a rerun completes it."""
    _, urls, _ = site
    out = tmp_path / "raw"
    args = ["--urls", str(urls), "--out", str(out), "--min-side", str(MIN_SIDE), "--slice-size", "20",
            "--workers", "1", "--timeout", "5", "--allow-private-addresses"]
    summary = download.main(args + ["--slice-timeout", "1", "--task-retries", "0"])
    assert summary["slices"] == {"failed": 1} and "did not finish within 1 s" in summary["failed_slices"][0]["error"]
    assert list_complete_shards(out) == [] and not list(out.glob("*.tar"))
    summary = download.main(args)
    assert summary["slices"] == {"downloaded": 1} and len(list_complete_shards(out)) == 1
    assert sum(summary["rows_by_status"].values()) == 11
