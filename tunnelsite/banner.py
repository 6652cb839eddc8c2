"""What ``manage.py serve`` prints once its port accepts connections: where the server
is, where its admin is and how to get in, and (``make serve``) the client command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Banner:
    public_url: str
    admin_url: str
    #: False when no superuser exists yet: the banner says how to make one.
    has_admin_user: bool
    #: The client command with the development token (``make serve``), or None.
    client_command: str | None = None

    def text(self, listening: Sequence[tuple[str, int]]) -> str:
        """The banner, naming the addresses the server listens on."""
        addresses = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in listening)
        lines = [
            "",
            f"Luminet is ready at {self.public_url} (listening on {addresses}).",
            f"  Admin: {self.admin_url}",
        ]
        if not self.has_admin_user:
            lines.append(
                "  No admin user yet: in another terminal, run `make superuser` "
                "(or `.venv/bin/python manage.py createsuperuser`)."
            )
        if self.client_command:
            lines += [
                "  Expose a local port, in another terminal:",
                f"    {self.client_command}",
            ]
        lines += ["  Stop with Ctrl-C.", ""]
        return "\n".join(lines) + "\n"
