from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from tokens import crypto
from tokens.models import Token


class Command(BaseCommand):
    help = (
        "Revoke every token whose display prefix (e.g. lmn_Ab3x) or name is exactly the argument "
        "(a whole pasted token works too)."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix_or_name", help="a token's display prefix or its name")

    def handle(self, *args, prefix_or_name, **options):
        if crypto.looks_like_token(prefix_or_name):
            # A whole token was pasted: find it by digest, and never echo it.
            matches = Token.objects.filter(digest=crypto.digest(prefix_or_name))
            shown = crypto.display_prefix(prefix_or_name) + "…"
        else:
            matches = Token.objects.filter(Q(prefix=prefix_or_name) | Q(name=prefix_or_name))
            shown = repr(prefix_or_name)
        found = list(matches)
        if not found:
            raise CommandError(f"No token has the prefix or name {shown}.")
        count = matches.revoke()
        for token in found:
            self.stdout.write(
                f"Revoked {token}." if not token.revoked else f"Already revoked: {token}."
            )
        self.stdout.write(f"{count} token(s) revoked.")
