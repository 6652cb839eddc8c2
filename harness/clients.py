"""``python -m client`` as a child process: what it prints tells when its tunnel is up.

With ``--log-format json`` (the default here) its stdout is one JSON object per
line (README, "What the client prints"), and its stderr its logging; with
``--log-format text``, the lines a person reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import HarnessError
from .process import POLL_INTERVAL, PYTHON, Process, clean_environ

#: Seconds for a client to connect and authenticate.
CLIENT_START_TIMEOUT = 20.0
#: The line a person sees in the text output when the tunnel is up.
TEXT_ACTIVE_RE = r"^Tunnel active: (http://([a-z0-9]+)\.localhost)$"


def event_re(event: str) -> str:
    """The pattern of one JSON line of the client: ``{"event":"<event>",...}``."""
    return rf'^\{{"event":"{re.escape(event)}"[,}}]'


class Client(Process):
    """``python -m client`` forwarding to ``local_port`` on 127.0.0.1."""

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
        merge: bool = False,
        logdir: Path | None = None,
        args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        local_host: str | None = "127.0.0.1",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start a client; the token goes in ``TUNNEL_TOKEN``, or ``--token`` with ``token_flag``.

        ``home`` is its HOME, so that no ``~/.tunnel/config`` of the machine reaches it;
        ``args`` are more flags (``--subdomain``, ``--no-inspect``). Its inspector takes any
        free port, never the developer's 4040; ``inspector_url()`` says which. ``command`` replaces
        ``python -m client --port PORT`` (e.g. ``python luminet.pyz http PORT``), run in
        ``cwd``. ``local_host`` goes in ``--host`` unless None (``start`` takes it from
        the config file). ``env`` adds variables (``SSL_CERT_FILE`` for a server whose
        certificate a CA of the test's own vouches for).
        """
        argv = list(command or [PYTHON, "-m", "client", "--port", str(local_port)])
        if local_host is not None:
            argv += ["--host", local_host]
        argv += ["--inspect-port", "0"]
        argv += ["--server", server_url, "--log-format", log_format, *args]
        environ = clean_environ({"HOME": str(home), **(env or {})})
        if token_flag:
            argv += ["--token", token]
        else:
            environ["TUNNEL_TOKEN"] = token
        super().__init__(name, argv, environ, merge=merge, logdir=logdir, cwd=cwd)
        self.local_port = local_port
        self.log_format = log_format

    def wait_active(
        self, start: int = 0, timeout: float = CLIENT_START_TIMEOUT
    ) -> tuple[int, str, str]:
        """Wait for the tunnel to be up; return the line's index, the URL and the subdomain."""
        if self.log_format == "text":
            index, match = self.stdout.wait_for(TEXT_ACTIVE_RE, timeout, start)
            return index, match[1], match[2]
        index, active = self.wait_event("tunnel_active", timeout, start)
        return index, active["url"], active["subdomain"]

    def inspector_url(self, timeout: float = CLIENT_START_TIMEOUT) -> str:
        """Where the client's inspector and agent API listen (``http://127.0.0.1:<port>``)."""
        _, event = self.wait_event("inspector", timeout)
        if event["url"] is None:
            raise HarnessError(f"{self.name} has no inspector: {event.get('reason')}")
        return str(event["url"])

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
        *,
        poll: float = POLL_INTERVAL,
    ) -> tuple[int, dict[str, Any]]:
        """Wait for an ``event`` line whose fields include ``where``; return index and object."""
        if self.log_format != "json":
            raise HarnessError(f"{self.name} prints text, not events")
        regex = re.compile(event_re(event))
        wanted = dict(where or {})
        # A client under load prints a line per request: a line is parsed only if it
        # holds every wanted scalar as the client writes it (compact, ASCII-only JSON).
        needles = [json.dumps(v) for v in wanted.values() if v is None or isinstance(v, str | int)]

        def find(line: str) -> dict[str, Any] | None:
            if not regex.search(line) or not all(needle in line for needle in needles):
                return None
            try:
                found: dict[str, Any] = json.loads(line)
            except ValueError as exc:
                raise HarnessError(f"{self.name} printed a broken {event} line: {line!r}") from exc
            return found if wanted.items() <= found.items() else None

        what = f"{event} event with {wanted}" if wanted else f"{event} event"
        return self.stdout.wait_until(find, timeout, start, what=what, poll=poll)

    def events(self, event: str) -> list[dict[str, Any]]:
        """Every JSON line of ``event`` printed so far."""
        pattern = re.compile(event_re(event))
        return [json.loads(line) for line in self.stdout.lines if pattern.search(line)]
