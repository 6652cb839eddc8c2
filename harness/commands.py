"""``manage.py`` commands run to their end: migrate, issue_token, revoke_token, check."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from .errors import HarnessError
from .process import PYTHON, ROOT

#: Seconds for one manage.py command.
MANAGE_TIMEOUT = 60.0
#: Characters of each output stream a failure shows.
SHOWN = 4000


def manage(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one manage.py command; HarnessError, with its output, if it fails or hangs."""
    command = " ".join(("manage.py", *args))
    try:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=MANAGE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{command} took over {MANAGE_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise HarnessError(
            f"{command} failed with {done.returncode}\n"
            f"--- stdout:\n{done.stdout[-SHOWN:]}\n--- stderr:\n{done.stderr[-SHOWN:]}"
        )
    return done
