"""The usage counter: counts per token and day in memory, taken out only once written."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date

from tunnels import usage
from tunnels.edge.metering import Meter
from tunnels.usage import Counts, UsageCounter

DAY = date(2026, 12, 1)


class Database:
    """A stand-in for ``DailyUsage`` that can be made to fail."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, date], Counts] = {}
        self.failing = False

    def write(self, token_id: int, day: date, counts: Counts) -> None:
        if self.failing:
            raise OSError("database is locked")
        self.rows.setdefault((token_id, day), Counts()).add(counts)


def test_counts_add_up_per_token_and_day() -> None:
    database = Database()
    counter = UsageCounter(database.write, today=lambda: DAY)
    counter.add(1, Counts(requests=1, bytes_in=10, bytes_out=20))
    counter.add(1, Counts(refusals=1))
    counter.add(2, Counts(requests=1, bytes_out=5))
    assert counter.flush() == 2
    assert database.rows == {
        (1, DAY): Counts(requests=1, bytes_in=10, bytes_out=20, refusals=1),
        (2, DAY): Counts(requests=1, bytes_out=5),
    }
    assert counter.pending() == {}


def test_a_failed_write_keeps_its_counts_for_the_next_flush() -> None:
    database = Database()
    counter = UsageCounter(database.write, today=lambda: DAY)
    counter.add(1, Counts(requests=1, bytes_in=10))
    database.failing = True
    assert counter.flush() == 0
    counter.add(1, Counts(requests=1, bytes_in=5))
    assert counter.pending() == {(1, DAY): Counts(requests=2, bytes_in=15)}
    database.failing = False
    assert counter.flush() == 1
    assert database.rows == {(1, DAY): Counts(requests=2, bytes_in=15)}
    assert counter.flush() == 0  # nothing written twice


def test_the_meter_counts_an_exchange_for_the_routes_token() -> None:
    token_id = 10**12 + secrets.randbelow(10**9)  # nobody else's

    async def exchange() -> None:
        meter = Meter("http")
        meter.token_id = token_id

        async def receive() -> dict:
            return {"type": "http.request", "body": b"12345", "more_body": False}

        async def send(message: dict) -> None:
            pass

        await meter.receive(receive)()
        await meter.send(send)({"type": "http.response.start", "status": 200, "headers": []})
        await meter.send(send)({"type": "http.response.body", "body": b"abc"})
        meter.done()

    asyncio.run(exchange())
    counted = {key: counts for key, counts in usage.pending().items() if key[0] == token_id}
    assert list(counted.values()) == [Counts(requests=1, bytes_in=5, bytes_out=3)]


def test_nobodys_exchange_is_not_counted() -> None:
    before = usage.pending()
    usage.count_exchange(None, 100, 100)
    usage.count_refusal(None)
    assert usage.pending() == before
