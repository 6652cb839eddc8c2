"""luminet.pyz: one reproducible file holding the client and websocket-client."""

import ast
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import client
from client import pyz

CLIENT_DIR = Path(client.__file__).parent


@pytest.fixture(scope="module")
def archive() -> pyz.Archive:
    return pyz.build()


def entries(archive: pyz.Archive) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        assert opened.testzip() is None
        return opened.infolist()


def read(archive: pyz.Archive, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        return opened.read(name)


def test_two_builds_give_the_same_bytes(archive):
    """Building again from the same sources gives a byte-identical archive."""
    again = pyz.build()
    assert again.data == archive.data
    assert again.sha256 == hashlib.sha256(archive.data).hexdigest()


def test_the_archive_holds_the_client_websocket_client_and_its_licence(archive):
    """Every module of the client, the websocket package and its licence; no bytecode, no
    tests."""
    names = {info.filename for info in entries(archive)}
    client_modules = {
        f"client/{path.relative_to(CLIENT_DIR).as_posix()}"
        for path in CLIENT_DIR.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert client_modules <= names
    assert {"__main__.py", "websocket/__init__.py", "websocket/_core.py"} <= names
    assert b"Apache License" in read(archive, "websocket/LICENSE")
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]
    assert not [n for n in names if n.startswith("websocket/tests/")]


def test_entries_are_sorted_with_one_timestamp_and_mode(archive):
    """Nothing of the build machine or the build time is in the archive."""
    infos = entries(archive)
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {pyz.TIMESTAMP}
    assert {i.external_attr >> 16 for i in infos} == {pyz.FILE_MODE}
    assert archive.data.startswith(b"#!/usr/bin/env python3\n")


def test_the_order_files_are_found_in_does_not_change_the_bytes():
    """pack() gives the same bytes whatever order the files come in."""
    files = {"b.py": b"b", "a/x.py": b"x", "__main__.py": b"m"}
    assert pyz.pack(files) == pyz.pack(dict(reversed(files.items())))


def test_package_files_take_data_files_and_leave_bytecode_and_hidden_files(tmp_path):
    """Package data (an HTML page) goes in; caches, bytecode, hidden and skipped folders
    do not."""
    for name in (
        "__init__.py",
        "page/index.html",
        "sub/__init__.py",
        "__pycache__/x.cpython-311.pyc",
        "old.pyc",
        ".hidden",
        "tests/test_x.py",
        "sub/tests/kept.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    found = pyz.package_files(tmp_path, "pkg", frozenset({"tests"}))
    assert sorted(found) == [
        "pkg/__init__.py",
        "pkg/page/index.html",
        "pkg/sub/__init__.py",
        "pkg/sub/tests/kept.py",
    ]
    assert found["pkg/page/index.html"] == b"page/index.html"


def test_the_entry_point_parses_on_old_pythons():
    """__main__.py uses no syntax newer than Python 3.6, so old ones get its message."""
    ast.parse(pyz.MAIN, feature_version=(3, 6))


def test_the_archive_runs_without_site_packages(archive, tmp_path):
    """`python -I -S luminet.pyz --help` (no site-packages, no current directory)
    imports the whole client and websocket-client from the archive."""
    path = tmp_path / pyz.ARCHIVE_NAME
    path.write_bytes(archive.data)
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(path), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: luminet.pyz http PORT [options]")


def test_install_commands_download_then_run_with_the_token_in_the_environment():
    """The run command carries the token in TUNNEL_TOKEN; no URL holds it."""
    download, run = pyz.install_commands("https://tunnel.example.com/", "lmn_abc-_x")
    assert download == "curl -fsSO https://tunnel.example.com/luminet.pyz"
    assert run == (
        "TUNNEL_TOKEN=lmn_abc-_x python3 luminet.pyz http 3000 --server https://tunnel.example.com"
    )
    assert "lmn_" not in download


def test_install_commands_without_a_token_hold_a_placeholder():
    """Without a token the run command says where it goes."""
    _, run = pyz.install_commands("http://localhost:8000")
    assert run.startswith("TUNNEL_TOKEN=YOUR_TOKEN python3 luminet.pyz http 3000 ")
