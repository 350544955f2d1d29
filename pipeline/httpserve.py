"""A loopback HTTP file server in a background thread, for the demo and tests.

Serves the regular files of one folder (no listing, no sub-folders) on 127.0.0.1; any other path
answers 404, so a URL list can hold a deliberately broken link whose failure img2dataset records.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_LOG = logging.getLogger(__name__)


def _handler_for(folder: Path) -> type[BaseHTTPRequestHandler]:
    root = folder.resolve()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.split("?", 1)[0].lstrip("/")
            path = (root / name).resolve()
            if "/" in name or not name or path.parent != root or not path.is_file():
                self.send_error(404, "not found")
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", mimetypes.guess_type(name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args) -> None:
            _LOG.debug("http %s", fmt % args)

    return Handler


@contextmanager
def serve_folder(folder: str | Path, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` on ``http://127.0.0.1:PORT`` (``port=0``: a free one) and yield the base URL.

    If ``port`` is taken, a free port is used instead. The server stops when the block exits.
    """
    handler = _handler_for(Path(folder))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="demo-http", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    _LOG.info("serving %s at %s", folder, base)
    try:
        yield base
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
