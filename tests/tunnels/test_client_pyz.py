"""The one-file client on the server: ``manage.py build_client``."""

import os
import stat
from io import StringIO

from django.core.management import call_command

from client import pyz


def test_build_client_writes_the_archive_the_server_serves(tmp_path):
    """build_client writes the same bytes as the server's build, executable, and says their
    size and SHA-256."""
    output = tmp_path / "out.pyz"
    out = StringIO()
    call_command("build_client", "--output", str(output), stdout=out)
    archive = pyz.build()
    assert output.read_bytes() == archive.data
    assert os.stat(output).st_mode & stat.S_IXUSR
    assert f"{len(archive.data)} bytes, sha256 {archive.sha256}" in out.getvalue()
