"""What Linux says about a live process under ``/proc``: memory sizes and CPU time."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import HarnessError


def status_kb(pid: int, field: str) -> int:
    """A size field of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...) in kB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise HarnessError(f"cannot read /proc/{pid}/status: {exc}") from exc
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    if not match:
        raise HarnessError(f"no {field} for process {pid}")
    return int(match[1])


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
