"""Usage per token and day in the database (``DailyUsage``), against real traffic: the
figures are exactly what a test sent, flushed periodically and when the server stops."""

from __future__ import annotations

import hashlib
import hmac
import signal
import time
from dataclasses import dataclass

import pytest

from . import rawclient
from .conftest import Database, Launcher, Token
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(60)

#: Seconds the figures may take to reach the database with a short flush interval.
FLUSH_DEADLINE = 15.0
#: The tunnel's webhook rule: unsigned requests are refused at the edge (refusals).
SECRET = "usage-e2e-secret"
WEBHOOK_RULE = ["--verify-webhook", f"github:{SECRET}"]


@dataclass(frozen=True)
class Usage:
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refusals: int = 0


def usage_of(database: Database, token: Token) -> Usage:
    """The token's usage summed over its days, read from the server's database."""
    [row] = database.execute(
        "SELECT COALESCE(SUM(u.requests), 0), COALESCE(SUM(u.bytes_in), 0), "
        "COALESCE(SUM(u.bytes_out), 0), COALESCE(SUM(u.refusals), 0) "
        "FROM tokens_dailyusage u JOIN tokens_token t ON t.id = u.token_id "
        "WHERE t.name = %s",
        (token.name,),
    )
    return Usage(*(int(value) for value in row))


def wait_usage(database: Database, token: Token, expected: Usage) -> Usage:
    """Poll the database until the token's usage is ``expected``; return the last read."""
    deadline = time.monotonic() + FLUSH_DEADLINE
    seen = usage_of(database, token)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = usage_of(database, token)
    return seen


def send_traffic(port: int, host: str, local: LocalServer, uid: str) -> Usage:
    """Three requests with known bodies each way; return what they add up to."""
    exchanges = [(b"", b"first answer"), (b"x" * 1000, b""), (b"y" * 70_000, b"z" * 200_000)]
    for number, (upload, download) in enumerate(exchanges):
        path = f"/{uid}/usage/{number}"
        local.route(path, Reply(body=download))
        signature = "sha256=" + hmac.new(SECRET.encode(), upload, hashlib.sha256).hexdigest()
        headers = [("X-Hub-Signature-256", signature)]
        response = rawclient.request(port, "POST", path, host, headers, body=upload)
        assert (response.status, response.body) == (200, download)
    return Usage(
        requests=len(exchanges),
        bytes_in=sum(len(upload) for upload, _ in exchanges),
        bytes_out=sum(len(download) for _, download in exchanges),
    )


def test_usage_in_the_database_matches_the_traffic_sent(
    launcher: Launcher, local_server: LocalServer, uid: str
) -> None:
    token = launcher.database.issue_token("e2e-usage")
    server = launcher.server(name="usage-server", LUMINET_USAGE_FLUSH_SECONDS="0.5")
    client = launcher.client(
        server, token, local_server.port, name="usage-client", args=WEBHOOK_RULE
    )
    _, _, subdomain = client.wait_active()

    exchanged = send_traffic(server.port, f"{subdomain}.localhost", local_server, uid)
    for _ in range(2):
        unsigned = rawclient.request(
            server.port, "POST", f"/{uid}/unsigned", f"{subdomain}.localhost", body=b"forged"
        )
        assert unsigned.value("Luminet-Error") == "webhook-signature"
    sent = Usage(exchanged.requests, exchanged.bytes_in, exchanged.bytes_out, refusals=2)
    # Nobody's tunnel: an answer of the edge's own that counts for no token.
    missing = rawclient.request(server.port, "GET", "/", f"missing-{uid}.localhost")
    assert missing.status == 502

    assert wait_usage(launcher.database, token, sent) == sent, launcher.describe()
    # A second round is added to the same day's row, not written over it.
    more = send_traffic(server.port, f"{subdomain}.localhost", local_server, uid + "b")
    both = Usage(
        requests=sent.requests + more.requests,
        bytes_in=sent.bytes_in + more.bytes_in,
        bytes_out=sent.bytes_out + more.bytes_out,
        refusals=sent.refusals,
    )
    assert wait_usage(launcher.database, token, both) == both, launcher.describe()


def test_usage_counted_since_the_last_flush_is_written_when_the_server_stops(
    launcher: Launcher, local_server: LocalServer, uid: str
) -> None:
    """SIGTERM: daphne stops, and the counts still in memory reach the database."""
    token = launcher.database.issue_token("e2e-usage-stop")
    # A flush interval no test outlives: only the one at the stop can write.
    server = launcher.server(name="usage-stop-server", LUMINET_USAGE_FLUSH_SECONDS="3600")
    client = launcher.client(
        server, token, local_server.port, name="usage-stop-client", args=WEBHOOK_RULE
    )
    _, _, subdomain = client.wait_active()

    sent = send_traffic(server.port, f"{subdomain}.localhost", local_server, uid)
    assert usage_of(launcher.database, token) == Usage()
    client.stop()
    server.stop(signal.SIGTERM)
    assert usage_of(launcher.database, token) == sent, server.describe()


def test_requests_refused_by_the_rate_limit_count_as_refusals(
    launcher: Launcher, local_server: LocalServer, uid: str
) -> None:
    token = launcher.database.issue_token("e2e-usage-limited")
    server = launcher.server(
        name="usage-limit-server",
        LUMINET_USAGE_FLUSH_SECONDS="0.5",
        LUMINET_TUNNEL_RATE_LIMIT="2",
        LUMINET_LIMIT_WINDOW_SECONDS="60",
    )
    client = launcher.client(server, token, local_server.port, name="usage-limit-client")
    host = f"{client.wait_active()[2]}.localhost"
    local_server.route(f"/{uid}/limited", Reply(body=b"ok!"))
    answered = 0
    for _ in range(10):  # 2 a window; a window may end meanwhile, so up to a few more
        response = rawclient.request(server.port, "GET", f"/{uid}/limited", host)
        if response.status == 429:
            assert response.value("Luminet-Error") == "rate-limited"
            break
        assert response.status == 200, response
        answered += 1
    else:
        pytest.fail("no 429 after 10 requests with a limit of 2")
    expected = Usage(requests=answered, bytes_out=3 * answered, refusals=1)
    assert wait_usage(launcher.database, token, expected) == expected, launcher.describe()
