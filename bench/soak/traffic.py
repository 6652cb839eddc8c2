"""Steady public traffic through the tunnels: every kind, every answer checked.

Worker threads share one pace, ``rate`` operations a second in all. Each picks a
live tunnel and one of the two server processes at random (so about half the
requests cross from one process to the other over Redis), and one kind:

- ``small``: ``GET /small/<text>``, answer ``small <text>``;
- ``download``: ``GET /bytes/<size>/<seed>``, length and sha256 of the pattern;
- ``upload``: ``POST /upload`` of random bytes, sometimes chunked, answer the
  length and sha256 the local server computed;
- ``sse``: ``GET /sse/...``, ``text/event-stream`` and every event, in order;
- ``websocket``: a few text and binary messages echoed as sent, then a close
  answered with 1000.

Each public connection serves one operation, so a keep-alive connection closed by
the server between two requests can never be mistaken for a failure. Failures
are kept with their times; :meth:`Traffic.summary` tells those that overlap a
churn of their tunnel (on purpose) from the rest.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import requests
import websocket

from .fleet import Fleet
from .local import pattern_digest, sse_events

#: Seconds any one network operation may take.
TIMEOUT = 30.0
#: Operation kinds and their shares of the traffic.
SHARES = {"small": 50, "download": 12, "upload": 12, "sse": 12, "websocket": 14}
#: Sizes of downloads and uploads.
SIZES = (16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
#: Download patterns (``bench.soak.local.pattern``).
SEEDS = 8
#: Sizes of binary WebSocket messages.
WS_SIZES = (1, 1000, 64 * 1024, 300 * 1000)
#: Characters of text WebSocket messages: some take two, three or four bytes in UTF-8.
TEXT = "abcdefghijklmnopqrstuvwxyz0123456789 éß€🙂"
#: Bytes per piece of a chunked upload.
PIECE = 64 * 1024
#: Failures kept with their details; the rest are only counted.
MAX_KEPT = 100_000


class Mismatch(Exception):
    """An answer that is not the one asked for; the message says how it differs."""


@dataclass(frozen=True)
class Failed:
    kind: str
    subdomain: str
    entry_port: int
    started: float
    ended: float
    error: str


Operation = Callable[[int, str, random.Random], int]


class Traffic:
    """The workers; ``start()``, ``pause()``/``resume()`` around quiet samples, ``stop()``."""

    def __init__(self, fleet: Fleet, ports: list[int], *, rate: float, workers: int) -> None:
        self._fleet = fleet
        self._ports = ports
        self._gap = 1.0 / rate
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._in_flight = 0
        self._next = 0.0
        self.done: dict[str, int] = {kind: 0 for kind in [*SHARES, "sweep"]}
        self.moved = 0
        self.latencies: dict[str, list[float]] = {kind: [] for kind in [*SHARES, "sweep"]}
        self.failures: list[Failed] = []
        self.failure_count = 0

    # -- the workers ---------------------------------------------------------------

    def start(self) -> None:
        self._next = time.monotonic()
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"traffic-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        rng = random.Random()
        kinds, weights = list(SHARES), list(SHARES.values())
        while (due := self._take_turn()) is not None:
            try:
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                subdomain = self._fleet.pick(rng)
                if subdomain is not None:
                    kind = rng.choices(kinds, weights)[0]
                    self.run(kind, subdomain, rng.choice(self._ports), rng)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _take_turn(self) -> float | None:
        """Wait while paused; return when this worker's next operation is due (None: stop)."""
        with self._cond:
            while self._paused and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            now = time.monotonic()
            # Behind by more than a second (slow answers): start afresh, never burst.
            self._next = max(self._next + self._gap, now - 1.0)
            self._in_flight += 1
            return self._next

    def run(self, kind: str, subdomain: str, port: int, rng: random.Random) -> None:
        """Do one operation of ``kind`` and record how it went."""
        operation = OPERATIONS["small" if kind == "sweep" else kind]
        started = time.monotonic()
        try:
            moved = operation(port, f"{subdomain}.localhost", rng)
        except (Mismatch, requests.RequestException, websocket.WebSocketException, OSError) as exc:
            failed = Failed(kind, subdomain, port, started, time.monotonic(), _describe(exc))
            with self._cond:
                self.failure_count += 1
                if len(self.failures) < MAX_KEPT:
                    self.failures.append(failed)
            return
        ended = time.monotonic()
        with self._cond:
            self.done[kind] += 1
            self.moved += moved
            self.latencies[kind].append(ended - started)

    def pause(self, timeout: float = TIMEOUT + 10) -> None:
        """Stop starting operations; return once none is in flight."""
        with self._cond:
            self._paused = True
            if not self._cond.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} operations still running after {timeout} s")

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._next = time.monotonic()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(TIMEOUT + 5)

    def sweep(self, subdomains: list[str]) -> None:
        """One small request to each tunnel, entering at each server in turn."""
        rng = random.Random()
        for n, subdomain in enumerate(subdomains):
            self.run("sweep", subdomain, self._ports[n % len(self._ports)], rng)

    # -- the figures -----------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """Operations done and failed so far."""
        with self._cond:
            return sum(self.done.values()), self.failure_count

    def summary(self, seconds: float) -> dict[str, Any]:
        """Operations per kind, latencies, and failures told apart by cause."""
        with self._cond:
            failures = list(self.failures)
            done = dict(self.done)
            latencies = {kind: sorted(values) for kind, values in self.latencies.items()}
        on_purpose: list[Failed] = []
        unexpected: list[Failed] = []
        for failed in failures:
            churned = self._fleet.on_purpose(failed.subdomain, failed.started, failed.ended)
            (on_purpose if churned else unexpected).append(failed)
        kinds: dict[str, Any] = {}
        for kind, count in done.items():
            values = latencies[kind]
            kinds[kind] = {
                "ok": count,
                "failed_on_purpose": sum(f.kind == kind for f in on_purpose),
                "failed": sum(f.kind == kind for f in unexpected),
                "p50_ms": round(statistics.median(values) * 1e3, 1) if values else None,
                "p99_ms": round(values[int(len(values) * 0.99)] * 1e3, 1) if values else None,
                "max_ms": round(values[-1] * 1e3, 1) if values else None,
            }
        total = sum(done.values()) + len(failures)
        return {
            "operations": total,
            "ok": sum(done.values()),
            "failed_on_purpose": len(on_purpose),
            "failed": len(unexpected),
            "uncounted_failures": self.failure_count - len(failures),
            "per_second": round(total / seconds, 2) if seconds else None,
            "mb_moved": round(self.moved / 1e6, 1),
            "kinds": kinds,
            "unexpected": [asdict(f) for f in unexpected[:100]],
            "on_purpose_examples": [asdict(f) for f in on_purpose[:10]],
        }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:400]


# -- the operations: each returns the bytes it moved, or raises -------------------------


def _url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def _headers(host: str) -> dict[str, str]:
    return {"Host": host, "Connection": "close"}


def _refused(response: requests.Response, what: str) -> Mismatch:
    error = response.headers.get("Luminet-Error", "")
    return Mismatch(f"{what}: {response.status_code} {error} {response.content[:120]!r}".strip())


def _text(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012x}"


def small(port: int, host: str, rng: random.Random) -> int:
    text = _text(rng)
    response = requests.get(_url(port, f"/small/{text}"), headers=_headers(host), timeout=TIMEOUT)
    if response.status_code != 200 or response.content != f"small {text}".encode():
        raise _refused(response, "small")
    return len(response.content)


def download(port: int, host: str, rng: random.Random) -> int:
    size, seed = rng.choice(SIZES), rng.randrange(SEEDS)
    url = _url(port, f"/bytes/{size}/{seed}")
    with requests.get(url, headers=_headers(host), stream=True, timeout=TIMEOUT) as response:
        if response.status_code != 200:
            raise _refused(response, "download")
        digest = hashlib.sha256()
        got = 0
        for data in response.iter_content(PIECE):
            digest.update(data)
            got += len(data)
    if got != size or digest.hexdigest() != pattern_digest(size, seed):
        raise Mismatch(f"download of {size} bytes delivered {got}, sha256 {digest.hexdigest()}")
    return got


def upload(port: int, host: str, rng: random.Random) -> int:
    size = rng.choice(SIZES)
    data = rng.randbytes(size)
    chunked = rng.random() < 0.3
    body: bytes | Iterator[bytes] = (
        (data[i : i + PIECE] for i in range(0, size, PIECE)) if chunked else data
    )
    response = requests.post(
        _url(port, "/upload"), data=body, headers=_headers(host), timeout=TIMEOUT
    )
    expected = f"{size} {hashlib.sha256(data).hexdigest()}".encode()
    if response.status_code != 200 or response.content != expected:
        raise _refused(response, f"upload of {size} bytes{' chunked' if chunked else ''}")
    return size


def sse(port: int, host: str, rng: random.Random) -> int:
    count, pause, text = rng.randint(3, 12), rng.choice((10, 50, 100)), _text(rng)
    url = _url(port, f"/sse/{count}/{pause}/{text}")
    with requests.get(url, headers=_headers(host), stream=True, timeout=TIMEOUT) as response:
        kind = response.headers.get("Content-Type", "")
        if response.status_code != 200 or kind != "text/event-stream":
            raise _refused(response, f"sse ({kind})")
        body = b"".join(response.iter_content(None))
    expected = b"".join(sse_events(count, text))
    if body != expected:
        raise Mismatch(f"sse: {len(body)} bytes, expected {len(expected)}: {body[-120:]!r}")
    return len(body)


def websocket_echo(port: int, host: str, rng: random.Random) -> int:
    url = f"ws://127.0.0.1:{port}/ws/{_text(rng)}"
    ws = websocket.create_connection(url, host=host, timeout=TIMEOUT)
    moved = 0
    try:
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.5:
                message = "".join(rng.choices(TEXT, k=rng.randint(0, 2000))).encode()
                ws.send(message, websocket.ABNF.OPCODE_TEXT)
                expected = (websocket.ABNF.OPCODE_TEXT, message)
            else:
                message = rng.randbytes(rng.choice(WS_SIZES))
                ws.send_binary(message)
                expected = (websocket.ABNF.OPCODE_BINARY, message)
            opcode, data = ws.recv_data()
            if (opcode, data) != expected:
                raise Mismatch(
                    f"websocket: sent {len(message)} bytes (opcode {expected[0]}), "
                    f"got {len(data)} (opcode {opcode})"
                )
            moved += 2 * len(message)
        ws.close(websocket.STATUS_NORMAL)
        frame = ws.close_frame
        data = frame.data if frame is not None else b""
        if isinstance(data, str):
            data = data.encode()
        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
        if code != websocket.STATUS_NORMAL:
            raise Mismatch(f"websocket: the close was answered with {code}, not 1000")
    finally:
        ws.shutdown()
    return moved


OPERATIONS: dict[str, Operation] = {
    "small": small,
    "download": download,
    "upload": upload,
    "sse": sse,
    "websocket": websocket_echo,
}
