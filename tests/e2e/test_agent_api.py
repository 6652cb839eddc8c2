"""The agent API of a running client, used as scripts written for ngrok's use it.

A real server, the real client with its inspector on, a real local server; the
API is called over real sockets with exactly the Host and Origin each test
wants. The inspector is client-side, so one layer (memory) is enough.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import Client

from . import rawclient
from .conftest import Database, Launcher, Layer, Token
from .inspected import REPORT_TIMEOUT, Inspected
from .localserver import Reply
from .wslocal import WsLocalServer, connect

pytestmark = pytest.mark.timeout(60)

#: The keys of ngrok's tunnel metrics.
CONNS_KEYS = {"count", "gauge", "rate1", "rate5", "rate15", "p50", "p90", "p95", "p99"}
HTTP_KEYS = CONNS_KEYS - {"gauge"}


def compact(body: bytes) -> bool:
    """Whether a JSON body is written without spaces after ``:`` and ``,`` (as ngrok's)."""
    return body == json.dumps(json.loads(body), separators=(",", ":")).encode()


# -- tunnels and endpoints ----------------------------------------------------------


def test_tunnels_are_listed_in_ngroks_shape(inspected: Inspected) -> None:
    """``/api/tunnels``: compact JSON whose public_url a grep finds, with ngrok's keys."""
    response = inspected.call("GET", "/api/tunnels")
    assert response.status == 200
    assert response.value("Content-Type") == "application/json"
    assert compact(response.body)
    assert re.findall(rb'"public_url":"[^"]*', response.body) == [
        b'"public_url":"' + inspected.url.encode()
    ]
    document = json.loads(response.body)
    assert document["uri"] == "/api/tunnels"
    (tunnel,) = document["tunnels"]
    assert set(tunnel) == {"name", "ID", "uri", "public_url", "proto", "config", "metrics"}
    assert tunnel["name"] == "command_line"
    assert tunnel["uri"] == "/api/tunnels/command_line"
    assert tunnel["proto"] == "http"  # the test server's public URL is http
    assert re.fullmatch(r"[0-9a-f]{32}", tunnel["ID"])
    assert tunnel["config"] == {"addr": f"http://127.0.0.1:{inspected.local.port}", "inspect": True}
    assert set(tunnel["metrics"]["conns"]) == CONNS_KEYS
    assert set(tunnel["metrics"]["http"]) == HTTP_KEYS

    one = inspected.get("/api/tunnels/command_line")
    assert {k: v for k, v in one.items() if k != "metrics"} == {
        k: v for k, v in tunnel.items() if k != "metrics"
    }


def test_metrics_count_requests_in_nanoseconds(inspected: Inspected, uid: str) -> None:
    """After requests, ``http.count`` grows and the percentiles are durations in ns."""
    inspected.local.route(f"/{uid}/slow", Reply(body=b"late", delay=0.05))
    before = inspected.get("/api/tunnels")["tunnels"][0]["metrics"]["http"]["count"]
    for _ in range(3):
        assert inspected.through_tunnel("GET", f"/{uid}/slow").status == 200
    metrics = inspected.get("/api/tunnels")["tunnels"][0]["metrics"]
    assert metrics["http"]["count"] == before + 3
    assert metrics["conns"]["count"] >= metrics["http"]["count"]
    # 50 ms of delay: at least 5e7 ns, and not a second's worth of ns (1e9) or seconds.
    assert 5e7 <= metrics["http"]["p99"] < 5e9
    assert metrics["http"]["p50"] <= metrics["http"]["p90"] <= metrics["http"]["p99"]


def test_endpoints_in_ngrok_v3_shape(inspected: Inspected) -> None:
    response = inspected.call("GET", "/api/endpoints")
    assert response.status == 200 and compact(response.body)
    document = json.loads(response.body)
    assert document == {
        "endpoints": [
            {
                "name": "command_line",
                "uri": "/api/endpoints/command_line",
                "url": inspected.url,
                "upstream": {
                    "url": f"http://127.0.0.1:{inspected.local.port}",
                    "protocol": "http1",
                },
                "inspect": True,
            }
        ],
        "uri": "/api/endpoints",
    }
    assert inspected.get("/api/endpoints/command_line") == document["endpoints"][0]


def test_status_says_online(inspected: Inspected) -> None:
    status = inspected.get("/api/status")
    assert status["status"] == "online"
    assert status["uri"] == "/api/status"
    session = status["session"]
    assert (session["status"], session["url"]) == ("online", inspected.url)
    (tunnel,) = session["tunnels"]
    assert (tunnel["name"], tunnel["url"], tunnel["status"]) == (
        "command_line",
        inspected.url,
        "online",
    )
    # The round trip of the ping sent before authenticating, in nanoseconds.
    assert 0 < tunnel["latency"] < 5e9


# -- captured requests ----------------------------------------------------------------


def test_a_request_is_captured_with_its_wire_bytes(inspected: Inspected, uid: str) -> None:
    """Method, headers (ngrok's canonical names), raw bytes, response, times and units."""
    path = f"/{uid}/hook?x=1"
    inspected.local.route(
        f"/{uid}/hook", Reply(201, "Created", (("Content-Type", "application/json"),), b'{"ok":1}')
    )
    body = b'{"event":"paid"}'
    inspected.through_tunnel("POST", path, body, [("X-Api-Key", "k1"), ("X-Api-Key", "k2")])

    response = inspected.call("GET", "/api/requests/http")
    assert response.status == 200 and compact(response.body)
    document = json.loads(response.body)
    assert document["uri"] == "/api/requests/http"
    (captured,) = [r for r in document["requests"] if r["request"]["uri"] == path]
    assert set(captured) == {
        "uri",
        "id",
        "tunnel_name",
        "remote_addr",
        "start",
        "duration",
        "request",
        "response",
    }
    assert captured["uri"] == f"/api/requests/http/{captured['id']}"
    assert re.fullmatch(r"[0-9a-f]{16}", captured["id"])
    assert captured["tunnel_name"] == "command_line"
    assert captured["remote_addr"] == "127.0.0.1"
    assert datetime.fromisoformat(captured["start"]).tzinfo is not None
    assert isinstance(captured["duration"], int) and captured["duration"] > 0

    request = captured["request"]
    assert (request["method"], request["proto"], request["uri"]) == ("POST", "HTTP/1.1", path)
    assert request["headers"]["X-Api-Key"] == ["k1", "k2"]
    assert request["headers"]["Host"] == [f"{inspected.subdomain}.localhost"]
    raw = base64.b64decode(request["raw"])
    assert raw.startswith(f"POST {path} HTTP/1.1\r\n".encode())
    assert b"\r\nx-api-key: k1\r\nx-api-key: k2\r\n" in raw
    assert raw.endswith(b"\r\n\r\n" + body)

    answer = captured["response"]
    assert (answer["status"], answer["status_code"], answer["proto"]) == (
        "201 Created",
        201,
        "HTTP/1.1",
    )
    assert answer["headers"]["Content-Type"] == ["application/json"]
    assert base64.b64decode(answer["raw"]).startswith(b"HTTP/1.1 201 Created\r\n")
    assert base64.b64decode(answer["raw"]).endswith(b'\r\n\r\n{"ok":1}')

    assert inspected.get(captured["uri"]) == captured


def test_requests_filter_by_limit_and_tunnel_name(inspected: Inspected, uid: str) -> None:
    for n in range(3):
        inspected.through_tunnel("GET", f"/{uid}/{n}")
    newest = inspected.get("/api/requests/http?limit=2")["requests"]
    assert [r["request"]["uri"] for r in newest] == [f"/{uid}/2", f"/{uid}/1"]
    named = inspected.get("/api/requests/http?tunnel_name=command_line")["requests"]
    assert f"/{uid}/0" in [r["request"]["uri"] for r in named]
    assert inspected.get("/api/requests/http?tunnel_name=other")["requests"] == []


def test_replay_reaches_the_local_server_again_with_the_same_body(
    inspected: Inspected, uid: str
) -> None:
    """POST ``{"id"}`` (tunnel_name null, or named, or as ``tunnelName``): 204, and one more
    request with the same method, path and body reaches the local server each time."""
    path = f"/{uid}/replayed"
    body = bytes(range(256)) * 300  # binary, and more than one chunk of the tunnel
    inspected.through_tunnel("PUT", path, body)
    (captured,) = inspected.find(path)

    for n, payload in enumerate(
        [
            {"id": captured["id"], "tunnel_name": None},
            {"id": captured["id"], "tunnel_name": "command_line"},
            {"id": captured["id"], "tunnelName": "command_line"},
        ],
        start=2,
    ):
        response = inspected.call("POST", "/api/requests/http", json.dumps(payload).encode())
        assert (response.status, response.body) == (204, b"")
        inspected.local.wait_count(lambda r: r.path == path, n)
    received = inspected.local.requests(lambda r: r.path == path)
    assert [(r.method, r.body) for r in received] == [("PUT", body)] * 4
    # Each replay is a new exchange of its own, marked as a replay of the original.
    rows = [e for e in inspected.get("/inspector/entries")["entries"] if e["path"] == path]
    assert [row["replay_of"] for row in rows] == [None] + [captured["id"]] * 3


def test_delete_clears_the_captured_requests(inspected: Inspected, uid: str) -> None:
    inspected.through_tunnel("GET", f"/{uid}/gone")
    assert inspected.find(f"/{uid}/gone")
    response = inspected.call("DELETE", "/api/requests/http")
    assert (response.status, response.body) == (204, b"")
    assert inspected.get("/api/requests/http") == {"uri": "/api/requests/http", "requests": []}


# -- errors and refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "code"),
    [
        ("GET", "/api/requests/http/0123456789abcdef", b"", 404, 101),
        ("GET", "/api/tunnels/nope", b"", 404, 101),
        ("GET", "/api/nothing-here", b"", 404, 101),
        ("GET", "/api/requests/http?limit=many", b"", 400, 100),
        ("POST", "/api/requests/http", b"{not json", 400, 100),
        ("POST", "/api/requests/http", b'{"id":"0123456789abcdef"}', 404, 101),
        ("POST", "/api/requests/http", b'{"id":"x","tunnel_name":"nope"}', 404, 101),
        ("PUT", "/api/tunnels", b"", 405, 102),
        ("POST", "/api/tunnels", b'{"addr":"3000","proto":"http","name":"x"}', 501, 106),
    ],
)
def test_errors_come_in_ngroks_shape(
    inspected: Inspected, method: str, target: str, body: bytes, status: int, code: int
) -> None:
    response = inspected.call(method, target, body)
    assert response.status == status
    assert compact(response.body)
    error = json.loads(response.body)
    assert set(error) == {"error_code", "status_code", "msg", "details"}
    assert (error["status_code"], error["error_code"]) == (status, code)
    assert isinstance(error["msg"], str) and error["msg"]
    assert isinstance(error["details"]["err"], str)


@pytest.mark.parametrize("host", ["attacker.example:4040", "attacker.example", "10.0.0.1:4040", ""])
def test_a_foreign_host_is_refused(inspected: Inspected, host: str) -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 still sends that name."""
    response = inspected.call("GET", "/api/tunnels", host=host)
    assert response.status == 403
    assert json.loads(response.body)["error_code"] == 104
    assert inspected.url.encode() not in response.body
    page = inspected.call("GET", "/", host=host)
    assert page.status == 403 and b"<html" not in page.body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_names_are_served(inspected: Inspected, host: str) -> None:
    response = inspected.call("GET", "/api/tunnels", host=f"{host}:{inspected.api_port}")
    assert response.status == 200


def test_another_sites_page_cannot_replay_or_clear(inspected: Inspected, uid: str) -> None:
    """A form posted from another origin is refused; the page's own origin is served."""
    inspected.through_tunnel("POST", f"/{uid}/kept", b"x")
    (captured,) = inspected.find(f"/{uid}/kept")
    replay = json.dumps({"id": captured["id"]}).encode()
    for origin in ("http://attacker.example", f"http://localhost:{inspected.api_port + 1}", "null"):
        headers = [("Origin", origin)]
        assert inspected.call("POST", "/api/requests/http", replay, headers=headers).status == 403
        assert inspected.call("DELETE", "/api/requests/http", headers=headers).status == 403
    assert len(inspected.local.requests(lambda r: r.path == f"/{uid}/kept")) == 1
    assert inspected.find(f"/{uid}/kept")
    own = [("Origin", f"http://127.0.0.1:{inspected.api_port}")]
    assert inspected.call("POST", "/api/requests/http", replay, headers=own).status == 204


def test_the_token_never_shows(inspected: Inspected, sqlite_token: Token, uid: str) -> None:
    """Neither the page, the API nor the HAR export holds the client's token."""
    inspected.through_tunnel("GET", f"/{uid}/any")
    (captured,) = inspected.find(f"/{uid}/any")
    targets = [
        "/",
        "/static/app.js",
        "/api/tunnels",
        "/api/endpoints",
        "/api/status",
        "/api/requests/http",
        "/inspector/entries",
        f"/inspector/entries/{captured['id']}",
        "/inspector/har",
    ]
    for target in targets:
        response = inspected.call("GET", target)
        assert response.status == 200, target
        assert sqlite_token.value.encode() not in response.body, target


# -- pyngrok -----------------------------------------------------------------------------


def test_pyngrok_reads_the_api(inspected: Inspected, uid: str) -> None:
    """pyngrok's own request function and classes, pointed at our agent, work unchanged."""
    from pyngrok.agent import CapturedRequest, NgrokAgent
    from pyngrok.conf import PyngrokConfig
    from pyngrok.ngrok import NgrokTunnel, api_request

    api = inspected.api
    config = PyngrokConfig(config_version="2")
    tunnels = [NgrokTunnel(t, config, api) for t in api_request(f"{api}/api/tunnels")["tunnels"]]
    assert [t.public_url for t in tunnels] == [inspected.url]
    assert tunnels[0].name == "command_line" and tunnels[0].proto == "http"
    tunnels[0].refresh_metrics()  # GETs the tunnel's uri and reads its "metrics"
    assert tunnels[0].metrics["http"]["count"] >= 0
    assert NgrokAgent(api_request(f"{api}/api/status")).status == "online"
    # ngrok v3's listing, as pyngrok reads it by default.
    (endpoint,) = api_request(f"{api}/api/endpoints")["endpoints"]
    v3 = NgrokTunnel(endpoint, PyngrokConfig(), api)
    assert (v3.public_url, v3.upstream["url"]) == (
        inspected.url,
        f"http://127.0.0.1:{inspected.local.port}",
    )

    inspected.through_tunnel("POST", f"/{uid}/py", b"from pyngrok")
    listed = api_request(f"{api}/api/requests/http", params={"tunnel_name": "command_line"})
    (captured,) = [
        CapturedRequest(r) for r in listed["requests"] if r["request"]["uri"] == f"/{uid}/py"
    ]
    assert captured.tunnel_name == "command_line" and captured.response["status_code"] == 200
    assert CapturedRequest(api_request(f"{api}{captured.uri}")).id == captured.id
    # agent.replay_request's call: tunnel_name None is sent as JSON null.
    assert (
        api_request(
            f"{api}/api/requests/http", "POST", data={"id": captured.id, "tunnel_name": None}
        )
        == {}
    )
    inspected.local.wait_count(lambda r: r.path == f"/{uid}/py", 2)
    assert api_request(f"{api}/api/requests/http", "DELETE") == {}
    assert api_request(f"{api}/api/requests/http")["requests"] == []


# -- where the inspector listens ----------------------------------------------------------


def test_a_taken_port_moves_the_inspector_to_the_next(
    inspected: Inspected, sqlite_database: Database, sqlite_token: Token, home: Path
) -> None:
    """As ngrok does: the first port is taken, so the next free one is used and printed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        launcher = Launcher(sqlite_database, Layer("memory", {}), home)
        try:
            client = launcher.client(
                inspected.server,
                sqlite_token,
                inspected.local.port,
                name="next-port",
                args=["--inspect-port", str(port)],
            )
            url = client.inspector_url()
            assert url.startswith("http://127.0.0.1:")
            assert port < int(url.rsplit(":", 1)[1]) < port + 20
        finally:
            launcher.close()


def test_text_output_says_where_the_inspector_is(
    inspected: Inspected, sqlite_token: Token, home: Path
) -> None:
    client = Client(
        server_url=inspected.server.ws_url,
        local_port=inspected.local.port,
        token=sqlite_token.value,
        home=home,
        log_format="text",
        name="text-inspect",
    )
    try:
        _, match = client.stdout.wait_for(r"^Inspector: http://127\.0\.0\.1:(\d+)$", REPORT_TIMEOUT)
        client.wait_active()
        response = rawclient.request(int(match[1]), "GET", "/", f"127.0.0.1:{match[1]}")
        assert response.status == 200
        assert response.value("Content-Security-Policy") is not None
    finally:
        client.stop()


def test_no_inspect_means_no_inspector(
    inspected: Inspected, sqlite_token: Token, home: Path
) -> None:
    client = Client(
        server_url=inspected.server.ws_url,
        local_port=inspected.local.port,
        token=sqlite_token.value,
        home=home,
        name="no-inspect",
        args=["--no-inspect"],
    )
    try:
        client.wait_active()
        assert client.events("inspector") == [
            {"event": "inspector", "url": None, "reason": "--no-inspect"}
        ]
    finally:
        client.stop()


# -- WebSockets -------------------------------------------------------------------------


def test_websocket_messages_are_listed(
    inspected: Inspected, ws_local: WsLocalServer, sqlite_token: Token, home: Path, uid: str
) -> None:
    """Direction, kind, size and a preview of each message, which ngrok does not show."""
    client = Client(
        server_url=inspected.server.ws_url,
        local_port=ws_local.port,
        token=sqlite_token.value,
        home=home,
        name="ws-inspect",
    )
    try:
        _, _, subdomain = client.wait_active()
        api = urlsplit(client.inspector_url()).port
        assert api is not None
        with connect(inspected.server.port, f"{subdomain}.localhost", f"/{uid}/echo") as ws:
            ws.send("hello inspector")
            assert ws.recv(timeout=REPORT_TIMEOUT) == "hello inspector"
            ws.send(b"\x00\x01\x02")
            assert ws.recv(timeout=REPORT_TIMEOUT) == b"\x00\x01\x02"
        client.wait_event("websocket", REPORT_TIMEOUT, where={"path": f"/{uid}/echo"})
        listed = json.loads(
            rawclient.request(api, "GET", "/inspector/entries", f"127.0.0.1:{api}").body
        )
        (row,) = [e for e in listed["entries"] if e["path"] == f"/{uid}/echo"]
        assert (row["kind"], row["method"], row["messages"]) == ("ws", "WS", 4)
        detail = json.loads(
            rawclient.request(
                api, "GET", f"/inspector/entries/{row['id']}", f"127.0.0.1:{api}"
            ).body
        )
        shown = [
            (m["direction"], m["text"], m["size"], m["preview"]) for m in detail["message_list"]
        ]
        # Each way in order; an echo may be recorded before the message it answers is
        # (a message is recorded once the local server took it, on another thread).
        assert [m for m in shown if m[0] == "in"] == [
            ("in", True, 15, "hello inspector"),
            ("in", False, 3, "00 01 02"),
        ]
        assert [m for m in shown if m[0] == "out"] == [
            ("out", True, 15, "hello inspector"),
            ("out", False, 3, "00 01 02"),
        ]
    finally:
        client.stop()


def test_a_replay_gets_the_host_header_choice_of_the_tunnel(
    inspected: Inspected, sqlite_database: Database, sqlite_token: Token, home: Path, uid: str
) -> None:
    """With --host-header rewrite, the replay shows the local server the local address too."""
    launcher = Launcher(sqlite_database, Layer("memory", {}), home)
    try:
        client = launcher.client(
            inspected.server,
            sqlite_token,
            inspected.local.port,
            name="rewrite",
            args=["--host-header", "rewrite"],
        )
        _, _, subdomain = client.wait_active()
        api = urlsplit(client.inspector_url()).port
        assert api is not None
        path = f"/{uid}/rewritten"
        rawclient.request(inspected.server.port, "GET", path, f"{subdomain}.localhost")
        client.wait_event("exchange", REPORT_TIMEOUT, where={"path": path})
        listed = json.loads(
            rawclient.request(api, "GET", "/api/requests/http", f"127.0.0.1:{api}").body
        )
        (captured,) = [r for r in listed["requests"] if r["request"]["uri"] == path]
        replay = json.dumps({"id": captured["id"]}).encode()
        response = rawclient.request(
            api, "POST", "/api/requests/http", f"127.0.0.1:{api}", [], replay
        )
        assert response.status == 204
        received = inspected.local.wait_count(lambda r: r.path == path, 2)
        local = f"127.0.0.1:{inspected.local.port}"
        assert [r.values("Host") for r in received] == [[local], [local]]
        assert received[1].values("X-Forwarded-Host") == [f"{subdomain}.localhost"]
    finally:
        launcher.close()
