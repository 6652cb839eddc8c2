"""An exchange as the public side sent and received it, rebuilt from its record. No I/O.

The tunnel carries heads as header lists and bodies as chunks; the agent API's
``raw``, HAR and cURL want the message as it was: the URL the public client
asked for, and request and response as HTTP/1.1 bytes.
"""

from __future__ import annotations

from http import HTTPStatus

from ..protocol import Headers, header_values


def public_url(headers: Headers, path: str, fallback: str = "") -> str:
    """The URL the public client asked for: the server's X-Forwarded-Proto and the Host."""
    hosts = header_values(headers, "host")
    if not hosts:
        return fallback.rstrip("/") + path
    # The server sets X-Forwarded-Proto itself (README: what the local server receives).
    protos = header_values(headers, "x-forwarded-proto")
    scheme = protos[-1].strip().lower() if protos else "http"
    return f"{scheme if scheme in ('http', 'https') else 'http'}://{hosts[0]}{path}"


def remote_addr(headers: Headers) -> str:
    """The public client's address: the right-most X-Forwarded-For entry, which the server
    appends itself and so vouches for."""
    forwarded = ",".join(header_values(headers, "x-forwarded-for"))
    return forwarded.rsplit(",", 1)[-1].strip()


def reason(status: int) -> str:
    """The standard reason phrase, or "" for a status without one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def status_line(status: int) -> str:
    """``200 OK``, as ngrok's API writes a response's ``status``."""
    return f"{status} {reason(status)}".rstrip()


def raw_request(method: str, path: str, headers: Headers, body: bytes) -> bytes:
    return _message(f"{method} {path} HTTP/1.1", headers, body)


def raw_response(status: int, headers: Headers, body: bytes) -> bytes:
    return _message(f"HTTP/1.1 {status_line(status)}", headers, body)


def _message(start: str, headers: Headers, body: bytes) -> bytes:
    # Names and values travel as latin-1 text (client.protocol.Headers): back to bytes as such.
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{start}\r\n{head}\r\n".encode("latin-1") + body
