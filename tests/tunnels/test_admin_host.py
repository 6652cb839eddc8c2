"""LUMINET_ADMIN_HOST: parsed outside the tunnel domain, classified as the main host,
and given the admin's URLconf."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tunnels.hosts import MainHost, TunnelHost, classify
from tunnelsite.adminhost import ADMIN_URLCONF, SITE_URLCONF, urlconf_for
from tunnelsite.settings import parse_admin_host


def test_an_admin_host_is_a_lower_case_bare_host_name():
    """A host name is kept lower-cased, without a trailing dot."""
    assert parse_admin_host("Admin.Example.NET.", "tunnel.example.com") == "admin.example.net"


@pytest.mark.parametrize("value", ["tunnel.example.com", "admin.tunnel.example.com"])
def test_an_admin_host_inside_the_tunnel_domain_is_refused(value):
    """The tunnel domain itself or a host under it is refused, naming the reason."""
    with pytest.raises(ImproperlyConfigured, match="inside the tunnel domain"):
        parse_admin_host(value, "tunnel.example.com")


@pytest.mark.parametrize("value", ["https://admin.example.net", "admin.example.net:8443", "a..b"])
def test_an_admin_host_that_is_not_a_host_name_is_refused(value):
    """A URL, a port or an empty label is refused with an example of a good value."""
    with pytest.raises(ImproperlyConfigured, match=r"such as admin\.example\.net"):
        parse_admin_host(value, "tunnel.example.com")


@override_settings(
    LUMINET_TUNNEL_DOMAIN="tunnel.example.com", LUMINET_ADMIN_HOST="admin.example.net"
)
def test_the_admin_host_takes_the_main_hosts_stack_and_the_admin_urlconf():
    """The admin host is classified as the main host and routed to the admin's URLconf;
    the tunnel domain gets the site's, and tunnels stay tunnels."""
    assert classify("admin.example.net:443") == MainHost()
    assert classify("web.tunnel.example.com") == TunnelHost("web")
    assert urlconf_for("ADMIN.example.net:443") == ADMIN_URLCONF
    assert urlconf_for("tunnel.example.com") == SITE_URLCONF


@override_settings(LUMINET_TUNNEL_DOMAIN="tunnel.example.com", LUMINET_ADMIN_HOST=None)
def test_without_an_admin_host_the_default_urlconf_serves_all():
    """Unset, every main-host request takes the default URLconf (admin included), and
    another host is not the main host."""
    assert urlconf_for("tunnel.example.com") is None
    assert classify("admin.example.net") is None
