"""The subdomain each local address had on each server, so a restart gets it back.

Kept in ``~/.tunnel/names.json`` as ``{"<server> <local origin>": "<subdomain>"}``.
A webhook URL registered with GitHub or Stripe then survives a client restart
without anyone choosing a name; the server grants the name when no other token
holds it. The file is replaced whole (write, then rename), so a crash never
leaves half a record, and each change is a read and a write under a lock (of
this process, and of the file where the system has ``flock``), so tunnels of one
client or of two never lose each other's names. A file that cannot be read or
written costs only the name, never the tunnel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: the lock of this process only
    fcntl = None  # type: ignore[assignment]

from .protocol import subdomain_problem

logger = logging.getLogger(__name__)

NAMES_PATH = Path("~/.tunnel/names.json")
#: Entries kept; the oldest go first.
MAX_ENTRIES = 200
#: One writer at a time within this process: several tunnels share the file.
_WRITING = threading.Lock()


class RememberedNames:
    def __init__(self, path: Path = NAMES_PATH) -> None:
        self.path = path.expanduser()

    def get(self, server: str, local_origin: str) -> str | None:
        name = self._read().get(_key(server, local_origin))
        return name if isinstance(name, str) and subdomain_problem(name) is None else None

    def put(self, server: str, local_origin: str, subdomain: str) -> None:
        key = _key(server, local_origin)
        try:
            with self._locked():
                names = self._read()
                if names.get(key) == subdomain:
                    return
                names.pop(key, None)
                names[key] = subdomain  # last in the dict: the most recent
                while len(names) > MAX_ENTRIES:
                    del names[next(iter(names))]
                self._write(names)
        except OSError as exc:
            logger.warning("cannot remember the subdomain in %s: %s", self.path, exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _WRITING:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path.parent / ".names.lock", "a") as lock:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                yield

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
