"""``--verify-webhook``: parsed, checked and kept out of sight on the client."""

import json

import pytest

from client.cli import parse_command_line, tunnel_targets
from client.config import ConfigError, resolve_all, stored_targets
from client.keeper import unconfirmed_webhooks


def configs(argv, tmp_path):
    args = parse_command_line(argv)
    return resolve_all(
        tunnel_targets(args),
        server=None,
        token="lmn_x",
        max_concurrency=8,
        environ={},
        config_path=tmp_path / "config",
    )


def test_the_flag_is_repeatable_and_reaches_the_config(tmp_path):
    argv = ["http", "3000", "--verify-webhook", "github:s3cret", "--verify-webhook", "stripe:x"]
    (config,) = configs(argv, tmp_path)
    assert config.webhooks == ("github:s3cret", "stripe:x")
    assert "s3cret" not in repr(config)


def test_several_ports_each_get_the_rules(tmp_path):
    argv = ["--port", "3000", "--port", "3001", "--verify-webhook", "slack:abc"]
    assert [c.webhooks for c in configs(argv, tmp_path)] == [("slack:abc",), ("slack:abc",)]


def test_a_bad_rule_is_a_config_error_that_hides_the_secret(tmp_path):
    with pytest.raises(ConfigError, match="--verify-webhook: webhook rule: unknown webhook"):
        configs(["http", "3000", "--verify-webhook", "gitlab:s3cret"], tmp_path)
    with pytest.raises(ConfigError) as raised:
        configs(["http", "3000", "--verify-webhook", "stripe:half:secret"], tmp_path)
    assert "half" not in str(raised.value)


def test_start_takes_rules_from_the_config_file(tmp_path):
    path = tmp_path / "config"
    tunnels = {"hooks": {"port": 4000, "verify_webhook": ["github:s3cret"]}}
    path.write_text(json.dumps({"tunnels": tunnels}))
    (target,) = stored_targets(["hooks"], path)
    assert target.webhooks == ("github:s3cret",)
    with pytest.raises(SystemExit):
        parse_command_line(["start", "hooks", "--verify-webhook", "github:x"])


def test_the_config_file_key_is_a_list(tmp_path):
    path = tmp_path / "config"
    path.write_text(json.dumps({"tunnels": {"hooks": {"port": 1, "verify_webhook": "github:x"}}}))
    with pytest.raises(ConfigError, match="'verify_webhook' must be a list"):
        stored_targets(["hooks"], path)


def test_rules_the_server_did_not_confirm():
    asked = ("github:a", "github:b", "stripe:c")
    assert unconfirmed_webhooks(asked, ("webhook github", "webhook stripe")) == []
    assert unconfirmed_webhooks(asked, ("basic auth", "webhook github")) == ["stripe"]
    assert unconfirmed_webhooks((), ()) == []
