"""Redis for the tests and the bench: keys of one's own on a shared server, or a private server.

The Redis at 127.0.0.1:6379 is shared (other test runs, the bench, other
engineers), so nothing here ever flushes it: each user puts its keys under a
prefix of its own and deletes those keys, and no others, when done. A test that
must kill Redis starts a private one instead.
"""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from pathlib import Path

import redis

from .errors import HarnessError
from .process import Process, clean_environ

#: Keys deleted per DELETE command.
DELETE_BATCH = 500
#: Seconds for a private redis-server to answer PING after start.
START_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


class KeyPrefix:
    """A key prefix of one's own on a shared Redis; ``close()`` deletes its keys, no others."""

    def __init__(self, url: str, tag: str) -> None:
        """Connect, and raise HarnessError if Redis does not answer; ``tag`` opens the prefix."""
        self.url = url
        self.prefix = f"{tag}-{uuid.uuid4().hex[:12]}:"
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._client.close()
            raise HarnessError(f"Redis is not reachable at {url}: {exc}") from exc

    @property
    def env(self) -> dict[str, str]:
        """The server settings that put a server's keys under this prefix."""
        return {"REDIS_URL": self.url, "LUMINET_REDIS_PREFIX": self.prefix}

    def close(self) -> int:
        """Delete the keys under the prefix (SCAN, then DELETE in batches); return how many."""
        deleted = 0
        batch: list[bytes] = []
        try:
            # SCAN visits each key at most a bounded number of times: the loop ends.
            for key in self._client.scan_iter(match=f"{self.prefix}*", count=DELETE_BATCH):
                batch.append(key)
                if len(batch) >= DELETE_BATCH:
                    deleted += self._client.delete(*batch)
                    batch.clear()
            if batch:
                deleted += self._client.delete(*batch)
        except redis.RedisError as exc:
            raise HarnessError(f"could not delete the keys under {self.prefix!r}: {exc}") from exc
        finally:
            self._client.close()
        return deleted


class PrivateRedis:
    """A ``redis-server`` of one's own that a test may kill and restart: never the shared one.

    It listens on a Unix socket in the given directory (no TCP port at all), keeps
    nothing on disk, and is stopped by whoever started it.
    """

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise HarnessError("redis-server is not installed")
        self._binary = binary
        self.directory = directory
        self.socket = directory / "redis.sock"
        self._process: Process | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start (or restart) with an empty data set; return once it answers PING."""
        if self._process is not None:
            raise HarnessError("the private redis-server is already running")
        argv = [
            self._binary,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        self._process = process = Process("redis-server", argv, clean_environ({}))
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            exited = not process.running()
            if exited or time.monotonic() > deadline:
                self.stop()
                why = "exited at start" if exited else f"did not answer in {START_TIMEOUT:g} s"
                raise HarnessError(f"redis-server {why}\n{process.describe()}")
            time.sleep(POLL_INTERVAL)

    def _answers(self) -> bool:
        try:
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1) as client:
                client.ping()
        except redis.RedisError:
            return False
        return True

    def freeze(self) -> None:
        """SIGSTOP it: connections are still accepted, nothing is answered (a Redis that
        hangs, or a network that drops packets)."""
        if self._process is None:
            raise HarnessError("the private redis-server is not running")
        self._process.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT it: it answers again, with its data."""
        if self._process is not None:
            self._process.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it outright (a crash, not a shutdown) and wait until it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.stop(signal.SIGKILL)
        self.socket.unlink(missing_ok=True)
