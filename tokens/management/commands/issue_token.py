from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from tokens.models import DuplicateName, Token, _now


class Command(BaseCommand):
    help = (
        "Issue an access token. Prints a few lines about it, then the token alone on the "
        "last line (for `tail -n1`); only its digest is stored, so it cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="who or what will use the token")
        parser.add_argument(
            "--expires-in-days", type=int, help="days until the token expires (default: never)"
        )

    def handle(self, *args, name, expires_in_days, **options):
        name = name.strip()
        max_length = Token._meta.get_field("name").max_length
        assert max_length is not None
        if not name:
            raise CommandError("--name must not be empty.")
        if len(name) > max_length:
            raise CommandError(f"--name must be at most {max_length} characters.")
        expires_at = None
        if expires_in_days is not None:
            if not 0 < expires_in_days <= 36500:
                raise CommandError("--expires-in-days must be between 1 and 36500.")
            expires_at = _now() + timedelta(days=expires_in_days)
        try:
            token, plaintext = Token.objects.issue(name, expires_at=expires_at)
        except DuplicateName as exc:
            raise CommandError(f"{exc}.") from exc
        self.stdout.write(f"Issued token {token.name!r} ({token.prefix}…).")
        self.stdout.write(f"Expires: {expires_at.isoformat() if expires_at else 'never'}.")
        self.stdout.write("Store it now: it will not be shown again.")
        self.stdout.write(plaintext)
