"""Export as HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/). No I/O.

Every HTTP exchange that has ended becomes one entry; WebSockets and
exchanges still in flight are left out. Bodies are given as kept: text as
text, anything else in base64; gzip and deflate responses decoded (HAR's
``content`` is the decoded body), a body cut short by the cap or encoded in a
way we cannot decode says so in its ``comment``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..protocol import Headers, header_values
from .render import MediaType, render
from .wire import public_url, reason

CREATOR = {"name": "Luminet inspector", "version": "1"}


@dataclass(frozen=True)
class HarExchange:
    """What one HAR entry is made of: the record's facts and the bodies as kept."""

    wall_started: float
    method: str
    path: str
    request_headers: Headers
    request_body: bytes
    request_seen: int
    #: None: no response head came (the exchange failed before one).
    status: int | None
    response_headers: Headers
    response_body: bytes
    response_seen: int
    #: Milliseconds from the request's arrival to the response head, and to the end.
    wait_ms: float
    total_ms: float
    failure: str = ""


def har(exchanges: list[HarExchange]) -> dict[str, Any]:
    return {
        "log": {"version": "1.2", "creator": CREATOR, "entries": [_entry(x) for x in exchanges]}
    }


def _entry(x: HarExchange) -> dict[str, Any]:
    url = public_url(x.request_headers, x.path, "http://localhost")
    started = datetime.fromtimestamp(x.wall_started, UTC).isoformat(timespec="milliseconds")
    entry: dict[str, Any] = {
        "startedDateTime": started,
        "time": round(x.total_ms, 3),
        "request": {
            "method": x.method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "cookies": _request_cookies(x.request_headers),
            "headers": _headers(x.request_headers),
            "queryString": [
                {"name": name, "value": value}
                for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)
            ],
            "headersSize": -1,
            "bodySize": x.request_seen,
        },
        "response": _response(x),
        "cache": {},
        "timings": {
            "send": 0,
            "wait": round(x.wait_ms, 3),
            "receive": round(max(0.0, x.total_ms - x.wait_ms), 3),
        },
    }
    if x.request_seen:
        entry["request"]["postData"] = _post_data(x)
    if x.failure:
        entry["comment"] = x.failure
    return entry


def _response(x: HarExchange) -> dict[str, Any]:
    if x.status is None:
        return {
            "status": 0,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        }
    headers = x.response_headers
    return {
        "status": x.status,
        "statusText": reason(x.status),
        "httpVersion": "HTTP/1.1",
        "cookies": _set_cookies(headers),
        "headers": _headers(headers),
        "content": _content(headers, x.response_body, x.response_seen),
        "redirectURL": (header_values(headers, "location") or [""])[0],
        "headersSize": -1,
        "bodySize": x.response_seen,
    }


def _content(headers: Headers, body: bytes, seen: int) -> dict[str, Any]:
    mime = (header_values(headers, "content-type") or [""])[0]
    content: dict[str, Any] = {"size": seen, "mimeType": mime}
    if not seen:
        return content
    view = render(headers, body, seen)
    if view.kind in ("json", "text") and not header_values(headers, "content-encoding"):
        content["text"] = body.decode(MediaType.of(headers).charset or "utf-8", "replace")
    elif view.kind in ("json", "text"):
        content["text"] = view.text  # decoded from gzip or deflate
        content["size"] = len(view.text.encode())
        content["compression"] = content["size"] - seen
    else:
        content["text"] = base64.b64encode(body).decode()
        content["encoding"] = "base64"
    if view.notes:
        content["comment"] = "; ".join(view.notes)
    return content


def _post_data(x: HarExchange) -> dict[str, Any]:
    mime = (header_values(x.request_headers, "content-type") or [""])[0]
    post: dict[str, Any] = {"mimeType": mime}
    view = render(x.request_headers, x.request_body, x.request_seen)
    if view.kind in ("json", "text") and not header_values(x.request_headers, "content-encoding"):
        post["text"] = x.request_body.decode("utf-8", "replace")
    else:
        # HAR 1.2 has no encoding for postData; the comment says what the text is.
        post["text"] = base64.b64encode(x.request_body).decode()
        post["comment"] = "base64"
    if x.request_seen > len(x.request_body):
        post["comment"] = "; ".join(filter(None, [post.get("comment"), *view.notes]))
    return post


def _headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


def _request_cookies(headers: Headers) -> list[dict[str, str]]:
    cookies = []
    for value in header_values(headers, "cookie"):
        for pair in value.split(";"):
            name, sep, val = pair.strip().partition("=")
            if sep and name:
                cookies.append({"name": name, "value": val})
    return cookies


def _set_cookies(headers: Headers) -> list[dict[str, str]]:
    cookies = []
    for value in header_values(headers, "set-cookie"):
        name, sep, val = value.split(";", 1)[0].strip().partition("=")
        if sep and name:
            cookies.append({"name": name, "value": val})
    return cookies
