"""One image fetch under the download policy: public addresses only, http(s) only, bounded bytes and time.

``curation.download`` hands URL lists from the internet to img2dataset; a hostile or broken list must
not make it read a 2 GiB body into memory, sit on a dripping response, reach the cluster's own
services (loopback, private, link-local, multicast, reserved addresses; also via redirects and via
hostnames that resolve to them) or follow a redirect to ``ftp://`` or ``file://``. :func:`fetch`
enforces all of that with urllib alone:

- the opener has only http/https handlers (no file/ftp/data) and a redirect handler that refuses
  non-http(s) targets and checks each target's address;
- the address check happens where the socket connects (the connection is made to the vetted IP, so a
  DNS answer cannot change between check and connect); with a proxy configured the URL's host is
  checked by resolution instead, since the proxy makes the connection;
- the body is read in chunks and refused past ``max_bytes`` (``Content-Length`` is checked first);
- a watchdog shuts the sockets down at the per-image deadline, so a slowly dripping response ends
  there, not after ``timeout`` seconds of silence.

A refusal raises :class:`FetchRefused` with a short, deterministic message that becomes the URL's
recorded ``error_message``. img2dataset uses this through ``curation.downloading.img2dataset_child``.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urljoin, urlsplit

ALLOWED_SCHEMES = ("http", "https")
CHUNK = 1 << 16


@dataclass(frozen=True)
class FetchPolicy:
    """What a download may do; one per run (``--max-image-bytes``, ``--image-deadline``, ``--allow-private-addresses``)."""

    max_bytes: int = 64 * 2**20
    deadline_s: float = 60.0
    allow_private: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class FetchRefused(Exception):
    """The policy refused this URL (address, scheme, size or deadline)."""


def address_problem(ip: str) -> str | None:
    """Why ``ip`` is not a public internet address, or None when it is."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(addr, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if addr.is_global else "not globally routable"


def vetted_addresses(host: str, port: int, policy: FetchPolicy) -> list[tuple]:
    """getaddrinfo results for ``host``; every address must be public unless the policy allows private."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc.strerror}") from None
    if not policy.allow_private:
        for info in infos:
            problem = address_problem(info[4][0])
            if problem:
                where = f"{host} is" if host.strip("[]") == info[4][0] else f"{host} resolves to {info[4][0]},"
                raise FetchRefused(f"refused: {where} a {problem} address (pass --allow-private-addresses to allow)")
    return infos


class _Watch:
    """The sockets of one fetch and its deadline; ``expire`` shuts them down (from the watchdog thread)."""

    def __init__(self, policy: FetchPolicy):
        self.policy, self.deadline = policy, time.monotonic() + policy.deadline_s
        self.proxied = bool(urllib.request.getproxies())
        self.sockets: list[socket.socket] = []
        self.expired = False
        self.lock = threading.Lock()

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FetchRefused(f"no complete response within the {self.policy.deadline_s:g} s per-image deadline")
        return left

    def add(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                self._shutdown(sock)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            for sock in self.sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _connection_class(base: type[http.client.HTTPConnection], watch: _Watch) -> type:
    class Guarded(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = self._vetted_connection

        def _vetted_connection(self, address, timeout, source_address=None):
            host, port = address
            infos = vetted_addresses(host, port, watch.policy) if not watch.proxied else \
                socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # a proxy: check_url vetted the host
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(min(timeout, watch.remaining()) if timeout else watch.remaining())
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)  # the address that was checked, not a second DNS answer
            except BaseException:
                sock.close()
                raise
            return sock

        def connect(self):
            super().connect()
            watch.add(self.sock)  # after TLS wrapping: the socket the response reads from

    return Guarded


class _Handlers:
    """Per-fetch http/https/redirect handlers bound to one watch."""

    @staticmethod
    def build(watch: _Watch) -> urllib.request.OpenerDirector:
        http_conn = _connection_class(http.client.HTTPConnection, watch)
        https_conn = _connection_class(http.client.HTTPSConnection, watch)

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(http_conn, req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(https_conn, req, context=self._context)

        class Redirect(urllib.request.HTTPRedirectHandler):
            def http_error_302(self, req, fp, code, msg, headers):
                target = headers.get("location") or headers.get("uri")
                if target:  # before urllib's own scheme check, which lets ftp:// through
                    check_url(urljoin(req.full_url, target), watch.policy, what="redirect to")
                return super().http_error_302(req, fp, code, msg, headers)

            http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

        opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), HTTP(), HTTPS(), Redirect(),
                        urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
            opener.add_handler(handler)
        return opener


def check_url(url: str, policy: FetchPolicy, what: str = "URL") -> None:
    """Scheme must be http(s); with a proxy configured, the host must also resolve to public addresses here."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise FetchRefused(f"refused: {what} {parts.scheme or 'no'}:// URL; only http(s) is followed")
    if not parts.hostname:
        raise FetchRefused(f"refused: {what} a URL without a host")
    if urllib.request.getproxies():
        vetted_addresses(parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80), policy)


def _read_capped(response, watch: _Watch) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > watch.policy.max_bytes:
        raise FetchRefused(f"response of {int(declared)} bytes exceeds --max-image-bytes {watch.policy.max_bytes}")
    body = io.BytesIO()
    while True:
        watch.remaining()
        chunk = response.read1(CHUNK)
        if watch.expired:
            raise FetchRefused(f"no complete response within the {watch.policy.deadline_s:g} s per-image deadline")
        if not chunk:
            return body.getvalue()
        body.write(chunk)
        if body.tell() > watch.policy.max_bytes:
            raise FetchRefused(f"response larger than --max-image-bytes {watch.policy.max_bytes}")


def fetch(url: str, policy: FetchPolicy, timeout: float, headers: dict[str, str] | None = None,
          check_headers: Callable[[object], str | None] | None = None) -> bytes:
    """The body of ``url`` under ``policy``; raises :class:`FetchRefused` or the urllib/OSError of a failure.

    ``timeout`` bounds each socket operation; ``policy.deadline_s`` bounds the whole fetch, redirects
    included. ``check_headers(headers)`` may return a reason to refuse the response (X-Robots-Tag).
    """
    check_url(url, policy)
    watch = _Watch(policy)
    timer = threading.Timer(policy.deadline_s, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        request = urllib.request.Request(url, data=None, headers=headers or {})
        try:
            with _Handlers.build(watch).open(request, timeout=min(timeout, watch.remaining())) as response:
                reason = check_headers(response.headers) if check_headers else None
                if reason:
                    raise FetchRefused(reason)
                return _read_capped(response, watch)
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None)
            if isinstance(reason, FetchRefused):  # urllib wraps errors raised while connecting
                raise reason from None
            if watch.expired:
                raise FetchRefused(f"no complete response within the {policy.deadline_s:g} s per-image deadline") \
                    from None
            raise
    finally:
        timer.cancel()
