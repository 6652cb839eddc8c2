from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from tokens import reservations
from tokens.models import Token


class Command(BaseCommand):
    help = (
        "Reserve a subdomain for one token (only that token's tunnels get it, with "
        "--subdomain or as a remembered name), drop a reservation with --release NAME, "
        "or show them all with --list."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="the subdomain, e.g. shop")
        parser.add_argument("--token", help="the name or display prefix of the token it is for")
        parser.add_argument(
            "--release",
            nargs="?",
            const=True,
            metavar="NAME",
            help="drop the reservation of NAME (or of the name given before it)",
        )
        parser.add_argument("--list", action="store_true", help="show every reservation")

    def handle(self, *args, name, token, release, **options):
        if options["list"]:
            if name or token or release:
                raise CommandError("--list takes no name, --token or --release.")
            self._list()
            return
        if isinstance(release, str):
            if name and name != release:
                raise CommandError("Give the name once: --release NAME.")
            name = release
        if not name:
            raise CommandError("Give the subdomain: reserve_subdomain NAME --token TOKEN.")
        name = name.strip().lower()
        if release:
            if token:
                raise CommandError("--release takes no --token.")
            if not reservations.release(name):
                raise CommandError(f"{name!r} is not reserved.")
            self.stdout.write(f"Released {name!r}: any token may have it now.")
            return
        if not token:
            raise CommandError("--token NAME is required (the token the name is reserved for).")
        matches = list(Token.objects.filter(Q(name=token) | Q(prefix=token), revoked=False)[:2])
        if not matches:
            raise CommandError(f"No token that is not revoked has the name or prefix {token!r}.")
        if len(matches) > 1:
            raise CommandError(f"Several tokens match {token!r}: give the display prefix.")
        try:
            reservation = reservations.reserve(name, matches[0])
        except reservations.ReservationError as exc:
            raise CommandError(f"Cannot reserve {name!r}: {exc}.") from None
        self.stdout.write(f"Reserved {reservation.subdomain!r} for {matches[0]}.")

    def _list(self) -> None:
        reserved = reservations.reservations()
        if not reserved:
            self.stdout.write("No reservations.")
        for reservation in reserved:
            token = reservation.token
            self.stdout.write(f"{reservation.subdomain}\t{token} [{token.state}]")
