"""client.tlssocket: one TLS connection read by one thread and written by several, as a
tunnel over wss:// is, against a real TLS server on loopback."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client.tlssocket import SharedTLSSocket, share

pytestmark = pytest.mark.timeout(60)

#: Seconds of traffic both ways: unshared, the connection broke well within this here.
TRAFFIC_SECONDS = 1.5
SENDERS = 4


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Server:
    """A TLS server that writes small records without pause to each connection (when
    ``chatty``) and counts what it reads, until the client closes."""

    port: int = 0
    chatty: bool = True
    #: Bytes read from the client so far.
    received: int = 0
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    server = Server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def pump() -> None:
            while server.chatty:
                writer.write(b"s" * 300)
                await writer.drain()
                await asyncio.sleep(0)  # drain() does not yield below the high-water mark

        pumping = asyncio.ensure_future(pump())
        try:
            while data := await reader.read(65536):
                server.received += len(data)
        except (OSError, ssl.SSLError) as exc:
            server.errors.append(repr(exc))
        finally:
            pumping.cancel()
            writer.close()

    listening: list[asyncio.Server] = []

    async def start() -> None:
        listening.append(await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
        server.port = listening[0].sockets[0].getsockname()[1]
        ready.set()

    async def stop() -> None:
        listening[0].close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    assert ready.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def connect(port: int, cert: Path, timeout: float | None = 10.0) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


def test_one_reader_and_several_senders_keep_the_connection(
    tls_server: Server, certificate: tuple[Path, Path]
) -> None:
    """A reader blocked in recv() while senders send (under their own lock, as the tunnel's
    do): nothing breaks, and the server reads every byte sent."""
    sock = SharedTLSSocket(connect(tls_server.port, certificate[0]))
    send_lock, stop, failures = threading.Lock(), threading.Event(), []
    read = sent = 0

    def reader() -> None:
        nonlocal read
        try:
            while not stop.is_set():
                data = sock.recv(65536)
                if not data:
                    if not stop.is_set():
                        failures.append("recv: end of stream")
                    return
                read += len(data)
        except (OSError, ssl.SSLError) as exc:
            if not stop.is_set():
                failures.append(f"recv: {exc!r}")

    def sender() -> None:
        nonlocal sent
        try:
            while not stop.is_set():
                with send_lock:
                    sock.sendall(b"c" * 200)
                    sent += 200
        except (OSError, ssl.SSLError) as exc:
            failures.append(f"send: {exc!r}")

    threads = [threading.Thread(target=reader)]
    threads += [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TRAFFIC_SECONDS
    while time.monotonic() < deadline and not failures:
        time.sleep(0.01)
    stop.set()
    for thread in threads[1:]:
        thread.join(10)
    # Everything sent arrives (while the reader still reads what the server sends).
    poll_until = time.monotonic() + 10
    while tls_server.received < sent and time.monotonic() < poll_until:
        time.sleep(0.01)
    tls_server.chatty = False
    sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
    threads[0].join(10)
    sock.close()

    assert failures == []
    assert read > 0
    assert tls_server.received == sent
    assert tls_server.errors == []


def test_recv_keeps_the_timeout_set(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    """With nothing to read, recv() ends with a timeout after the socket's timeout, as a
    blocking socket's would: websocket-client turns it into its timeout exception."""
    tls_server.chatty = False
    sock = SharedTLSSocket(connect(tls_server.port, certificate[0]))
    try:
        sock.settimeout(0.2)
        assert sock.gettimeout() == 0.2
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        assert 0.15 < time.monotonic() - started < 5
    finally:
        sock.close()


def test_only_tls_sockets_are_shared(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    plain = websocket.WebSocket()
    plain.sock = socket.socket()
    try:
        share(plain)
        assert isinstance(plain.sock, socket.socket)
    finally:
        plain.sock.close()
    secure = websocket.WebSocket()
    secure.sock = connect(tls_server.port, certificate[0])
    try:
        share(secure)
        assert isinstance(secure.sock, SharedTLSSocket)
        assert secure.sock.gettimeout() == 10.0
    finally:
        secure.sock.close()
