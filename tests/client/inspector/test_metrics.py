"""Metrics as ngrok reports them: go-metrics' rates and percentiles, time moved by hand."""

from __future__ import annotations

import math

import pytest

from client.inspector.metrics import TICK_SECONDS, TunnelMetrics, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_interpolate_as_go_metrics() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == 5.5
    assert percentile(values, 0.9) == pytest.approx(9.9)
    assert percentile(values, 0.99) == 10.0
    assert percentile([], 0.5) == 0.0
    assert percentile([7.0], 0.01) == 7.0


def test_counts_gauge_and_durations_in_nanoseconds() -> None:
    clock = Clock()
    metrics = TunnelMetrics(clock)
    for _ in range(3):
        metrics.stream_opened()
    metrics.stream_closed(0.010, http=True)
    metrics.stream_closed(0.030, http=True)
    document = metrics.document()
    assert document["conns"]["count"] == 3 and document["conns"]["gauge"] == 1
    assert document["http"]["count"] == 2
    assert document["http"]["p50"] == 20_000_000
    assert document["http"]["p99"] == 30_000_000
    assert set(document["http"]) == {
        "count",
        "rate1",
        "rate5",
        "rate15",
        "p50",
        "p90",
        "p95",
        "p99",
    }


def test_rates_are_per_second_after_a_tick_and_decay() -> None:
    clock = Clock()
    metrics = TunnelMetrics(clock)
    for _ in range(10):
        metrics.stream_opened()
        metrics.stream_closed(0.001, http=True)
    assert metrics.document()["http"]["rate1"] == 0.0  # no tick yet
    clock.now += TICK_SECONDS
    first = metrics.document()["http"]
    assert first["rate1"] == first["rate15"] == 10 / TICK_SECONDS
    clock.now += 60  # a quiet minute: the 1-minute rate falls by e
    later = metrics.document()["http"]
    assert later["rate1"] == pytest.approx(2 / math.e, rel=1e-9)
    assert later["rate1"] < later["rate5"] < later["rate15"] < 2


def test_a_long_quiet_spell_decays_to_nothing_quickly() -> None:
    clock = Clock()
    metrics = TunnelMetrics(clock)
    metrics.stream_opened()
    clock.now += TICK_SECONDS
    metrics.document()
    clock.now += 365 * 24 * 3600
    assert metrics.document()["conns"]["rate15"] == pytest.approx(0.0, abs=1e-12)
