"""Regression tests for the three HTTP defects of stock daphne that LuminetServer fixes.

Each test runs against our server and, for contrast, against stock daphne, where
it is expected to fail (``xfail(strict=True)``): that shows the test can fail, and
a daphne upgrade that fixes a defect (or a change that breaks one of our hooks)
shows up here first. The servers run ``tests.server.app`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness import PYTHON, Process, Server, clean_environ
from tests.e2e.streaming import (
    ABORTED,
    CHUNK,
    Pacer,
    http_connection,
    pattern,
    read_digest,
)

pytestmark = pytest.mark.timeout(60)

MB = 1024 * 1024
#: Peak RSS the server must stay under while a large body passes (the issue's bound).
RSS_BOUND = 150 * MB
#: The largest body chunk one receive() may hand the application.
MAX_RECEIVE = 1 * MB
START_TIMEOUT = 20.0
#: What tests.server.runner prints once it listens.
READY_RE = r"^LISTENING [\d.]+:(\d+)$"
#: Seconds within which a refusal must come: far below any idle timeout.
FAST = 5.0


def servers(defect: str) -> list:
    """Parameters: our server, and stock daphne, expected to fail because of ``defect``."""
    return [
        pytest.param("luminet"),
        pytest.param(
            "stock", marks=pytest.mark.xfail(strict=True, reason=f"stock daphne: {defect}")
        ),
    ]


@dataclass
class Served:
    """The test application served by one server process."""

    process: Process
    port: int

    def connection(self, timeout: float = 10.0, rcvbuf: int | None = None):
        return http_connection(self.port, timeout=timeout, rcvbuf=rcvbuf)

    def get_json(self, path: str) -> dict:
        conn = self.connection()
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            return json.loads(response.read())
        finally:
            conn.close()


class Servers:
    """Starts servers on the test application; ``close()`` stops them all."""

    def __init__(self) -> None:
        self._started: list[Process] = []
        self._shared: dict[str, Served] = {}

    def start(self, kind: str, http_timeout: int | None = None, *limits: str) -> Served:
        """``limits`` are runner flags, e.g. ``"--head-timeout", "1"``."""
        argv = [PYTHON, "-m", "tests.server.runner", kind, *limits]
        if http_timeout is not None:
            argv += ["--http-timeout", str(http_timeout)]
        process = Server(f"{kind}-server", argv, clean_environ({}), ready=READY_RE, merge=False)
        self._started.append(process)
        return Served(process, process.wait_ready(START_TIMEOUT))

    def shared(self, kind: str) -> Served:
        """One server of ``kind`` for every test that neither measures nor breaks it."""
        if kind not in self._shared:
            self._shared[kind] = self.start(kind)
        return self._shared[kind]

    def close(self) -> None:
        for process in self._started:
            process.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start a fresh server (its peak RSS is its own); stopped after the test."""
    servers = Servers()
    try:
        yield servers.start
    finally:
        servers.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[Callable[[str], Served]]:
    """A server of each kind shared by the module's tests; stopped after them."""
    servers = Servers()
    try:
        yield servers.shared
    finally:
        servers.close()


# -- defect 1: no backpressure ---------------------------------------------------


@pytest.mark.parametrize("kind", servers("defect 1: send() never waits for a slow reader"))
def test_slow_reader_keeps_server_memory_bounded(serve, kind: str) -> None:
    """A 300 MB response to a 10 MB/s reader never makes the server hold much of it."""
    server = serve(kind)
    conn = server.connection(rcvbuf=64 * 1024)
    try:
        conn.request("GET", "/stream?size=300000000")
        response = conn.getresponse()
        assert response.status == 200
        pacer = Pacer(10 * MB)
        deadline = time.monotonic() + 2.0
        peak = server.process.peak_rss()
        # Stock daphne passes the bound within a second; stop as soon as it does.
        while time.monotonic() < deadline and peak < RSS_BOUND:
            chunk = response.read1(CHUNK)
            assert chunk, "the response ended early"
            pacer.account(len(chunk))
            peak = server.process.peak_rss()
    finally:
        conn.close()
    assert peak < RSS_BOUND, f"server peaked at {peak / MB:.0f} MB for a slow reader"
    # The stream was paused and resumed all along, not stalled.
    assert pacer.done > 10 * MB, f"only {pacer.done / MB:.1f} MB arrived in 2 s"


# -- defect 2: uploads pushed to the application all at once --------------------


def upload(server: Served, size: int, content_type: str) -> tuple[dict, str]:
    """POST ``size`` bytes of pattern with Content-Length; return the answer and our digest."""
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for chunk in pattern(size):
            digest.update(chunk)
            yield chunk

    conn = server.connection(timeout=30)
    try:
        headers = {"Content-Length": str(size), "Content-Type": content_type}
        conn.request("POST", "/upload", body=body(), headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.read()[:500]
        return json.loads(response.read()), digest.hexdigest()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", servers("defect 2: the whole upload is queued at once"))
def test_upload_reaches_app_in_chunks(serve, kind: str) -> None:
    """A 200 MB upload reaches the application whole, a chunk per receive(), in bounded memory."""
    server = serve(kind)
    size = 200_000_000
    answer, digest = upload(server, size, "application/octet-stream")
    assert (answer["total"], answer["sha256"]) == (size, digest)
    assert answer["largest"] <= MAX_RECEIVE
    peak = server.process.peak_rss()
    assert peak < RSS_BOUND, f"server peaked at {peak / MB:.0f} MB for a {size // MB} MB upload"


@pytest.mark.parametrize(
    "kind", servers("defect 2, and Twisted parses form bodies into request.args")
)
def test_form_upload_is_not_parsed_in_memory(serve, kind: str) -> None:
    """A 50 MB form-encoded POST reaches the application without the server holding it."""
    server = serve(kind)
    before = server.process.peak_rss()
    size = 50_000_000
    answer, digest = upload(server, size, "application/x-www-form-urlencoded")
    assert (answer["total"], answer["sha256"]) == (size, digest)
    grown = server.process.peak_rss() - before
    assert grown < 25 * MB, f"server grew by {grown / MB:.0f} MB for a {size // MB} MB form"


@pytest.mark.parametrize(
    "kind", servers("Twisted answers a malformed multipart body with 400 itself")
)
def test_malformed_multipart_reaches_app_unchanged(shared, kind: str) -> None:
    """A multipart/form-data body that does not parse still reaches the application as sent."""
    server = shared(kind)
    body = b"--not-the-boundary\r\nthis is not multipart at all\r\n" * 100
    conn = server.connection()
    try:
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        conn.request("POST", "/upload", body=body, headers=headers)
        response = conn.getresponse()
        status, text = response.status, response.read()
    finally:
        conn.close()
    assert status == 200, text[:500]
    answer = json.loads(text)
    assert (answer["total"], answer["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


# -- defect 3: failures after the response started ------------------------------


def read_naively(response: http.client.HTTPResponse, limit: int) -> int:
    """Read until the connection says the body ended, as a careless client would."""
    total = 0
    while chunk := response.read1(CHUNK):
        total += len(chunk)
        assert total <= limit
    return total


@pytest.mark.parametrize(
    "target",
    [
        "/fail?sent=0&length=1000",
        "/fail?sent=100000&length=1000000",
        "/fail?sent=100000",
    ],
    ids=["before-any-byte", "content-length-cut-short", "chunked-cut-short"],
)
@pytest.mark.parametrize("kind", servers("defect 3: a failed response leaves the client hanging"))
def test_failure_mid_response_aborts_connection(shared, kind: str, target: str) -> None:
    """An application failing after http.response.start resets the connection at once."""
    server = shared(kind)
    conn = server.connection(timeout=1.2)
    try:
        started = time.monotonic()
        conn.request("GET", target)
        with pytest.raises(ABORTED):
            response = conn.getresponse()
            # Even a client that ignores Content-Length must not take this as complete.
            read_naively(response, limit=10 * MB)
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert elapsed < 1.0, f"the client learnt of the failure after {elapsed:.1f} s"


@pytest.mark.parametrize("kind", servers("defect 3: a late failure kills application_checker"))
def test_server_recovers_after_failure_mid_response(serve, kind: str) -> None:
    """After a failure mid-response the server answers requests and still reaps connections."""
    server = serve(kind)
    conn = server.connection(timeout=1.5)
    try:
        conn.request("GET", "/fail?sent=1000")
        # Ours resets at once; stock daphne hangs, and its checker dies meanwhile.
        with pytest.raises((*ABORTED, TimeoutError)):
            read_digest(conn.getresponse(), limit=MB)
    finally:
        conn.close()

    for _ in range(5):
        fresh = server.connection()
        try:
            fresh.request("GET", "/ok", headers={"Connection": "close"})
            response = fresh.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
        finally:
            fresh.close()

    # daphne's application_checker forgets finished connections once a second.
    deadline = time.monotonic() + 2.5
    while (count := server.get_json("/connections")["connections"]) > 2:
        if time.monotonic() > deadline:
            pytest.fail(f"the server still tracks {count} connections, all but one finished")
        time.sleep(0.1)  # polling interval


@pytest.mark.parametrize(
    "kind", servers("defect 3: --http-timeout cleanly ends a started response")
)
def test_timeout_mid_response_aborts_connection(serve, kind: str) -> None:
    """A started response that outlives --http-timeout is aborted, not cleanly truncated."""
    server = serve(kind, http_timeout=1)
    conn = server.connection(timeout=8)
    try:
        conn.request("GET", "/drip?chunks=80&interval=0.1")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(ABORTED):
            read_digest(response, limit=MB)
    finally:
        conn.close()


# -- requests Twisted cannot parse get an answer, at once (issue 8, defect 7) ----


def answer_to(served: Served, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection; return everything until the server closes."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=FAST) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: yes\r\n" * 1500 + b"\r\n", b"431"),
        (b"GET / HTTP/1.1\nHost: x\n\n", b"400"),
        (
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1" * 40 + b"\r\nabc",
            b"400",
        ),
    ],
    ids=["long-request-line", "long-header", "many-headers", "bare-lf", "overflowing-chunk"],
)  # fmt: skip
def test_unparseable_request_gets_its_status_at_once(shared, raw: bytes, status: bytes) -> None:
    """A request line past 16 kB is 414, a header section past it 431, bare LF line ends
    and chunk sizes past 64 bits 400: answered at once, never left to the idle timeout."""
    received = answer_to(shared("luminet"), raw)
    assert received.startswith(b"HTTP/1.1 " + status), received[:200]


def test_bare_lf_in_a_later_header_line_is_400(shared) -> None:
    received = answer_to(shared("luminet"), b"GET / HTTP/1.1\r\nHost: x\nX-Smuggled: y\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400"), received[:200]


@pytest.mark.parametrize("kind", servers("a HEAD answer past 64 KiB leaks its body"))
def test_a_long_head_answer_sends_no_body(shared, kind: str) -> None:
    """A HEAD answer whose GET body spans several messages sends none of it: the next
    response on the connection is read intact."""
    conn = shared(kind).connection()
    try:
        conn.request("HEAD", "/stream?size=200000")
        head = conn.getresponse()
        assert (head.status, head.getheader("Content-Length"), head.read()) == (200, "200000", b"")
        conn.request("GET", "/ok")
        after = conn.getresponse()
        assert (after.status, after.read()) == (200, b"ok")
    finally:
        conn.close()


# -- slow and many-connection attacks (issue 8, defect 5) ------------------------


def trickle(sock: socket.socket, piece: bytes, deadline: float) -> bytes:
    """Send ``piece`` every 0.2 s until the server answers or closes; return its bytes."""
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.sendall(piece)
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return b"<reset>"
        return data or b"<closed>"
    raise AssertionError("still open at the deadline")


@pytest.mark.parametrize("kind", servers("no deadline for a request head"))
def test_a_head_trickled_line_by_line_gets_408(serve, kind: str) -> None:
    """A head that has not arrived within the head timeout (here 1 s) is answered 408,
    however often a line trickles in."""
    served = serve(kind, None, "--head-timeout", "1")
    with socket.create_connection(("127.0.0.1", served.port), timeout=FAST) as sock:
        sock.sendall(b"GET /upload HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = trickle(sock, b"X-Slow: yes\r\n", started + 4)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


@pytest.mark.parametrize("kind", servers("no minimum body rate"))
def test_a_trickled_body_is_dropped(serve, kind: str) -> None:
    """A body below the minimum rate (here 1,000 B/s over 1 s windows) ends the
    connection; the application sees the caller leave."""
    served = serve(kind, None, "--body-rate-window", "1", "--min-body-rate", "1000")
    with socket.create_connection(("127.0.0.1", served.port), timeout=FAST) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        answer = trickle(sock, b"x" * 10, time.monotonic() + 4)
    assert answer in (b"<reset>", b"<closed>"), answer[:100]


EMPTY_UPLOAD = b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("kind", servers("no cap on connections per address"))
def test_connections_past_the_per_address_cap_get_503(serve, kind: str) -> None:
    """The fourth connection from one address with a cap of three gets 503; once one
    closes, a new one is served."""
    served = serve(kind, None, "--per-address", "3")
    held = [socket.create_connection(("127.0.0.1", served.port), timeout=FAST) for _ in range(3)]
    try:
        refused = answer_to(served, b"GET /upload HTTP/1.1\r\nHost: x\r\n\r\n")
        held.pop().close()
        deadline = time.monotonic() + FAST
        while True:  # the server notices the close a moment later
            again = answer_to(served, EMPTY_UPLOAD)
            if not again.startswith(b"HTTP/1.1 503") or time.monotonic() > deadline:
                break
    finally:
        for sock in held:
            sock.close()
    assert refused.startswith(b"HTTP/1.1 503"), refused[:100]
    assert again.startswith(b"HTTP/1.1 200"), again[:100]


# -- issue 8, defect 6: total memory bounded per stream only --------------------


def fill(socks: list[socket.socket], quiet: float = 0.5, deadline: float = 20.0) -> int:
    """Send on every socket until none has taken a byte for ``quiet`` seconds."""
    for sock in socks:
        sock.setblocking(False)
    block = bytes(64 * 1024)
    sent = 0
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        _, writable, _ = select.select([], socks, [], quiet)
        if not writable:
            return sent
        for sock in writable:
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(block)
    raise AssertionError(f"still taking bytes after {deadline} s ({sent} sent)")


def test_uploads_past_a_tunnels_budget_wait_on_tcp(serve) -> None:
    """Eight uploads to one host whose application reads nothing: the server holds
    about the host's budget (here 1 MiB), not a full 1 MiB pipe for each; an upload
    to another host goes through meanwhile, and what was held is released once the
    requests are answered."""
    budget = 1 * MB
    served = serve("luminet", None, "--tunnel-budget", str(budget))
    head = b"POST /hold HTTP/1.1\r\nHost: held.example\r\nContent-Length: 1000000000\r\n\r\n"
    socks = []
    try:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=FAST)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.sendall(head)
            socks.append(sock)
        fill(socks)
        held = served.get_json("/budget")["hosts"].get("held.example", 0)

        other = served.connection()
        body = b"".join(pattern(4 * MB))
        other.request("POST", "/upload", body=body, headers={"Host": "other.example"})
        answer = json.loads(other.getresponse().read())
        other.close()
    finally:
        for sock in socks:
            sock.close()
        served.get_json("/release")
    # One socket read (64 KiB) per connection may land past the budget.
    assert budget // 2 <= held <= budget + 8 * 64 * 1024, held
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    deadline = time.monotonic() + FAST
    while served.get_json("/budget")["total"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the closes a moment later
    assert served.get_json("/budget")["total"] == 0
