"""The download policy (issue 13, item 2): bounded bytes, a total per-image deadline, public addresses only
unless allowed, http(s)-only redirects; each refusal is a recorded per-URL error. Real sockets on loopback."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import download
from curation.downloading import fetch as fetchmod
from curation.downloading.fetch import FetchPolicy, FetchRefused, address_problem, fetch
from curation.rawshards import list_complete_shards, shard_paths

BIG = 3 * 2**20


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((72, 80, 3)) * 255).astype(np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


class _Hostile(BaseHTTPRequestHandler):
    """Routes: /ok.jpg, /big-declared, /big-streamed (no Content-Length), /drip, /to-ftp, /to-other."""

    protocol_version = "HTTP/1.0"
    other_base = ""

    def do_GET(self):
        if self.path == "/ok.jpg":
            body = _jpeg()
            self._head(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
            self.wfile.write(body)
        elif self.path == "/big-declared":
            self._head(200, {"Content-Type": "image/jpeg", "Content-Length": str(BIG)})
            self._stream(BIG)
        elif self.path == "/big-streamed":
            self._head(200, {"Content-Type": "image/jpeg"})
            self._stream(BIG)
        elif self.path == "/drip":
            self._head(200, {"Content-Type": "image/jpeg", "Content-Length": "10000"})
            for _ in range(10000):
                if not self._send(b"x"):
                    return
                time.sleep(0.05)
        elif self.path == "/to-ftp":
            self._head(302, {"Location": "ftp://127.0.0.1/ok.jpg"})
        elif self.path == "/to-file":
            self._head(302, {"Location": "file:///etc/passwd"})
        elif self.path == "/to-other":
            self._head(302, {"Location": self.other_base + "/ok.jpg"})
        else:
            self._head(404, {})

    def _head(self, code, headers):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _stream(self, n: int) -> None:
        chunk = b"\0" * 65536
        for _ in range(n // len(chunk)):
            if not self._send(chunk):
                return

    def log_message(self, *args):
        pass


@pytest.fixture()
def servers():
    """Two servers: 127.0.0.1 (the 'public' one in the redirect test) and 127.0.0.2 (the 'private' target)."""
    made = []
    for host in ("127.0.0.1", "127.0.0.2"):
        handler = type("H", (_Hostile,), {})
        httpd = ThreadingHTTPServer((host, 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        made.append((httpd, handler, f"http://{host}:{httpd.server_address[1]}"))
    made[0][1].other_base = made[1][2]
    yield made[0][2], made[1][2]
    for httpd, _, _ in made:
        httpd.shutdown()
        httpd.server_close()


LOOSE = FetchPolicy(max_bytes=2**20, deadline_s=1.5, allow_private=True)


def test_a_normal_image_is_fetched(servers):
    assert fetch(servers[0] + "/ok.jpg", LOOSE, timeout=5) == _jpeg()


@pytest.mark.parametrize("path", ["/big-declared", "/big-streamed"])
def test_a_big_body_is_capped_at_max_image_bytes(servers, path):
    with pytest.raises(FetchRefused, match=r"--max-image-bytes 1048576"):
        fetch(servers[0] + path, LOOSE, timeout=5)


def test_a_dripping_response_stops_at_the_deadline_not_the_socket_timeout(servers):
    started = time.monotonic()
    with pytest.raises(FetchRefused, match="1.5 s per-image deadline"):
        fetch(servers[0] + "/drip", LOOSE, timeout=30)
    assert time.monotonic() - started < 4  # the drip alone would take 500 s; each byte beats the 30 s timeout


def test_private_addresses_are_refused_without_the_flag(servers):
    strict = FetchPolicy(max_bytes=2**20, deadline_s=5)
    for url in (servers[0] + "/ok.jpg", servers[0].replace("127.0.0.1", "localhost") + "/ok.jpg"):
        with pytest.raises(FetchRefused, match="loopback address .*--allow-private-addresses"):
            fetch(url, strict, timeout=5)
    for ip, kind in (("10.1.2.3", "private"), ("192.168.0.1", "private"), ("169.254.169.254", "link-local"),
                     ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("::1", "loopback"),
                     ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified")):
        assert address_problem(ip) == kind, ip
    assert address_problem("93.184.216.34") is None


@pytest.mark.parametrize("path, scheme", [("/to-ftp", "ftp"), ("/to-file", "file")])
def test_redirects_to_non_http_schemes_are_refused(servers, path, scheme):
    with pytest.raises(FetchRefused, match=f"redirect to {scheme}:// URL; only http"):
        fetch(servers[0] + path, LOOSE, timeout=5)
    with pytest.raises(FetchRefused, match=f"{scheme}:// URL"):
        fetch(f"{scheme}:///etc/passwd", LOOSE, timeout=5)


def test_a_redirect_to_a_private_address_is_refused(servers, monkeypatch):
    """127.0.0.1 plays a public host and 127.0.0.2 a private one: the redirect's target is checked."""
    monkeypatch.setattr(fetchmod, "address_problem", lambda ip: "private" if ip == "127.0.0.2" else None)
    strict = FetchPolicy(max_bytes=2**20, deadline_s=5)
    assert fetch(servers[0] + "/ok.jpg", strict, timeout=5) == _jpeg()
    with pytest.raises(FetchRefused, match="127.0.0.2 is a private address"):
        fetch(servers[0] + "/to-other", strict, timeout=5)
    assert fetch(servers[0] + "/to-other", LOOSE, timeout=5) == _jpeg()


def _url_list(base: str, tmp_path) -> list[str]:
    paths = ["/ok.jpg", "/big-streamed", "/drip", "/to-ftp"]
    urls = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"URL": [base + p for p in paths], "TEXT": ["c"] * 4,
                             "WIDTH": [80.0] * 4, "HEIGHT": [72.0] * 4}), urls)
    return ["--urls", str(urls), "--min-side", "64", "--slice-size", "10", "--workers", "1",
            "--thread-count", "4", "--timeout", "20", "--image-deadline", "2", "--max-image-bytes", str(2**20)]


def test_the_download_command_refuses_private_addresses_by_default():
    assert download.DownloadConfig(urls="u", out="o").allow_private_addresses is False
    assert FetchPolicy().allow_private is False and FetchPolicy().max_bytes == 64 * 2**20


@pytest.mark.integration
def test_download_records_each_refusal_as_a_per_url_status(servers, tmp_path):
    """Through img2dataset (child interpreter, spawned pool) on Dask: the policy is in force there too."""
    download.main(_url_list(servers[0], tmp_path) + ["--out", str(tmp_path / "open"), "--allow-private-addresses"])
    rows = {r["url"].rsplit("/", 1)[-1]: r for sid in list_complete_shards(tmp_path / "open")
            for r in pq.read_table(shard_paths(tmp_path / "open", sid)[1]).to_pylist()}
    assert rows["ok.jpg"]["status"] == "success"
    errors = {name: (r["status"], r["error_message"]) for name, r in rows.items() if name != "ok.jpg"}
    assert errors["big-streamed"] == ("failed_to_download", "response larger than --max-image-bytes 1048576")
    assert errors["drip"] == ("failed_to_download", "no complete response within the 2 s per-image deadline")
    assert errors["to-ftp"][0] == "failed_to_download" and "redirect to ftp:// URL" in errors["to-ftp"][1]


@pytest.mark.slow
def test_download_without_the_flag_refuses_a_loopback_server(servers, tmp_path):
    download.main(_url_list(servers[0], tmp_path) + ["--out", str(tmp_path / "strict")])
    strict = [r for sid in list_complete_shards(tmp_path / "strict")
              for r in pq.read_table(shard_paths(tmp_path / "strict", sid)[1]).to_pylist()]
    assert len(strict) == 4 and {r["status"] for r in strict} == {"failed_to_download"}
    assert all("loopback address" in r["error_message"] for r in strict)
