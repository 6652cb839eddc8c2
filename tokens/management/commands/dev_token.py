"""``manage.py dev_token``: the development token behind ``make serve``."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from tokens import crypto
from tokens.models import Token, _now

DEV_TOKEN_NAME = "development"


class Command(BaseCommand):
    help = (
        "Reuse or issue the local development token (kept in var/dev-token, mode 600) and "
        "print the client command that uses it. For a trial on this machine only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="port the server will use")
        parser.add_argument("--file", type=Path, default=settings.BASE_DIR / "var" / "dev-token")

    def handle(self, *args, port: int, file: Path, **options):
        plaintext = self._stored(file)
        if plaintext is None:
            _, plaintext = Token.objects.issue(DEV_TOKEN_NAME)
            file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(plaintext + "\n")
        self.stdout.write("Luminet is starting. In another terminal, expose a local port with:")
        self.stdout.write("")
        self.stdout.write(
            f"  TUNNEL_TOKEN={plaintext} .venv/bin/python -m client --port 3000 "
            f"--server http://localhost:{port}"
        )
        self.stdout.write("")

    def _stored(self, file: Path) -> str | None:
        """Return the stored token if it still works here."""
        try:
            plaintext = file.read_text().strip()
        except FileNotFoundError:
            return None
        if not crypto.looks_like_token(plaintext):
            return None
        usable = Token.objects.usable(_now()).filter(digest=crypto.digest(plaintext))
        return plaintext if usable.exists() else None
