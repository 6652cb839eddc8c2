"""The client as one file: ``luminet.pyz``, a zipapp with websocket-client inside.

It runs with a stock Python 3.11 or newer and nothing installed
(``python3 luminet.pyz http 3000``); the server hands it out at ``/luminet.pyz``.
The archive holds:

- ``__main__.py``: checks the Python version, then runs ``client.cli.main``;
- ``client/``: this package as it is on disk, every file but bytecode and hidden ones;
- ``websocket/``: the installed websocket-client's package without its tests, and
  its licence as ``websocket/LICENSE`` (Apache 2.0 asks for it with every copy).

Builds are reproducible: the same sources and the same websocket-client give the
same bytes. Entries are sorted and carry one timestamp (1980-01-01, the earliest a
zip can hold) and one mode; nothing depends on the machine, the clock or the
order a directory lists in. No bytecode goes in: it would tie the file to one
Python version, and compiling the modules at each start costs about a tenth of a
second.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import shlex
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The file's name, and its path on the server's main host.
ARCHIVE_NAME = "luminet.pyz"
#: The distribution vendored into the archive, and its import package.
WEBSOCKET_DISTRIBUTION = "websocket-client"
WEBSOCKET_PACKAGE = "websocket"
#: The first line, so ``./luminet.pyz`` works where the file is executable.
SHEBANG = b"#!/usr/bin/env python3\n"
#: Every entry's timestamp: the earliest a zip can hold, so that no build time leaks in.
TIMESTAMP = (1980, 1, 1, 0, 0, 0)
#: Every entry's Unix mode: a regular file, rw-r--r--.
FILE_MODE = 0o100644
#: The oldest Python the client runs on (``typing.assert_never``, ``match``).
MINIMUM_PYTHON = (3, 11)
#: The same, as people write it: "3.11".
MINIMUM_PYTHON_NAME = ".".join(map(str, MINIMUM_PYTHON))

#: The archive's entry point. Written for any Python 3, so that an older one gets
#: this sentence instead of a SyntaxError from deep inside the client.
MAIN = f'''\
"""{ARCHIVE_NAME}: the Luminet client in one file. Run: python3 {ARCHIVE_NAME} --help"""
import sys

if sys.version_info < {MINIMUM_PYTHON!r}:
    sys.exit(
        "{ARCHIVE_NAME} needs Python {MINIMUM_PYTHON_NAME} or newer; "
        "this is Python %d.%d" % sys.version_info[:2]
    )

from client.cli import main

sys.exit(main())
'''


class BuildError(Exception):
    """The archive cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class Archive:
    """A built ``luminet.pyz``."""

    data: bytes

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def build() -> Archive:
    """Build the archive from this package and the installed websocket-client."""
    files = {"__main__.py": MAIN.encode()}
    files.update(package_files(Path(__file__).parent, __package__ or "client"))
    files.update(websocket_files())
    return Archive(pack(files))


def pack(files: dict[str, bytes]) -> bytes:
    """The shebang and a zip of ``files`` (name to content), the same bytes every time."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=TIMESTAMP)
            info.create_system = 3  # Unix, wherever it is built, so the mode below counts
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def package_files(
    directory: Path, prefix: str, skip: frozenset[str] = frozenset()
) -> dict[str, bytes]:
    """Every file under ``directory`` but bytecode and hidden ones, named ``prefix/...``.

    ``skip`` names subdirectories (of ``directory`` itself) to leave out.
    """
    return {
        f"{prefix}/{path.relative_to(directory).as_posix()}": path.read_bytes()
        for path in _walk(directory, skip)
    }


def _walk(directory: Path, skip: frozenset[str]) -> Iterator[Path]:
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.name in skip:
            continue
        if path.is_dir():
            if path.name != "__pycache__":
                yield from _walk(path, frozenset())
        elif path.suffix not in {".pyc", ".pyo"}:
            yield path


def websocket_files() -> dict[str, bytes]:
    """The installed websocket-client package (without its tests) and its licence."""
    try:
        distribution = importlib.metadata.distribution(WEBSOCKET_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(
            f"{WEBSOCKET_DISTRIBUTION} is not installed: pip install {WEBSOCKET_DISTRIBUTION}"
        ) from None
    spec = importlib.util.find_spec(WEBSOCKET_PACKAGE)
    if spec is None or spec.origin is None:
        raise BuildError(f"{WEBSOCKET_DISTRIBUTION} is installed but `import websocket` fails")
    files = package_files(Path(spec.origin).parent, WEBSOCKET_PACKAGE, frozenset({"tests"}))
    files[f"{WEBSOCKET_PACKAGE}/LICENSE"] = _licence(distribution)
    return files


def _licence(distribution: importlib.metadata.Distribution) -> bytes:
    """The text of the distribution's licence file, wherever its metadata keeps it."""
    # Metadata 2.4 (PEP 639) lists each file in License-File and keeps it under
    # licenses/; older wheels keep it beside METADATA.
    names = distribution.metadata.get_all("License-File") or ["LICENSE"]
    for name in names:
        for candidate in (f"licenses/{name}", name):
            text = distribution.read_text(candidate)
            if text:
                return text.encode()
    raise BuildError(
        f"the installed {WEBSOCKET_DISTRIBUTION} has no licence file, which must go with "
        f"every copy; reinstall it from its wheel (pip install --force-reinstall "
        f"{WEBSOCKET_DISTRIBUTION})"
    )


def install_commands(public_url: str, token: str | None = None) -> tuple[str, str]:
    """The two commands a teammate pastes into a shell: download the client, run it.

    Without ``token`` the second one holds a placeholder. The token goes in the
    environment, never in a URL or an argument (which other users of the machine see).
    """
    base = public_url.rstrip("/")
    download = f"curl -fsSO {shlex.quote(f'{base}/{ARCHIVE_NAME}')}"
    token_value = shlex.quote(token) if token else "YOUR_TOKEN"
    server = shlex.quote(base)
    run = f"TUNNEL_TOKEN={token_value} python3 {ARCHIVE_NAME} http 3000 --server {server}"
    return download, run


def module_command(public_url: str, token: str | None = None) -> str:
    """The command that runs the client from a checkout or a pip install, as the README
    writes it; the token, as in ``install_commands``, in the environment."""
    token_value = shlex.quote(token) if token else "YOUR_TOKEN"
    server = shlex.quote(public_url.rstrip("/"))
    return f"TUNNEL_TOKEN={token_value} python -m client --server {server} --port 3000"
