"""Failed tunnel authentications are logged without flooding the log."""

import logging

from tunnels.tunnel.authlog import WINDOW, FailedAuthLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_failure_is_logged_and_a_burst_becomes_one_line(caplog):
    """155 failures in a second from one address are two lines, the second a count."""
    clock = Clock()
    log = FailedAuthLog(clock)
    with caplog.at_level(logging.WARNING, logger="tunnels.tunnel.session"):
        for _ in range(155):
            log.failed("203.0.113.9")
        assert [r.getMessage() for r in caplog.records] == ["tunnel auth failed from 203.0.113.9"]
        clock.now += WINDOW
        log.failed("203.0.113.9")
    assert caplog.records[-1].getMessage() == (
        "tunnel auth failed from 203.0.113.9 155 more times in the last 60 s"
    )
    assert len(caplog.records) == 2


def test_each_address_gets_its_own_first_line(caplog):
    log = FailedAuthLog(Clock())
    with caplog.at_level(logging.WARNING, logger="tunnels.tunnel.session"):
        log.failed("203.0.113.9")
        log.failed("198.51.100.4")
    assert len(caplog.records) == 2
