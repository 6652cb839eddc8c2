"""Starting processes, ready signals and Redis keys: shared by ``tests/`` and ``bench/``.

- ``process``: :class:`Process`, a child whose output goes to files, waited on
  with deadlines; :func:`clean_environ`; ``ROOT`` and ``PYTHON``.
- ``servers``: :class:`Server`, a process that prints its port once it listens
  (``manage.py serve``, bare daphne, the bench upstream).
- ``clients``: :class:`Client`, ``python -m client`` and its JSON events.
- ``commands``: :func:`manage`, one ``manage.py`` command run to its end.
- ``redis``: :class:`KeyPrefix`, keys of one's own on a shared Redis, and
  :class:`PrivateRedis`, a server a test may kill.
- ``procfs``: memory and CPU time of a live process, from ``/proc``.

Everything here raises one error, :class:`HarnessError`, whose message holds the
process's own output where there is one.
"""

from .clients import CLIENT_START_TIMEOUT, Client
from .commands import manage
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
    "PrivateRedis",
    "Process",
    "Server",
    "clean_environ",
    "manage",
    "serve_argv",
]
