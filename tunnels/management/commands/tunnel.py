"""``manage.py tunnel``: the command-line client, for people working in this project."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from client.cli import main


class Command(BaseCommand):
    help = "Run the tunnel client (same options as `python -m client`)."

    def add_arguments(self, parser):
        parser.add_argument("client_args", nargs="*", help="arguments for python -m client")
        parser.add_argument("--port", required=True)
        parser.add_argument("--host")
        parser.add_argument("--server")
        parser.add_argument("--token")

    def handle(self, *args, client_args, port, host, server, token, **options):
        argv = ["--port", port, *client_args]
        for flag, value in (("--host", host), ("--server", server), ("--token", token)):
            if value is not None:
                argv += [flag, value]
        code = main(argv)
        if code:
            raise CommandError(f"client exited with status {code}", returncode=code)
