"""The ceiling of a Python server here: a bare ASGI app answering ``hello``, run by daphne.

``python -m bench.hello`` runs it as ``manage.py serve`` runs Luminet, minus
Django: daphne's own CLI on a free port, no access log, no ``Server`` header,
and the ``Listening on TCP address`` line the bench waits for.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from daphne.cli import CommandLineInterface

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
}
_BODY = {"type": "http.response.body", "body": b"hello"}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)


def main() -> None:
    # daphne's verbosity 0 turns its access log off but also its INFO lines; the
    # listening address is how the bench learns the port, so keep that logger.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("daphne.server").setLevel(logging.INFO)
    endpoint = "tcp:port=0:interface=127.0.0.1"
    argv = ["--endpoint", endpoint, "--no-server-name", "--verbosity", "0"]
    CommandLineInterface().run([*argv, "bench.hello:application"])


if __name__ == "__main__":
    sys.exit(main())
