"""A TCP forwarder on loopback whose connections the test can cut, like a network drop."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class TCPProxy:
    """Accept on 127.0.0.1:port and relay each connection to 127.0.0.1:target_port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept_loop, "proxy-accept")

    def _start(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        # Ends when close() closes the listener.
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    downstream.close()
                    upstream.close()
                    return
                self._sockets.update((downstream, upstream))
            self._start(self._pump, "proxy-up", downstream, upstream)
            self._start(self._pump, "proxy-down", upstream, downstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        # Ends at EOF or when cut() shuts the sockets down.
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Drop every relayed connection at once; return how many sockets were cut."""
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(sockets)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
