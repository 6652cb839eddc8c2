"""Starting processes, ready signals, Redis keys and databases: shared by ``tests/`` and ``bench/``.

- ``process``: :class:`Process`, a child whose output goes to files, waited on
  with deadlines; :func:`clean_environ`; ``ROOT`` and ``PYTHON``.
- ``servers``: :class:`Server`, a process that prints its port once it listens
  (``manage.py serve``, bare daphne, the bench upstream).
- ``clients``: :class:`Client`, ``python -m client`` and its JSON events.
- ``commands``: :func:`manage`, one ``manage.py`` command run to its end.
- ``redis``: :class:`KeyPrefix`, keys of one's own on a shared Redis, and
  :class:`PrivateRedis`, a server a test may kill.
- ``database``: :class:`PostgresDatabase`, a database of one's own on a shared
  PostgreSQL, and :func:`execute`, SQL against a server's ``DATABASE_URL``
  (SQLite or PostgreSQL).
- ``procfs``: memory and CPU time of a live process, from ``/proc``.
- ``caddy``: :class:`~harness.caddy.Caddy` on ``deploy/Caddyfile.local``, and
  ``loopback``: HTTPS to ``*.localhost`` names through 127.0.0.1, trusting its CA.
- ``stack``: :class:`~harness.stack.Stack`, Caddy in front of daphne processes on
  Redis (``make stack``, ``tests/e2e/test_caddy.py``).

Everything here raises one error, :class:`HarnessError`, whose message holds the
process's own output where there is one.
"""

from .clients import CLIENT_START_TIMEOUT, Client
from .commands import manage
from .database import PostgresDatabase, execute
from .errors import HarnessError
from .process import PYTHON, ROOT, Output, Process, clean_environ
from .redis import KeyPrefix, PrivateRedis
from .servers import LISTENING_RE, SERVER_START_TIMEOUT, UPSTREAM_RE, Server, serve_argv

__all__ = [
    "CLIENT_START_TIMEOUT",
    "LISTENING_RE",
    "PYTHON",
    "ROOT",
    "SERVER_START_TIMEOUT",
    "UPSTREAM_RE",
    "Client",
    "HarnessError",
    "KeyPrefix",
    "Output",
    "PostgresDatabase",
    "PrivateRedis",
    "Process",
    "Server",
    "clean_environ",
    "execute",
    "manage",
    "serve_argv",
]
