"""`pip install <this repository>`: the client alone, with a `luminet` command."""

import email
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.pyz import MINIMUM_PYTHON_NAME

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel pip builds from pyproject.toml, offline, from a copy (pip builds in the tree
    it is given)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(
        ROOT / "client", source / "client", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*command, "--no-index", "--quiet", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("luminet-*.whl")
    with zipfile.ZipFile(built) as opened:
        yield opened


def dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_the_wheel_holds_the_client_package_only(wheel):
    """Every module of client/ goes in; no server app, test or harness does."""
    names = wheel.namelist()
    packages = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert packages == {"client"}
    expected = {
        f"client/{p.relative_to(ROOT / 'client').as_posix()}"
        for pattern in ("*.py", "*.html", "*.js", "*.css")  # the inspector's page too
        for p in (ROOT / "client").rglob(pattern)
    }
    assert expected <= set(names)


def test_the_wheel_gives_the_luminet_command(wheel):
    """Installing it puts a `luminet` command on PATH that runs client.cli:main."""
    entry_points = dist_info(wheel, "entry_points.txt")
    assert "[console_scripts]\nluminet = client.cli:main" in entry_points


def test_the_wheel_needs_websocket_client_alone(wheel):
    """Its one dependency is websocket-client; it asks for the Python luminet.pyz does."""
    metadata = email.message_from_string(dist_info(wheel, "METADATA"))
    assert metadata["Name"] == "luminet"
    assert metadata.get_all("Requires-Dist") == ["websocket-client>=1.8"]
    assert metadata["Requires-Python"] == f">={MINIMUM_PYTHON_NAME}"
