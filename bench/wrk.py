"""Run wrk (https://github.com/wg/wrk, Debian package ``wrk``) and read its report."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

INSTALL_HINT = "wrk not found: apt-get install wrk"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


@dataclass(frozen=True)
class WrkResult:
    connections: int
    seconds: float
    requests: int
    rps: float
    #: None when no request completed.
    p50_ms: float | None
    p99_ms: float | None
    #: Socket errors (connect, read, write, timeout) summed.
    socket_errors: int
    #: Responses with a status outside 2xx and 3xx.
    non_2xx: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find() -> str | None:
    return shutil.which("wrk")


def run(
    url: str,
    *,
    host: str | None,
    connections: int,
    seconds: float,
    timeout_s: float = 5.0,
    headers: Sequence[str] = (),
) -> WrkResult:
    """Run wrk with one thread against ``url``; raise RuntimeError if it fails."""
    wrk = find()
    if wrk is None:
        raise RuntimeError(INSTALL_HINT)
    # One thread: the machine's cores are needed by the processes under test.
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout_s:g}s"]
    argv.append("--latency")
    if host is not None:
        argv += ["-H", f"Host: {host}"]
    for line in headers:  # "Name: value", e.g. the Authorization of a --basic-auth tunnel
        argv += ["-H", line]
    argv.append(url)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return parse(done.stdout, connections)


def parse(report: str, connections: int) -> WrkResult:
    """Read requests/s, p50, p99, the error counts and the request count from wrk's output."""
    total = re.search(r"(\d+) requests in " + _DURATION, report)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", report)
    p50 = re.search(r"^\s+50%\s+" + _DURATION, report, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+" + _DURATION, report, re.MULTILINE)
    if not (total and rps):
        raise RuntimeError(f"cannot read wrk's report:\n{report}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    return WrkResult(
        connections=connections,
        seconds=float(total[2]) * _UNITS[total[3]] / 1e3,
        requests=int(total[1]),
        rps=float(rps[1]),
        p50_ms=_ms(p50) if p50 else None,
        p99_ms=_ms(p99) if p99 else None,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
    )


def _ms(match: re.Match[str]) -> float:
    return float(match[1]) * _UNITS[match[2]]
