"""Opening the tunnel WebSocket, with failures a person can act on.

websocket-client reports a wrong URL as ``Handshake status 403 Forbidden -+-+-
{...}`` with the whole HTML page, an http/https mix-up as an SSL error code, and
it would retry both forever. Here each failure is one of two kinds:

- the URL cannot lead to a Luminet server (an answer other than an upgrade, TLS
  against a plain server or the reverse, a certificate that does not fit): a
  :class:`WrongServer` naming what to change, and the client stops;
- the server is not reachable now (refused, no answer, a proxy in front saying
  the server behind it is down): a :class:`ConnectionLost` saying what was
  tried, and the client tries again with backoff.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit, urlunsplit

import websocket

from .errors import ConnectionLost, WrongServer

#: Statuses of a proxy in front whose server behind it is down or busy: try again.
_TRY_AGAIN = frozenset({429, 502, 503, 504})
#: What proxies answer a plain HTTP request on their TLS port (Caddy, nginx).
_PLAIN_ON_TLS = ("http request to an https server", "plain http request was sent to https port")


def dial(url: str, timeout: float) -> websocket.WebSocket:
    """The tunnel WebSocket to ``url``; raises WrongServer or ConnectionLost."""
    try:
        return websocket.create_connection(
            url, timeout=timeout, enable_multithread=True, skip_utf8_validation=True
        )
    except websocket.WebSocketBadStatusException as exc:
        raise _refused_upgrade(url, exc) from None
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or "not trusted"
        raise WrongServer(f"the TLS certificate of {_authority(url)} is {reason}") from None
    except ssl.SSLError as exc:
        if exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"):
            raise WrongServer(
                f"{_authority(url)} does not speak TLS; if the server is plain http, "
                f"use --server {_with_scheme(url, 'http')}"
            ) from None
        raise ConnectionLost(f"TLS with {_authority(url)} failed ({exc.reason})") from None
    except websocket.WebSocketAddressException:
        host = urlsplit(url).hostname
        raise ConnectionLost(f"{host} does not resolve") from None
    except ConnectionRefusedError:
        raise ConnectionLost(
            f"{_authority(url)} refused the connection; is the server running?"
        ) from None
    except (TimeoutError, websocket.WebSocketTimeoutException):
        hint = "; if the server is plain http, use http://" if url.startswith("wss:") else ""
        raise ConnectionLost(f"no answer from {url} within {timeout:g} s{hint}") from None
    except (OSError, websocket.WebSocketException) as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        raise ConnectionLost(f"{url}: {detail}") from None


def _refused_upgrade(url: str, exc: websocket.WebSocketBadStatusException) -> Exception:
    status = exc.status_code
    phrase = f"{status} {exc.status_message or ''}".strip()
    body = (exc.resp_body or b"")[:2000].decode("utf-8", "replace").lower()
    if status == 400 and any(text in body for text in _PLAIN_ON_TLS):
        return WrongServer(
            f"{_authority(url)} expects TLS; use --server {_with_scheme(url, 'https')}"
        )
    headers = exc.resp_headers or {}
    if status == 429 and headers.get("luminet-error") == "auth-failures":
        wait = _seconds(headers.get("retry-after"))
        return ConnectionLost(
            "too many failed tunnel authentications from this address; the server takes "
            f"none for {wait:g} s (a wrong token nearby?)",
            retry_after=wait,
        )
    if status in _TRY_AGAIN:
        return ConnectionLost(
            f"{url} answered {phrase}; is the Luminet server behind the proxy running?"
        )
    return WrongServer(
        f"{url} is not a Luminet tunnel endpoint (it answered {phrase}); --server takes "
        "the server's base URL, such as https://tunnel.example.com"
    )


def _seconds(value: str | None) -> float:
    """A ``Retry-After`` in seconds (1 when missing or unreadable, 300 at most)."""
    try:
        return min(300.0, max(1.0, float(value or "1")))
    except ValueError:
        return 1.0


def _authority(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc


def _with_scheme(url: str, scheme: str) -> str:
    """``url`` as the user would type it for --server, with ``scheme``."""
    parts = urlsplit(url)
    path = "" if parts.path == "/tunnel" else parts.path
    return urlunsplit((scheme, parts.netloc, path, "", ""))
