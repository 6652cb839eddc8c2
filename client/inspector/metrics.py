"""The tunnel's metrics as ngrok's ``/api/tunnels`` reports them. No I/O.

ngrok computes them with go-metrics, and scripts compare them across agents, so
the arithmetic is go-metrics': rates are exponentially weighted moving averages
over 1, 5 and 15 minutes, ticked every 5 seconds, in events per second;
percentiles are of a sample of recent durations, in nanoseconds, interpolated as
``SamplePercentiles`` does. The clock is a seam, so tests move time by hand.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]

#: Seconds between two ticks of a rate (go-metrics' ``EWMA.Tick``).
TICK_SECONDS = 5.0
#: Durations kept for the percentiles (go-metrics' default reservoir size).
SAMPLE_SIZE = 1028
#: Ticks caught up at once after a quiet spell; past it every rate has decayed to 0.
MAX_CATCH_UP_TICKS = 2000
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


class Rate:
    """Events per second, averaged over ``minutes`` with exponential decay."""

    def __init__(self, minutes: float) -> None:
        self._alpha = 1 - math.exp(-TICK_SECONDS / 60 / minutes)
        self._uncounted = 0
        self._rate = 0.0
        self._started = False

    def mark(self, count: int = 1) -> None:
        self._uncounted += count

    def tick(self) -> None:
        instant = self._uncounted / TICK_SECONDS
        self._uncounted = 0
        if self._started:
            self._rate += self._alpha * (instant - self._rate)
        else:
            self._rate, self._started = instant, True

    def stop(self) -> None:
        """What many quiet ticks come to: nothing."""
        self._uncounted, self._rate = 0, 0.0

    @property
    def per_second(self) -> float:
        return self._rate


def percentile(ordered: list[float], p: float) -> float:
    """go-metrics' percentile of an ascending list: interpolated between neighbours."""
    if not ordered:
        return 0.0
    position = p * (len(ordered) + 1)
    if position < 1:
        return ordered[0]
    if position >= len(ordered):
        return ordered[-1]
    lower, upper = ordered[int(position) - 1], ordered[int(position)]
    return lower + (position - math.floor(position)) * (upper - lower)


class Timer:
    """A count, three rates and a sample of durations: go-metrics' Timer."""

    def __init__(self) -> None:
        self.count = 0
        self.rates = {"rate1": Rate(1), "rate5": Rate(5), "rate15": Rate(15)}
        self._durations: deque[float] = deque(maxlen=SAMPLE_SIZE)

    def mark(self) -> None:
        # The rates take the count since the last tick all at once (tick), so an
        # event costs one addition here: this runs on the tunnel's threads.
        self.count += 1

    def duration(self, seconds: float) -> None:
        self._durations.append(seconds * 1e9)

    def tick(self, marked: int) -> None:
        """One tick of every rate, with ``marked`` events since the last."""
        for rate in self.rates.values():
            rate.mark(marked)
            rate.tick()

    def stop(self) -> None:
        for rate in self.rates.values():
            rate.stop()

    def document(self) -> dict[str, Any]:
        ordered = sorted(self._durations)
        doc: dict[str, Any] = {"count": self.count}
        doc.update({name: rate.per_second for name, rate in self.rates.items()})
        doc.update({name: round(percentile(ordered, p)) for name, p in PERCENTILES.items()})
        return doc


class TunnelMetrics:
    """``conns``: every stream (HTTP or WebSocket) opened, with a gauge of those open and
    their durations; ``http``: every HTTP exchange ended, with its duration."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._conns = Timer()
        self._gauge = 0
        self._http = Timer()
        self._last_tick = clock()
        #: Counts at the last tick: what each tick adds to the rates is the difference.
        self._ticked = (0, 0)

    def stream_opened(self) -> None:
        with self._lock:
            self._catch_up()
            self._conns.mark()
            self._gauge += 1

    def stream_closed(self, seconds: float, http: bool) -> None:
        with self._lock:
            self._catch_up()
            self._gauge -= 1
            self._conns.duration(seconds)
            if http:
                self._http.mark()
                self._http.duration(seconds)

    def document(self) -> dict[str, Any]:
        """``{"conns": {count, gauge, rate1, ...}, "http": {count, rate1, ...}}``."""
        with self._lock:
            self._catch_up()
            conns = self._conns.document()
            conns = {"count": conns.pop("count"), "gauge": self._gauge, **conns}
            return {"conns": conns, "http": self._http.document()}

    def _catch_up(self) -> None:
        """Run the ticks that fell due since the last one (ticks are lazy: no timer thread)."""
        due = int((self._clock() - self._last_tick) // TICK_SECONDS)
        if due <= 0:
            return
        self._last_tick += due * TICK_SECONDS
        # Events since the last tick all count in the first one due (go-metrics ticks
        # on a timer; here a quiet spell is caught up when someone next looks).
        conns, http = self._conns.count - self._ticked[0], self._http.count - self._ticked[1]
        self._ticked = (self._conns.count, self._http.count)
        for _ in range(min(due, MAX_CATCH_UP_TICKS)):
            self._conns.tick(conns)
            self._http.tick(http)
            conns = http = 0
        if due > MAX_CATCH_UP_TICKS:
            self._conns.stop()
            self._http.stop()
