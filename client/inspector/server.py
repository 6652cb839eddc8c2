"""The inspector's HTTP server: the standard library's, on 127.0.0.1 only.

Two checks come before any route, because a web page in the same browser can
reach 127.0.0.1 too:

- the ``Host`` must name loopback (``localhost``, ``127.x.x.x``, ``[::1]``): a page on
  an attacker's domain that re-resolves that domain to 127.0.0.1 (DNS rebinding)
  still sends its own name, and is refused;
- a request that changes something (replay, clear) and carries an ``Origin`` must
  come from a page of this server: another site's page cannot replay or clear by
  posting a form. Scripts (curl, pyngrok) send no Origin and are served.

Threads are daemons, so a page's open event stream never keeps the client alive.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .agent import ErrorCode
from .web import ApiError, Request, Response, Router

logger = logging.getLogger(__name__)

BIND = "127.0.0.1"
#: Largest request body taken (a replay with an edited body).
MAX_BODY_BYTES = 16 << 20
#: Methods that only read: they need no Origin check.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_COMMON_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]


class InspectorUnavailable(Exception):
    """No port could be had for the inspector; the message says which were tried."""


def loopback_host(host: str) -> bool:
    """Whether a ``Host`` header (or an origin's host and port) names this machine's loopback."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1] or [::1]:4040
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, port: int) -> bool:
    """Whether an ``Origin`` is a page of this server: http, a loopback host, our port."""
    parts = urlsplit(origin)
    try:
        origin_port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname is not None
        and loopback_host(parts.netloc)
        and origin_port == port
    )


class InspectorServer:
    """Serves ``router`` on the first free port from ``first_port`` (0: any free port)."""

    def __init__(self, router: Router, first_port: int, attempts: int) -> None:
        self._httpd = _bind(router, first_port, attempts)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="inspector",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{BIND}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close the socket; open event streams end on their own."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser or script that goes away mid-request is normal: say nothing.
        Anything else is logged, never printed over the client's console lines."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        logger.error("inspector: request from %s failed", client_address, exc_info=True)


def _bind(router: Router, first_port: int, attempts: int) -> _HttpServer:
    ports = [0] if first_port == 0 else range(first_port, min(first_port + attempts, 65536))
    for port in ports:
        try:
            return _HttpServer((BIND, port), router)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise InspectorUnavailable(f"cannot listen on {BIND}:{port}: {exc}") from exc
            logger.debug("inspector: port %d is taken", port)
    raise InspectorUnavailable(f"ports {ports[0]}-{ports[-1]} on {BIND} are all taken")


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "Luminet-Inspector"

    def version_string(self) -> str:
        return self.server_version  # without the Python version, nor a space for it

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _serve(self) -> None:
        try:
            request = self._request()
        except ApiError as exc:
            self.close_connection = True
            self._write(exc.response())
            return
        self._write(self.server.router.handle(request))

    def _request(self) -> Request:
        """The request, once it passed the Host and Origin checks and its body was read."""
        if not loopback_host(self.headers.get("Host", "")):
            raise ApiError(
                403, ErrorCode.FORBIDDEN, "host not allowed", "the inspector answers loopback only"
            )
        origin = self.headers.get("Origin")
        if (
            self.command not in _SAFE_METHODS
            and origin is not None
            and not same_origin(origin, self.server.server_address[1])
        ):
            raise ApiError(403, ErrorCode.FORBIDDEN, "origin not allowed", origin)
        target = urlsplit(self.path)
        headers = {name.lower(): value for name, value in reversed(self.headers.items())}
        return Request(
            method=self.command,
            path=target.path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers=headers,
            body=self._body(),
        )

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ApiError(411, ErrorCode.BAD_REQUEST, "send the body with a Content-Length")
        length = self.headers.get("Content-Length", "0").strip() or "0"
        if not length.isdigit():
            raise ApiError(400, ErrorCode.BAD_REQUEST, "invalid Content-Length")
        if int(length) > MAX_BODY_BYTES:
            raise ApiError(413, ErrorCode.TOO_LARGE, "body too large", f"at most {MAX_BODY_BYTES}")
        return self.rfile.read(int(length))

    def _write(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            for name, value in [*_COMMON_HEADERS, *response.headers]:
                self.send_header(name, value)
            if response.status != 204:
                self.send_header("Content-Type", response.content_type)
            if response.stream is not None:
                self._write_stream(response)
                return
            if response.status != 204:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the page went away

    def _write_stream(self, response: Response) -> None:
        """Chunks as they come, until the stream ends or the reader goes away."""
        assert response.stream is not None
        self.close_connection = True
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        try:
            if self.command == "HEAD":
                return
            for chunk in response.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            close = getattr(response.stream, "close", None)
            if close is not None:
                close()

    def log_message(self, format: str, *args: object) -> None:
        # stdout is the client's own output (text or JSON lines); requests are debug detail.
        logger.debug("inspector: " + format, *args)
