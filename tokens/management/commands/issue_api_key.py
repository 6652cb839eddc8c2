"""``manage.py issue_api_key --name NAME``: a key for the admin API and the metrics."""

from django.core.management.base import BaseCommand, CommandError

from tokens.models import ApiKey, DuplicateName


class Command(BaseCommand):
    help = (
        "Issue a key for the admin API (/api/) and /metrics. Prints the key alone on the "
        "last line; only its digest is stored, so it cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="who or what will use the key")
        parser.add_argument("--revoke", action="store_true", help="revoke the key of that name")

    def handle(self, *args, name: str, revoke: bool, **options):
        name = name.strip()
        if not name:
            raise CommandError("--name must not be empty.")
        if revoke:
            count = ApiKey.objects.filter(name=name, revoked=False).update(revoked=True)
            if not count:
                raise CommandError(f"no API key named {name!r} to revoke.")
            self.stdout.write(f"Revoked API key {name!r}.")
            return
        if len(name) > 100:
            raise CommandError("--name must be at most 100 characters.")
        try:
            key, plaintext = ApiKey.objects.issue(name)
        except DuplicateName as exc:
            raise CommandError(f"{exc}; choose another name.") from exc
        self.stdout.write(f"Issued API key {key.name!r} ({key.prefix}…).")
        self.stdout.write("Store it now: it will not be shown again. Send it as")
        self.stdout.write("'Authorization: Bearer <key>'.")
        self.stdout.write(plaintext)
