"""The soak of issue 8: many tunnels, churn and mixed traffic for a long time; nothing grows.

``python -m bench.soak`` (``make soak``; ``docs/reliability.md``, "The soak")
starts, all on 127.0.0.1:

- ``local``: one local server for every tunnel: small answers, downloads,
  uploads echoed as a sha256, server-sent events and a WebSocket echo;
- two ``manage.py serve`` processes on Redis, under a key prefix of the soak's own;
- ``fleet``: the tunnels, a share of them real ``python -m client`` processes,
  the rest sessions of the client's own library run many to a process by
  ``driver``; both kinds are stopped and started again all along (churn);
- ``traffic``: public requests of every kind through either server process,
  every answer checked, failures told apart by whether a churn caused them;
- ``metrics``: what each process holds (RSS, file descriptors, tasks, sockets)
  and what Redis holds, sampled all along, and the verdict: flat or not.

``run`` ties them together and writes the figures to ``bench/results/``.
"""
