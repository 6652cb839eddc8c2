"""A private ``redis-server`` that a test may stop and restart: never the shared one.

It listens on a Unix socket in the test's own directory (no TCP port at all), keeps
nothing on disk, and is stopped by whoever started it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

#: Seconds for redis-server to answer PING after start.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self._binary = binary
        self.socket = directory / "redis.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start (or restart) with an empty data set; return once it answers PING."""
        assert self._proc is None, "already running"
        self._proc = subprocess.Popen(
            [
                self._binary,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1) as client:
                    client.ping()
                return
            except redis.RedisError:
                if self._proc.poll() is not None:
                    raise AssertionError("redis-server exited at start") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"redis-server silent after {START_TIMEOUT} s") from None
                time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Kill it outright (a crash, not a shutdown) and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(STOP_TIMEOUT)
        self.socket.unlink(missing_ok=True)
