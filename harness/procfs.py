"""What Linux says about a live process under ``/proc``: memory, CPU time, files, sockets."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import HarnessError


def _status_number(pid: int, field: str, unit: str = "") -> int:
    """The number of a field of ``/proc/<pid>/status``, written with ``unit`` after it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise HarnessError(f"cannot read /proc/{pid}/status: {exc}") from exc
    match = re.search(rf"^{field}:\s+(\d+){unit}$", status, re.MULTILINE)
    if not match:
        raise HarnessError(f"no {field} for process {pid}")
    return int(match[1])


def status_kb(pid: int, field: str) -> int:
    """A size field of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...) in kB."""
    return _status_number(pid, field, " kB")


def rss(pid: int) -> int:
    """Resident set size in bytes (VmRSS)."""
    return status_kb(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """Peak resident set size in bytes since start or the last reset (VmHWM)."""
    return status_kb(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> None:
    """Restart a process's VmHWM from its current RSS (write 5 to ``clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        raise HarnessError(f"cannot reset the peak RSS of process {pid}: {exc}") from exc


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far, in seconds (``/proc/<pid>/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise HarnessError(f"cannot read /proc/{pid}/stat: {exc}") from exc
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    """Threads of the process (the ``Threads`` field of ``/proc/<pid>/status``)."""
    return _status_number(pid, "Threads")


def open_fds(pid: int) -> int:
    """File descriptors the process holds open (entries of ``/proc/<pid>/fd``)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError as exc:
        raise HarnessError(f"cannot list /proc/{pid}/fd: {exc}") from exc


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    #: The kernel's state number: 1 established, 8 close-wait, 10 listen (``net/tcp.h``).
    state: int


def tcp_sockets(pid: int) -> list[TcpSocket]:
    """The TCP sockets (IPv4 and IPv6) among the process's open files."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        tables = [Path(f"/proc/{pid}/net/{name}").read_text() for name in ("tcp", "tcp6")]
    except OSError as exc:
        raise HarnessError(f"cannot read the sockets of process {pid}: {exc}") from exc
    found = []
    for table in tables:
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                found.append(TcpSocket(local, remote, int(fields[3], 16)))
    return found
