"""The subdomain each local address had on each server, so a restart gets it back.

Kept in ``~/.tunnel/names.json`` as ``{"<server> <local origin>": "<subdomain>"}``.
A webhook URL registered with GitHub or Stripe then survives a client restart
without anyone choosing a name; the server grants the name when no other token
holds it. The file is replaced whole (write, then rename), so a crash or a second
client never leaves half a record; a file that cannot be read or written costs
only the name, never the tunnel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

from .protocol import subdomain_problem

logger = logging.getLogger(__name__)

NAMES_PATH = Path("~/.tunnel/names.json")
#: Entries kept; the oldest go first.
MAX_ENTRIES = 200


class RememberedNames:
    def __init__(self, path: Path = NAMES_PATH) -> None:
        self.path = path.expanduser()

    def get(self, server: str, local_origin: str) -> str | None:
        name = self._read().get(_key(server, local_origin))
        return name if isinstance(name, str) and subdomain_problem(name) is None else None

    def put(self, server: str, local_origin: str, subdomain: str) -> None:
        names = self._read()
        key = _key(server, local_origin)
        if names.get(key) == subdomain:
            return
        names.pop(key, None)
        names[key] = subdomain  # last in the dict: the most recent
        while len(names) > MAX_ENTRIES:
            del names[next(iter(names))]
        try:
            self._write(names)
        except OSError as exc:
            logger.warning("cannot remember the subdomain in %s: %s", self.path, exc)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, names: dict[str, str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".names-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(names, file, indent=1, sort_keys=False)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _key(server: str, local_origin: str) -> str:
    return f"{server} {local_origin}"
