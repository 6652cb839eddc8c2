"""Client settings: where they come from and what is refused."""

import json

import pytest

from client.config import ConfigError, resolve, server_url


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
