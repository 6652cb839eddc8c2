"""``manage.py build_client``: write the one-file client that the main host serves."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from client import pyz


class Command(BaseCommand):
    help = (
        f"Write {pyz.ARCHIVE_NAME}, the client in one file (websocket-client inside), as the "
        f"server serves it at /{pyz.ARCHIVE_NAME}. The same sources give the same bytes."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output", type=Path, default=Path(pyz.ARCHIVE_NAME), help="where to write it"
        )

    def handle(self, *args, output: Path, **options):
        started = time.perf_counter()
        try:
            archive = pyz.build()
        except pyz.BuildError as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.perf_counter() - started
        try:
            output.write_bytes(archive.data)
            os.chmod(output, 0o755)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from exc
        self.stdout.write(
            f"{output}: {len(archive.data)} bytes, sha256 {archive.sha256}, "
            f"built in {elapsed * 1000:.0f} ms"
        )
