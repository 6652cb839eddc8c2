"""Client settings: where they come from and what is refused."""

import json

import pytest

from client.config import (
    ConfigError,
    Target,
    resolve,
    resolve_all,
    server_url,
    stored_targets,
    targets_from_ports,
)


def make(tmp_path, *, config=None, environ=None, **flags):
    path = tmp_path / "config"
    if config is not None:
        path.write_text(config if isinstance(config, str) else json.dumps(config))
    args = {"port": 3000, "host": None, "server": None, "token": None, "max_concurrency": 8}
    args.update(flags)
    return resolve(**args, environ=environ or {}, config_path=path)


def test_flags_win_over_environment_over_file(tmp_path):
    """A flag beats TUNNEL_*, which beats ~/.tunnel/config."""
    file = {"server": "https://file.example.com", "token": "lmn_file"}
    env = {"TUNNEL_SERVER": "https://env.example.com", "TUNNEL_TOKEN": "lmn_env"}
    assert make(tmp_path, config=file).token == "lmn_file"
    assert make(tmp_path, config=file, environ=env).server == "wss://env.example.com/tunnel"
    chosen = make(tmp_path, config=file, environ=env, token="lmn_flag", server="http://f:1")
    assert (chosen.token, chosen.server) == ("lmn_flag", "ws://f:1/tunnel")


def test_rebalance_seconds_come_from_the_environment_and_are_checked(tmp_path):
    """TUNNEL_REBALANCE_SECONDS: 30 unset, a positive number of seconds otherwise."""
    assert make(tmp_path, token="lmn_t").rebalance_seconds == 30.0
    env = {"TUNNEL_REBALANCE_SECONDS": "2.5"}
    assert make(tmp_path, token="lmn_t", environ=env).rebalance_seconds == 2.5
    for bad in ("0", "-1", "nan", "soon", "86401"):
        env = {"TUNNEL_REBALANCE_SECONDS": bad}
        with pytest.raises(ConfigError, match="TUNNEL_REBALANCE_SECONDS must be"):
            make(tmp_path, token="lmn_t", environ=env)


def test_token_is_never_in_repr(tmp_path):
    """Printing the config does not show the token."""
    assert "lmn_secret" not in repr(make(tmp_path, token="lmn_secret"))


def test_missing_token_says_how_to_give_one(tmp_path):
    """Without a token the error names every way to provide one."""
    with pytest.raises(ConfigError, match="TUNNEL_TOKEN"):
        make(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://tunnel.example.com", "wss://tunnel.example.com/tunnel"),
        ("http://localhost:8000/", "ws://localhost:8000/tunnel"),
        ("wss://t.example.com/custom", "wss://t.example.com/custom"),
        ("http://localhost:8000/tunnel/", "ws://localhost:8000/tunnel"),
    ],
)
def test_server_urls(value, expected):
    """Base URLs gain the /tunnel path and a WebSocket scheme."""
    assert server_url(value) == expected


@pytest.mark.parametrize(
    "value", ["ftp://x", "tunnel.example.com", "https://u:p@x.example.com", "https://x/?token=1"]
)
def test_bad_server_urls_are_refused(value):
    """Server URLs with credentials, queries or odd schemes are refused."""
    with pytest.raises(ConfigError):
        server_url(value)


def test_a_server_without_a_scheme_gets_the_url_to_type():
    with pytest.raises(ConfigError) as refused:
        server_url("localhost:8000")
    assert str(refused.value) == (
        "server must be a URL with its scheme, not 'localhost:8000': "
        "https://localhost:8000 (or http:// for a server without TLS)"
    )


@pytest.mark.parametrize(
    "flags",
    [
        {"port": 0},
        {"port": 70000},
        {"host": "evil.example/x"},
        {"host": "user@evil.example"},
        {"max_concurrency": 0},
    ],
)
def test_bad_local_address_is_refused(tmp_path, flags):
    """Ports out of range and hosts that smuggle a path or user are refused."""
    with pytest.raises(ConfigError):
        make(tmp_path, token="lmn_x", **flags)


@pytest.mark.parametrize("content", ["not json", "[1]", '{"token": 5}'])
def test_broken_config_file_is_reported(tmp_path, content):
    """A config file that is not the expected JSON object is a clear error."""
    with pytest.raises(ConfigError, match="config"):
        make(tmp_path, config=content)


# -- several tunnels -----------------------------------------------------------

TUNNELS = {
    "web": {"port": 5173, "host_header": "rewrite"},
    "api": {"port": 8000, "host": "127.0.0.1", "subdomain": "my-api"},
}


def several(tmp_path, targets, **flags):
    args = {"server": None, "token": "lmn_x", "max_concurrency": 8}
    args.update(flags)
    return resolve_all(targets, **args, environ={}, config_path=tmp_path / "config")


def test_named_tunnels_come_from_the_config_file(tmp_path):
    """`start web api` gets each tunnel's port, host, subdomain and host header."""
    path = tmp_path / "config"
    path.write_text(json.dumps({"token": "lmn_file", "tunnels": TUNNELS}))
    web, api = several(tmp_path, stored_targets(["web", "api"], path), token=None)
    assert (web.name, web.local_origin, web.host_header, web.subdomain) == (
        "web",
        "http://localhost:5173",
        "rewrite",
        None,
    )
    assert (api.name, api.local_origin, api.subdomain, api.token) == (
        "api",
        "http://127.0.0.1:8000",
        "my-api",
        "lmn_file",
    )
    assert [t.name for t in stored_targets([], path)] == ["web", "api"]  # start --all


@pytest.mark.parametrize(
    ("tunnels", "message"),
    [
        ({}, "names no tunnels"),
        ({"web": {"host": "x"}}, "tunnel 'web' needs a \"port\""),
        ({"web": {"port": "3000"}}, "'port' must be a number"),
        ({"web": {"port": 3000, "subdomian": "x"}}, "unknown key 'subdomian'"),
        ({"web/x": {"port": 3000}}, "a tunnel name is letters"),
        ({"web": 3000}, "must be an object"),
    ],
)
def test_a_wrong_tunnel_in_the_config_file_is_named(tmp_path, tunnels, message):
    path = tmp_path / "config"
    path.write_text(json.dumps({"tunnels": tunnels}))
    with pytest.raises(ConfigError) as refused:
        stored_targets([], path)
    assert message in str(refused.value)


def test_an_unknown_tunnel_name_lists_the_known_ones(tmp_path):
    path = tmp_path / "config"
    path.write_text(json.dumps({"tunnels": TUNNELS}))
    with pytest.raises(ConfigError, match=r"no tunnel 'wbe' in .* \(it has: api, web\)"):
        stored_targets(["wbe"], path)


def test_ports_repeated_give_tunnels_named_by_port(tmp_path):
    targets = targets_from_ports([3000, 5173], Target(0, host_header="rewrite"))
    configs = several(tmp_path, targets)
    assert [(c.name, c.local_port, c.host_header) for c in configs] == [
        ("http-3000", 3000, "rewrite"),
        ("http-5173", 5173, "rewrite"),
    ]
    (single,) = targets_from_ports([3000], Target(0))
    assert single.name == "command_line"  # ngrok's name, which scripts look for
    with pytest.raises(ConfigError, match="--subdomain names one tunnel"):
        targets_from_ports([3000, 5173], Target(0, subdomain="shop"))


@pytest.mark.parametrize(
    "targets",
    [
        [Target(3000, name="a"), Target(3000, name="b")],
        [Target(3000, subdomain="shop", name="a"), Target(4000, subdomain="shop", name="b")],
    ],
)
def test_two_tunnels_never_ask_for_one_subdomain(tmp_path, targets):
    """Same port without subdomains (both would ask for its remembered name), or the
    same subdomain: refused before anything connects."""
    with pytest.raises(ConfigError, match="tunnels 'a' and 'b' both ask for"):
        several(tmp_path, targets)
