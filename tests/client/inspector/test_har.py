"""Export as HAR 1.2: every field the spec requires, and bodies as a HAR reader expects."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime
from typing import Any

from client.inspector.har import HarExchange, har

#: The fields HAR 1.2 requires of each object (http://www.softwareishard.com/blog/har-12-spec/).
REQUIRED = {
    "log": {"version", "creator", "entries"},
    "creator": {"name", "version"},
    "entry": {"startedDateTime", "time", "request", "response", "cache", "timings"},
    "request": {
        "method",
        "url",
        "httpVersion",
        "cookies",
        "headers",
        "queryString",
        "headersSize",
        "bodySize",
    },
    "response": {
        "status",
        "statusText",
        "httpVersion",
        "cookies",
        "headers",
        "content",
        "redirectURL",
        "headersSize",
        "bodySize",
    },
    "content": {"size", "mimeType"},
    "timings": {"send", "wait", "receive"},
}


def exchange(**changes: Any) -> HarExchange:
    fields: dict[str, Any] = {
        "wall_started": 1_700_000_000.25,
        "method": "POST",
        "path": "/hook?a=1&b=",
        "request_headers": [
            ("host", "abc.example.com"),
            ("x-forwarded-proto", "https"),
            ("content-type", "application/json"),
            ("cookie", "session=s1; theme=dark"),
        ],
        "request_body": b'{"n":1}',
        "request_seen": 7,
        "status": 201,
        "response_headers": [("Content-Type", "text/plain"), ("Set-Cookie", "id=9; Path=/")],
        "response_body": b"created",
        "response_seen": 7,
        "wait_ms": 12.5,
        "total_ms": 14.0,
    }
    fields.update(changes)
    return HarExchange(**fields)


def check_required(document: dict[str, Any]) -> None:
    log = document["log"]
    assert REQUIRED["log"] <= set(log) and REQUIRED["creator"] <= set(log["creator"])
    assert log["version"] == "1.2"
    for entry in log["entries"]:
        assert REQUIRED["entry"] <= set(entry)
        assert REQUIRED["request"] <= set(entry["request"])
        assert REQUIRED["response"] <= set(entry["response"])
        assert REQUIRED["content"] <= set(entry["response"]["content"])
        assert REQUIRED["timings"] <= set(entry["timings"])
        datetime.fromisoformat(entry["startedDateTime"])


def test_an_exchange_becomes_a_complete_entry() -> None:
    document = har([exchange()])
    check_required(document)
    json.dumps(document)  # all of it is JSON
    (entry,) = document["log"]["entries"]
    assert entry["startedDateTime"] == "2023-11-14T22:13:20.250+00:00"
    assert entry["time"] == 14.0
    assert entry["timings"] == {"send": 0, "wait": 12.5, "receive": 1.5}
    request = entry["request"]
    assert request["url"] == "https://abc.example.com/hook?a=1&b="
    assert request["queryString"] == [{"name": "a", "value": "1"}, {"name": "b", "value": ""}]
    assert request["cookies"] == [
        {"name": "session", "value": "s1"},
        {"name": "theme", "value": "dark"},
    ]
    assert request["postData"] == {"mimeType": "application/json", "text": '{"n":1}'}
    assert {"name": "content-type", "value": "application/json"} in request["headers"]
    response = entry["response"]
    assert (response["status"], response["statusText"], response["bodySize"]) == (201, "Created", 7)
    assert response["cookies"] == [{"name": "id", "value": "9"}]
    assert response["content"] == {"size": 7, "mimeType": "text/plain", "text": "created"}


def test_binary_bodies_are_base64() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00"
    document = har(
        [
            exchange(
                request_headers=[("host", "h"), ("content-type", "application/octet-stream")],
                request_body=b"\x00\xff",
                request_seen=2,
                response_headers=[("Content-Type", "image/png")],
                response_body=png,
                response_seen=len(png),
            )
        ]
    )
    (entry,) = document["log"]["entries"]
    assert entry["request"]["postData"]["text"] == base64.b64encode(b"\x00\xff").decode()
    content = entry["response"]["content"]
    assert (content["encoding"], base64.b64decode(content["text"])) == ("base64", png)


def test_a_gzip_response_is_given_decoded() -> None:
    zipped = gzip.compress(b"hello " * 100)
    document = har(
        [
            exchange(
                response_headers=[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
                response_body=zipped,
                response_seen=len(zipped),
            )
        ]
    )
    content = document["log"]["entries"][0]["response"]["content"]
    assert content["text"] == "hello " * 100
    assert content["size"] == 600 and content["compression"] == 600 - len(zipped)


def test_a_cut_body_says_so_in_a_comment() -> None:
    document = har([exchange(response_body=b"abc", response_seen=10_000)])
    content = document["log"]["entries"][0]["response"]["content"]
    assert content["comment"] == "only the first 3 bytes of 10 KiB were kept"


def test_an_exchange_without_a_response_has_status_0_and_says_why() -> None:
    document = har([exchange(status=None, response_headers=[], failure="connection refused")])
    check_required(document)
    (entry,) = document["log"]["entries"]
    assert entry["response"]["status"] == 0
    assert entry["comment"] == "connection refused"
