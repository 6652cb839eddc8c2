"""``manage.py dev_token``: the development token behind ``make serve``."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from tokens import crypto
from tokens.models import Token, _now

DEV_TOKEN_NAME = "development"


def client_command(plaintext: str, server_url: str) -> str:
    """The client command with the development token, run from this checkout wherever the
    other terminal starts: the client lives here."""
    return (
        f"cd {shlex.quote(str(settings.BASE_DIR))} && TUNNEL_TOKEN={plaintext} "
        f".venv/bin/python -m client --port 3000 --server {server_url}"
    )


class Command(BaseCommand):
    help = (
        "Reuse or issue the local development token (kept in var/dev-token, mode 600) and "
        "print the client command that uses it. For a trial on this machine only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="port the server will use")
        parser.add_argument("--file", type=Path, default=settings.BASE_DIR / "var" / "dev-token")
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="print nothing: `serve --banner FILE` prints the command once it listens",
        )

    def handle(self, *args, port: int, file: Path, quiet: bool, **options):
        plaintext = self._stored(file)
        if plaintext is None:
            # The old development token's plaintext is gone with its file: retire it.
            Token.objects.filter(name=DEV_TOKEN_NAME).revoke()
            _, plaintext = Token.objects.issue(DEV_TOKEN_NAME)
            file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(plaintext + "\n")
        if quiet:
            return
        self.stdout.write("Luminet is starting. In another terminal, expose a local port with:")
        self.stdout.write("")
        self.stdout.write(f"  {client_command(plaintext, f'http://localhost:{port}')}")
        self.stdout.write("")

    @staticmethod
    def _stored(file: Path) -> str | None:
        """Return the stored token if it still works here."""
        try:
            plaintext = file.read_text().strip()
        except FileNotFoundError:
            return None
        if not crypto.looks_like_token(plaintext):
            return None
        usable = Token.objects.usable(_now()).filter(digest=crypto.digest(plaintext))
        return plaintext if usable.exists() else None
