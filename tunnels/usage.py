"""What each token's tunnels carry, per day (UTC): requests, bytes in and out, refusals.

Counted where an exchange with a tunnel host ends (the edge's
:class:`~tunnels.edge.metering.Meter`), added up in memory per (token, day) in each
process, and written to ``tokens.DailyUsage`` every ``LUMINET_USAGE_FLUSH_SECONDS``
by a thread of its own: never a database write per request, and never one on the
event loop. Each process adds its own counts to the shared rows (``F()``
increments), so no Redis is needed. A write that fails keeps its counts for the
next flush; the server flushes once more when it stops (``flush_at_exit``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F

logger = logging.getLogger(__name__)


def _today() -> date:
    """The day (UTC) usage is counted for now; a seam for tests."""
    return datetime.now(UTC).date()


@dataclass
class Counts:
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refusals: int = 0

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.refusals += other.refusals


Key = tuple[int, date]


class TokenGone(Exception):
    """The token of some counts no longer exists: they have nowhere to go."""


def write_counts(token_id: int, day: date, counts: Counts) -> None:
    """Add ``counts`` to the token's row for ``day``, creating it if needed.

    An upsert: an UPDATE with ``F()`` increments, else an INSERT; an INSERT that
    loses a race with another process's becomes the UPDATE again.
    """
    from tokens.models import DailyUsage, Token

    increments = {
        "requests": F("requests") + counts.requests,
        "bytes_in": F("bytes_in") + counts.bytes_in,
        "bytes_out": F("bytes_out") + counts.bytes_out,
        "refusals": F("refusals") + counts.refusals,
    }
    rows = DailyUsage.objects.filter(token_id=token_id, day=day)
    if rows.update(**increments):
        return
    if not Token.objects.filter(pk=token_id).exists():
        raise TokenGone(token_id)
    try:
        with transaction.atomic():
            DailyUsage.objects.create(
                token_id=token_id,
                day=day,
                requests=counts.requests,
                bytes_in=counts.bytes_in,
                bytes_out=counts.bytes_out,
                refusals=counts.refusals,
            )
    except IntegrityError:
        if not rows.update(**increments):
            raise


class UsageCounter:
    """Counts per (token, day) in memory, taken out only once written."""

    def __init__(
        self,
        write: Callable[[int, date, Counts], None] = write_counts,
        today: Callable[[], date] = _today,
    ) -> None:
        self._write = write
        self._today = today
        self._lock = threading.Lock()
        #: Serialises flushes (the thread's and the one at exit).
        self._flushing = threading.Lock()
        self._counts: dict[Key, Counts] = {}

    def add(self, token_id: int, counts: Counts) -> None:
        key = (token_id, self._today())
        with self._lock:
            held = self._counts.get(key)
            if held is None:
                self._counts[key] = counts
            else:
                held.add(counts)

    def pending(self) -> dict[Key, Counts]:
        """A copy of the counts not yet written."""
        with self._lock:
            return {key: Counts(**vars(counts)) for key, counts in self._counts.items()}

    def flush(self) -> int:
        """Write what is counted; return how many rows were written.

        Each (token, day) is taken out before its write and put back if the write
        fails, so what is counted meanwhile is never lost, and never written twice.
        """
        written = 0
        with self._flushing:
            with self._lock:
                taken, self._counts = self._counts, {}
            failed: Exception | None = None
            for (token_id, day), counts in taken.items():
                try:
                    self._write(token_id, day, counts)
                    written += 1
                except TokenGone:
                    logger.info("usage of deleted token %d dropped", token_id)
                except Exception as exc:  # the database is down or locked: keep them
                    failed = exc
                    with self._lock:
                        held = self._counts.setdefault((token_id, day), Counts())
                        held.add(counts)
            if failed is not None:
                logger.warning("usage flush failed, kept for the next one: %r", failed)
        return written


class Flusher:
    """A daemon thread that flushes a counter every ``interval`` seconds until stopped."""

    def __init__(self, counter: UsageCounter, interval: float) -> None:
        self._counter = counter
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._flush()
            except Exception:  # a bug of ours: the next flush tries again
                logger.exception("usage flush failed")

    def _flush(self) -> None:
        close_old_connections()
        try:
            self._counter.flush()
        finally:
            close_old_connections()

    def stop(self) -> None:
        """Stop the thread and flush what is left, on the calling thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 10)
        self._flush()


_counter = UsageCounter()
_flusher: Flusher | None = None
_flusher_lock = threading.Lock()


def _counted(token_id: int | None, counts: Counts) -> None:
    global _flusher
    if token_id is None:
        return  # no tunnel, hence nobody's usage (a request for an unknown subdomain)
    _counter.add(token_id, counts)
    if _flusher is None:
        with _flusher_lock:
            if _flusher is None:
                _flusher = Flusher(_counter, settings.LUMINET_USAGE_FLUSH_SECONDS)
                _flusher.start()


def count_exchange(token_id: int | None, bytes_in: int, bytes_out: int) -> None:
    """One public request (or WebSocket) of ``token_id``'s tunnel ended."""
    _counted(token_id, Counts(requests=1, bytes_in=bytes_in, bytes_out=bytes_out))


def count_refusal(token_id: int | None) -> None:
    """A public request to ``token_id``'s tunnel was refused at the edge (a rule, a limit)."""
    _counted(token_id, Counts(refusals=1))


def pending() -> dict[Key, Counts]:
    """This process's counts not yet written to the database."""
    return _counter.pending()


def flush_at_exit() -> None:
    """Stop the periodic flush and write what is left: the server calls this as it stops."""
    global _flusher
    with _flusher_lock:
        flusher, _flusher = _flusher, None
    if flusher is not None:
        flusher.stop()
