"""Child processes of the tests and the bench: output kept apart, waits with deadlines.

Where the output goes depends on ``logdir``:

- given (the bench): the child writes stdout, and stderr merged or apart, straight
  to ``<logdir>/<name>.log`` (and ``<name>.stderr.log``). A chatty process under
  load never blocks on a reader, the parent spends nothing on it until it asks
  for lines, and the files outlive the run.
- none (the tests): pipes, which a thread per pipe empties into memory in chunks.
  A test's server then holds no file of ours: tests look in its open files for
  temporary files, where a spooled request body would show.

Either way, lines are split only when someone asks for them. A wait polls until
a deadline and fails early once the process has ended; its failure is a
:class:`HarnessError` holding the process's own output. Children get a session of
their own, so Ctrl-C reaches only the parent, which stops them in order.
"""

from __future__ import annotations

import abc
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from . import procfs
from .errors import HarnessError

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

#: Seconds a process gets to exit after a signal before it is killed.
STOP_TIMEOUT = 10.0
#: Seconds between two looks at a process's output while waiting for a line.
POLL_INTERVAL = 0.01
#: Bytes taken from a pipe at a time: a pipe's whole buffer.
PIPE_READ_SIZE = 1 << 16
#: Lines of each output stream that ``describe()`` shows.
DESCRIBE_LINES = 60

#: Variables of ours, or read by the server or client, that must come only from the caller.
_DROPPED = {"REDIS_URL", "DATABASE_URL", "SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}
_DROPPED_PREFIXES = ("LUMINET_", "TUNNEL_")

T = TypeVar("T")


def clean_environ(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without our settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Output(abc.ABC):
    """The lines a child writes to one stream, split into lines only when asked for."""

    def __init__(self, process: Process, path: Path | None) -> None:
        #: The log file that keeps all of it, if any.
        self.path = path
        self._process = process
        # Held while taking in and splitting, for callers on several threads.
        self._reading = threading.Lock()
        self._partial = b""
        self._lines: list[str] = []

    @abc.abstractmethod
    def _take(self) -> tuple[bytes, bool]:
        """The bytes written since the last call, and whether nothing more can come."""

    @abc.abstractmethod
    def drained(self) -> None:
        """Return once what the ended process wrote can be read (or STOP_TIMEOUT passed)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop reading; what was written is in memory, or in the log file."""

    @property
    def lines(self) -> list[str]:
        """Every line written so far; a line still being written waits for its end."""
        self._read()
        return self._lines

    def _read(self) -> bool:
        """Take in what came since the last read; return whether nothing more can come."""
        with self._reading:
            data, complete = self._take()
            if data:
                *whole, self._partial = (self._partial + data).split(b"\n")
                self._lines.extend(_decode(line) for line in whole)
            if complete and self._partial:
                self._lines.append(_decode(self._partial))
                self._partial = b""
            return complete

    def wait_for(
        self, pattern: str, timeout: float, start: int = 0, *, poll: float = POLL_INTERVAL
    ) -> tuple[int, re.Match[str]]:
        """Return the index and match of the first line at or after ``start`` matching."""
        regex = re.compile(pattern)
        return self.wait_until(
            regex.search, timeout, start, what=f"line matching {pattern!r}", poll=poll
        )

    def wait_until(
        self,
        find: Callable[[str], T | None],
        timeout: float,
        start: int = 0,
        *,
        what: str,
        poll: float = POLL_INTERVAL,
    ) -> tuple[int, T]:
        """Return the index of the first line at or after ``start`` in which ``find`` finds
        something, and what it found; ``what`` names the line sought, for the error."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            complete = self._read()
            while index < len(self._lines):
                found = find(self._lines[index])
                if found is not None:
                    return index, found
                index += 1
            process = self._process
            if complete:
                why = f"{process.name} ended before printing a {what}"
            elif (remaining := deadline - time.monotonic()) <= 0:
                why = f"{process.name} printed no {what} in {timeout:g} s"
            else:
                time.sleep(min(poll, remaining))
                continue
            raise HarnessError(f"{why}\n{process.describe()}")

    def text(self, last: int = DESCRIBE_LINES) -> str:
        """The last ``last`` lines, and where the rest is if it outlives the run."""
        shown = "\n".join(f"  | {line}" for line in self.lines[-last:]) or "  (nothing)"
        return f"{shown}\n  (all of it in {self.path})" if self.path else shown


class _FileOutput(Output):
    """Output the child writes straight to a log file: nobody reads it until asked."""

    def __init__(self, process: Process, file: IO[bytes], path: Path) -> None:
        super().__init__(process, path)
        self._file = file
        self._offset = 0

    def _take(self) -> tuple[bytes, bool]:
        if self._file.closed:
            return b"", True
        # Looked at first: once the process has ended, everything it wrote is read below.
        ended = self._process.proc.poll() is not None
        fd = self._file.fileno()
        end = os.fstat(fd).st_size
        # pread leaves the file offset, which the child shares, where the child put it.
        data = os.pread(fd, end - self._offset, self._offset) if end > self._offset else b""
        self._offset += len(data)
        return data, ended and self._offset >= end

    def drained(self) -> None:
        """Nothing to wait for: the file holds each write as soon as it is made."""

    def close(self) -> None:
        self._file.close()


class _PipeOutput(Output):
    """Output the child writes to a pipe, which a thread empties into memory as it comes."""

    def __init__(self, process: Process, pipe: IO[bytes], name: str) -> None:
        super().__init__(process, None)
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._pump = threading.Thread(target=self._drain, args=(pipe,), name=name, daemon=True)
        self._pump.start()

    def _drain(self, pipe: IO[bytes]) -> None:
        """Copy chunks (never lines) until the child, and whoever inherited the pipe, closes it."""
        try:
            while chunk := os.read(pipe.fileno(), PIPE_READ_SIZE):
                with self._lock:
                    self._buffer += chunk
        finally:
            pipe.close()

    def _take(self) -> tuple[bytes, bool]:
        # Looked at first: once the pump has stopped, everything it copied is taken below.
        complete = not self._pump.is_alive()
        with self._lock:
            data = bytes(self._buffer)
            self._buffer.clear()
        return data, complete

    def drained(self) -> None:
        # The pipe ends when the child does, unless something it started holds it on.
        self._pump.join(STOP_TIMEOUT)

    def close(self) -> None:
        self.drained()
        self._read()


def _decode(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r")


class Process:
    """A child process and its ``stdout`` and ``stderr`` (one Output if merged).

    Stopped by whoever started it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        merge: bool = True,
        logdir: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start ``argv`` in ``cwd`` (the project's root by default); ``merge`` sends stderr
        where stdout goes."""
        self.name = name
        self.argv = list(argv)
        self._signal: int | None = None
        files: list[IO[bytes]] = []
        try:
            if logdir is None:
                stdout: int | IO[bytes] = subprocess.PIPE
                stderr: int | IO[bytes] = subprocess.STDOUT if merge else subprocess.PIPE
            else:
                stdout = (logdir / f"{name}.log").open("w+b")
                files.append(stdout)
                stderr = subprocess.STDOUT
                if not merge:
                    stderr = (logdir / f"{name}.stderr.log").open("w+b")
                    files.append(stderr)
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd or ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except BaseException as exc:
            for file in files:
                file.close()
            if isinstance(exc, OSError):
                raise HarnessError(f"cannot start {name} ({self.argv[0]}): {exc}") from exc
            raise
        self.stdout = self._output(stdout, self.proc.stdout, f"{name}-stdout")
        self.stderr = self.stdout
        if not merge:
            self.stderr = self._output(stderr, self.proc.stderr, f"{name}-stderr")

    def _output(self, target: int | IO[bytes], pipe: IO[bytes] | None, name: str) -> Output:
        if pipe is not None:
            return _PipeOutput(self, pipe, name)
        assert not isinstance(target, int)
        return _FileOutput(self, target, Path(target.name))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself and return its exit status."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f"{self.name} still running after {timeout:g} s\n{self.describe()}"
            ) from None
        self.stdout.drained()
        self.stderr.drained()
        return status

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (SIGTERM or SIGKILL), kill if it lingers, reap it; close its output."""
        try:
            if self.proc.poll() is None:
                self._signal = sig
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._signal = signal.SIGKILL
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT)
        finally:
            self.stdout.close()
            self.stderr.close()

    def describe(self, last: int = DESCRIBE_LINES) -> str:
        """Name, state, command line and the last lines of output, for a failure report."""
        status = self.proc.poll()
        if status is None:
            state = "running"
        elif status < 0 and -status != self._signal:
            state = f"killed by signal {-status}, not sent by the harness"
        elif status < 0:
            state = f"stopped by signal {-status}"
        else:
            state = f"exit status {status}"
        parts = [f"--- {self.name} ({state}): {' '.join(self.argv[1:])}"]
        if self.stderr is self.stdout:
            parts.append(self.stdout.text(last))
        else:
            parts += ["--- stdout:", self.stdout.text(last), "--- stderr:", self.stderr.text(last)]
        return "\n".join(parts)

    def rss(self) -> int:
        """Resident set size in bytes."""
        return procfs.rss(self.pid)

    def peak_rss(self) -> int:
        """Peak resident set size in bytes, since start or ``reset_peak_rss()``."""
        return procfs.peak_rss(self.pid)

    def reset_peak_rss(self) -> None:
        """Start measuring the peak afresh from the current resident set size."""
        procfs.reset_peak_rss(self.pid)

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far, in seconds."""
        return procfs.cpu_seconds(self.pid)
