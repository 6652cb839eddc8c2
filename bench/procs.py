"""Child processes of a bench run: output to a log file, a ready line awaited with a deadline.

Output goes to a file rather than a pipe so a chatty process under load never
blocks on a full pipe and the bench process spends no time copying its lines.
Children get their own session, so Ctrl-C reaches only the bench, which then
stops them in order.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

#: Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Seconds for one manage.py command.
MANAGE_TIMEOUT = 60.0

#: Variables of ours, or read by the server or client, that must come only from the bench.
_DROPPED = {"REDIS_URL", "DATABASE_URL", "SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}
_DROPPED_PREFIXES = ("LUMINET_", "TUNNEL_")


class BenchError(Exception):
    """Something the bench needs did not work; the message says what."""


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


class Child:
    """A child process writing to ``<logdir>/<name>.log``; stopped by whoever started it."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], logdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self._read_offset = 0
        self._partial = b""
        self.lines: list[str] = []
        self.started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def _read_new_lines(self) -> None:
        with self.log_path.open("rb") as log:
            log.seek(self._read_offset)
            data = log.read()
        self._read_offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace").rstrip("\r") for line in complete)

    def wait_for(
        self, pattern: str, timeout: float, *, start: int = 0, poll: float = 0.01
    ) -> tuple[int, re.Match[str]]:
        """Return the index and match of the first output line at or after ``start`` matching."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        while True:
            self._read_new_lines()
            while index < len(self.lines):
                match = regex.search(self.lines[index])
                if match:
                    return index, match
                index += 1
            if not self.running():
                self._read_new_lines()
                if not any(regex.search(line) for line in self.lines[index:]):
                    raise BenchError(
                        f"{self.name} exited with status {self.proc.returncode} before "
                        f"printing {pattern!r}:\n{self.tail()}"
                    )
                continue
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} printed no {pattern!r} in {timeout} s:\n{self.tail()}"
                )
            time.sleep(poll)

    def tail(self, count: int = 30) -> str:
        self._read_new_lines()
        return "\n".join(f"  | {line}" for line in self.lines[-count:])

    def rss(self) -> int:
        """Resident set size in bytes (VmRSS)."""
        return status_kb(self.pid, "VmRSS") * 1024

    def peak_rss(self) -> int:
        """Peak resident set size in bytes since start or the last reset (VmHWM)."""
        return status_kb(self.pid, "VmHWM") * 1024

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far, in seconds (/proc/<pid>/stat)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError as exc:
            raise BenchError(f"cannot read /proc/{self.pid}/stat: {exc}") from exc
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak_rss(self) -> None:
        reset_peak_rss(self.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; reap it and close its log."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT)
        finally:
            self._log.close()


def reset_peak_rss(pid: int) -> None:
    """Restart a process's VmHWM from its current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def status_kb(pid: int, field: str) -> int:
    """A size field of /proc/<pid>/status (VmRSS, VmHWM, ...) in kB; BenchError if unreadable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/status: {exc}") from exc
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    if not match:
        raise BenchError(f"no {field} for process {pid}")
    return int(match[1])


def run_manage(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one manage.py command to its end; raise BenchError if it takes too long.

    The bench and the e2e tests both prepare their databases this way.
    """
    try:
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=MANAGE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"manage.py {' '.join(args)} took over {MANAGE_TIMEOUT} s") from None


def manage(*args: str, env: Mapping[str, str]) -> str:
    """Run one manage.py command and return its stdout; raise BenchError if it fails."""
    done = run_manage(*args, env=env)
    if done.returncode != 0:
        raise BenchError(
            f"manage.py {' '.join(args)} failed with {done.returncode}:\n{done.stderr[-2000:]}"
        )
    return done.stdout
