"""Real processes for the end-to-end tests: the server (daphne), the client, manage.py.

Every wait has a deadline and every failure shows the process's own output.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from bench.procs import BenchError, clean_environ, reset_peak_rss, run_manage, status_kb

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

#: Seconds for the server to import Django and start listening.
SERVER_START_TIMEOUT = 30.0
#: Seconds for a client to connect and authenticate.
CLIENT_START_TIMEOUT = 20.0
#: Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0

LISTENING_RE = r"Listening on TCP address 127\.0\.0\.1:(\d+)"
#: The line a person sees in the client's text output when the tunnel is up.
TEXT_ACTIVE_RE = r"^Tunnel active: (http://([a-z0-9]+)\.localhost)$"


def event_re(event: str) -> str:
    """The pattern of one ``--log-format json`` line of the client: ``{"event":"<event>",...}``."""
    return rf'^\{{"event":"{re.escape(event)}"[,}}]'


class LineNotFound(AssertionError):
    pass


class LineLog:
    """Lines of one output stream, collected by a thread; wait for one with a deadline."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        finally:
            stream.close()
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, re.Match[str]]:
        """Return the index and match of the first line at or after ``start`` matching."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return index, match
                    index += 1
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    why = "the stream ended" if self.closed else f"{timeout} s passed"
                    raise LineNotFound(f"no line matching {pattern!r}: {why}")
                self._cond.wait(remaining)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def text(self, last: int = 60) -> str:
        with self._cond:
            return "\n".join(self.lines[-last:])


class Process:
    """A child process whose output is read by threads; stopped by whoever started it."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], *, merge: bool) -> None:
        self.name = name
        self.argv = argv
        self._stopped_by_us = False
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.stdout = LineLog(self.proc.stdout, f"{name}-stdout")
        self.stderr = self.stdout
        if not merge:
            assert self.proc.stderr is not None
            self.stderr = LineLog(self.proc.stderr, f"{name}-stderr")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def peak_rss(self) -> int:
        """The process's peak resident set size in bytes (VmHWM), since start or reset."""
        return peak_rss(self.pid)

    def reset_peak_rss(self) -> None:
        """Start measuring the peak afresh from the current resident set size."""
        reset_peak_rss(self.pid)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself and return its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout} s\n{self.describe()}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (SIGTERM or SIGKILL), then kill if it lingers; reap the process."""
        if self.proc.poll() is None:
            self._stopped_by_us = True
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.stdout.join(STOP_TIMEOUT)
        self.stderr.join(STOP_TIMEOUT)

    def describe(self) -> str:
        status = self.proc.poll()
        if status is None:
            state = "running"
        elif status < 0 and not self._stopped_by_us:
            state = f"killed by signal {-status} from outside the test"
        else:
            state = f"exit status {status}"
        parts = [f"--- {self.name} ({state}): {' '.join(self.argv[1:])}"]
        if self.stderr is self.stdout:
            parts.append(self.stdout.text())
        else:
            parts += ["--- stdout:", self.stdout.text(), "--- stderr:", self.stderr.text()]
        return "\n".join(parts)


class Server(Process):
    """``manage.py serve`` on 127.0.0.1; ``port`` is known once daphne says it listens."""

    def __init__(self, env: Mapping[str, str], port: int = 0, name: str = "server") -> None:
        argv = [PYTHON, "manage.py", "serve", "--bind", "127.0.0.1", "--port", str(port)]
        super().__init__(name, argv, env, merge=True)
        try:
            _, match = self.stdout.wait_for(LISTENING_RE, SERVER_START_TIMEOUT)
        except LineNotFound as exc:
            self.stop()
            raise AssertionError(f"{name} did not start: {exc}\n{self.describe()}") from None
        self.port = int(match[1])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/tunnel"


class Client(Process):
    """``python -m client`` forwarding to a local port on 127.0.0.1.

    It prints JSON lines (``--log-format json``), which the tests read, unless
    started with ``log_format="text"``, the lines a person reads.
    """

    def __init__(
        self,
        *,
        server_url: str,
        local_port: int,
        token: str,
        home: Path,
        token_flag: bool = False,
        name: str = "client",
        log_format: str = "json",
    ) -> None:
        argv = [PYTHON, "-m", "client", "--port", str(local_port), "--host", "127.0.0.1"]
        argv += ["--server", server_url, "--log-format", log_format]
        env = clean_environ({"HOME": str(home)})
        if token_flag:
            argv += ["--token", token]
        else:
            env["TUNNEL_TOKEN"] = token
        super().__init__(name, argv, env, merge=False)
        self.local_port = local_port
        self.log_format = log_format

    def wait_active(
        self, start: int = 0, timeout: float = CLIENT_START_TIMEOUT
    ) -> tuple[int, str, str]:
        """Wait for the tunnel to be up; return the line's index, the URL and the subdomain."""
        if self.log_format == "text":
            try:
                index, match = self.stdout.wait_for(TEXT_ACTIVE_RE, timeout, start)
            except LineNotFound as exc:
                raise AssertionError(
                    f"{self.name} did not connect: {exc}\n{self.describe()}"
                ) from None
            return index, match[1], match[2]
        index, active = self.wait_event("tunnel_active", timeout, start)
        return index, active["url"], active["subdomain"]

    def wait_down(self, start: int = 0, timeout: float = CLIENT_START_TIMEOUT) -> int:
        """Wait for the client to say its tunnel is down; return the line's index."""
        index, _ = self.wait_event("tunnel_down", timeout, start)
        return index

    def wait_event(
        self,
        event: str,
        timeout: float = CLIENT_START_TIMEOUT,
        start: int = 0,
        where: Mapping[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Wait for an ``event`` line whose fields include ``where``; return index and object."""
        assert self.log_format == "json", f"{self.name} prints text, not events"
        wanted = dict(where or {})
        deadline = time.monotonic() + timeout
        index = start
        while True:
            try:
                index, _ = self.stdout.wait_for(
                    event_re(event), max(0.0, deadline - time.monotonic()), index
                )
            except LineNotFound as exc:
                raise AssertionError(
                    f"{self.name} printed no {event} event with {wanted}: {exc}\n{self.describe()}"
                ) from None
            found: dict[str, Any] = json.loads(self.stdout.lines[index])
            if wanted.items() <= found.items():
                return index, found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} printed no {event} event with {wanted} in {timeout} s\n"
                    f"{self.describe()}"
                )
            index += 1

    def events(self, event: str) -> list[dict[str, Any]]:
        """Every JSON line of ``event`` printed so far."""
        pattern = re.compile(event_re(event))
        return [json.loads(line) for line in list(self.stdout.lines) if pattern.search(line)]


def peak_rss(pid: int) -> int:
    """Peak resident set size of a live process in bytes (Linux: VmHWM)."""
    return status_kb(pid, "VmHWM") * 1024


def manage(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one manage.py command; fail the test with its output if it fails."""
    try:
        done = run_manage(*args, env=env)
    except BenchError as exc:
        raise AssertionError(str(exc)) from None
    if done.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} failed with {done.returncode}\n"
            f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
        )
    return done
