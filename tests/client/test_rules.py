"""The rules at the edge as the client takes them: flags, ~/.tunnel/config, auth_ok."""

import json

import pytest

from client.cli import edge_rules, parse_command_line
from client.config import ConfigError, Target, resolve_all, stored_targets
from client.rules import NO_RULES, EdgeRules

ANN = "ann:correct horse"


def configs(tmp_path, config=None, targets=None, rules=NO_RULES):
    path = tmp_path / "config"
    if config is not None:
        path.write_text(json.dumps(config))
    return resolve_all(
        targets or [Target(3000)],
        server=None,
        token="lmn_x",
        max_concurrency=8,
        environ={},
        config_path=path,
        rules=rules,
    )


def test_flags_are_repeatable():
    """--basic-auth, --allow-cidr and --deny-cidr may each be given several times."""
    args = parse_command_line(
        [
            "http",
            "3000",
            "--basic-auth",
            ANN,
            "--basic-auth",
            "bob:another-pass",
            "--allow-cidr",
            "10.0.0.0/8",
            "--allow-cidr",
            "::1",
            "--deny-cidr",
            "10.9.0.0/16",
        ]
    )
    assert edge_rules(args) == EdgeRules(
        (ANN, "bob:another-pass"), ("10.0.0.0/8", "::1"), ("10.9.0.0/16",)
    )


def test_rules_never_show_a_password():
    """Printing the rules or a config holding them does not show the password."""
    rules = EdgeRules(basic_auth=(ANN,))
    assert "horse" not in repr(rules)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (EdgeRules(basic_auth=("ann:short",)), "at least 8 characters"),
        (EdgeRules(basic_auth=("nocolon-here",)), "user:password"),
        (EdgeRules(allow_cidr=("10.0.0.0/33",)), "not an IP network"),
        (EdgeRules(deny_cidr=("localhost",)), "deny rule"),
    ],
)
def test_bad_flags_are_refused_with_a_reason(tmp_path, rules, message):
    """A bad rule on the command line is a ConfigError saying which (exit status 2)."""
    with pytest.raises(ConfigError, match=message):
        configs(tmp_path, rules=rules)


def test_config_file_rules_at_the_top_and_per_tunnel(tmp_path):
    """Top-level rules hold for every tunnel; a tunnel's own key replaces that kind."""
    config = {
        "basic_auth": [ANN],
        "allow_cidr": ["10.0.0.0/8"],
        "tunnels": {
            "web": {"port": 3000},
            "api": {"port": 4000, "allow_cidr": ["192.0.2.0/24"], "deny_cidr": "192.0.2.9"},
        },
    }
    (tmp_path / "config").write_text(json.dumps(config))
    targets = stored_targets([], tmp_path / "config")
    web, api = configs(tmp_path, config, targets)
    assert web.rules == EdgeRules((ANN,), ("10.0.0.0/8",))
    assert api.rules == EdgeRules((ANN,), ("192.0.2.0/24",), ("192.0.2.9",))


def test_flags_replace_the_config_file(tmp_path):
    """A flag replaces its kind of rule from the file and leaves the others."""
    config = {"basic_auth": [ANN], "allow_cidr": ["10.0.0.0/8"]}
    (chosen,) = configs(tmp_path, config, rules=EdgeRules(allow_cidr=("::1",)))
    assert chosen.rules == EdgeRules((ANN,), ("::1",))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"basic_auth": [ANN, 7]}, "list of strings"),
        ({"allow_cidr": ["10.0.0.0/33"]}, "not an IP network"),
        ({"tunnels": {"web": {"port": 1, "basic_auth": ["ann:short"]}}}, "tunnel 'web'"),
        ({"tunnels": {"web": {"port": 1, "deny_cidrs": []}}}, "unknown key 'deny_cidrs'"),
        ({"allow_cidrs": []}, "unknown key 'allow_cidrs'"),
    ],
)
def test_bad_config_rules_are_refused_with_a_reason(tmp_path, config, message):
    """A malformed rule in ~/.tunnel/config is a ConfigError naming where it is."""
    (tmp_path / "config").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message):
        configs(tmp_path, config, stored_targets([], tmp_path / "config"))


def test_unconfirmed_rules_are_named():
    """A server whose auth_ok does not name a kind of rule asked for has not applied it."""
    rules = EdgeRules((ANN,), ("10.0.0.0/8",), ("10.9.0.0/16",))
    assert rules.unconfirmed(["basic auth", "allow 10.0.0.0/8", "deny 10.9.0.0/16"]) == []
    assert rules.unconfirmed(["allow 10.0.0.0/8"]) == ["basic auth", "deny"]
    assert rules.unconfirmed([]) == ["basic auth", "allow", "deny"]
    assert EdgeRules().unconfirmed([]) == []
