"""Reserved subdomains: the module, the command and the admin."""

from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from tokens import reservations
from tokens.models import Reservation, Token

pytestmark = pytest.mark.django_db


@pytest.fixture
def token() -> Token:
    return Token.objects.issue("shop-team")[0]


def reserve_command(*args: str) -> str:
    out = StringIO()
    call_command("reserve_subdomain", *args, stdout=out)
    return out.getvalue()


def test_a_reserved_name_is_reserved_for_its_token(token):
    """reserved_for() names the token a reservation is for, and nothing otherwise."""
    reservations.reserve("shop", token)
    assert async_to_sync(reservations.reserved_for)("shop") == token.id
    assert async_to_sync(reservations.reserved_for)("other") is None


@pytest.mark.parametrize(
    ("name", "problem"), [("ab", "3 to 63"), ("Shop!", "lower case"), ("admin", "block list")]
)
def test_names_no_client_could_get_are_not_reserved(token, name, problem):
    """The label rules and the block list hold for reservations too."""
    with pytest.raises(reservations.ReservationError, match=problem):
        reservations.reserve(name, token)
    assert not Reservation.objects.exists()


def test_a_name_is_reserved_once(token):
    """A second reservation of a name says which token has it."""
    reservations.reserve("shop", token)
    other = Token.objects.issue("other")[0]
    with pytest.raises(reservations.ReservationError, match="shop-team"):
        reservations.reserve("shop", other)


def test_the_command_reserves_and_releases(token):
    """reserve_subdomain NAME --token NAME reserves; --release drops it."""
    assert "Reserved 'shop'" in reserve_command("shop", "--token", "shop-team")
    assert Reservation.objects.get().token == token
    assert "Released 'shop'" in reserve_command("shop", "--release")
    assert not Reservation.objects.exists()


def test_the_command_explains_what_is_wrong(token):
    """An unknown token, a blocked name and releasing a free name are errors, not tracebacks."""
    with pytest.raises(CommandError, match="No token"):
        reserve_command("shop", "--token", "nobody")
    with pytest.raises(CommandError, match="block list"):
        reserve_command("admin", "--token", "shop-team")
    with pytest.raises(CommandError, match="not reserved"):
        reserve_command("shop", "--release")
    with pytest.raises(CommandError, match="--token"):
        reserve_command("shop")


def test_the_admin_validates_reservations(token, django_user_model, settings):
    """The admin form refuses a blocked name with the reason, and saves a good one."""
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client(HTTP_HOST=settings.LUMINET_TUNNEL_DOMAIN)
    client.force_login(user)
    add = reverse("admin:tokens_reservation_add")
    refused = client.post(add, {"subdomain": "admin", "token": token.pk})
    assert refused.status_code == 200
    assert "block list" in refused.content.decode()
    saved = client.post(add, {"subdomain": "Shop", "token": token.pk})
    assert saved.status_code == 302
    assert Reservation.objects.get().subdomain == "shop"


def test_a_reservation_is_made_by_token_name(token):
    """reserve() takes a token's name, and refuses a name no usable token has."""
    assert reservations.reserve("shop", "shop-team").token == token
    with pytest.raises(ValueError, match="no token named 'nobody'"):
        reservations.reserve("cart", "nobody")
    Token.objects.filter(pk=token.pk).revoke()
    with pytest.raises(ValueError, match="no token named 'shop-team'"):
        reservations.reserve("cart", "shop-team")


def test_reserving_again_for_the_same_token_keeps_the_reservation(token):
    """A repeated reservation for the token that has the name is not an error."""
    first = reservations.reserve("shop", token)
    assert reservations.reserve("shop", "shop-team") == first


def test_a_revoked_token_gets_no_reservation(token):
    """Reserving for a revoked token says so."""
    Token.objects.filter(pk=token.pk).revoke()
    token.refresh_from_db()
    with pytest.raises(reservations.ReservationError, match="revoked"):
        reservations.reserve("shop", token)


def test_the_command_lists_and_releases_by_option(token):
    """--list shows each name with its token; --release NAME drops one."""
    assert reserve_command("--list") == "No reservations.\n"
    reserve_command("shop", "--token", "shop-team")
    listed = reserve_command("--list")
    assert listed.startswith("shop\tshop-team (") and listed.endswith("[active]\n")
    assert "Released 'shop'" in reserve_command("--release", "shop")
    assert reserve_command("--list") == "No reservations.\n"


def test_the_command_refuses_a_name_reserved_for_another_token(token):
    """Reserving another token's name is an error naming the holder."""
    Token.objects.issue("other")
    reserve_command("shop", "--token", "shop-team")
    with pytest.raises(CommandError, match="already reserved for shop-team"):
        reserve_command("shop", "--token", "other")
