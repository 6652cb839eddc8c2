"""Turn a run's figures into ratios, target verdicts and the printed tables.

Units: MB = 10**6 bytes and KB = 10**3 bytes throughout, so each bound from
issues 4 and 12 is checked at its strictest reading.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

TARGETS = "issues 4 and 12"
COLUMNS = ("direct", "tunnel_memory", "tunnel_redis", "daphne_hello")
HEADINGS = ("direct", "tunnel mem", "tunnel redis", "bare daphne")
TUNNELS = ("tunnel_memory", "tunnel_redis")

#: Bounds from issue 4.
RPS_VS_DAPHNE = 0.15
ADDED_P50_MS = 1.5
TRANSFER_MB_S = 125.0
SLOW_WALL_FACTOR = 1.2
KB_PER_IDLE_TUNNEL = 64.0
URL_SECONDS = 1.0
PEAK_RSS_MB = 150.0

#: Behind Caddy (issue 12): the columns, and the bound on two processes on Redis ÷
#: one in memory for small requests (transfers on Redis: TRANSFER_MB_S).
CADDY_COLUMNS = ("caddy_memory", "caddy_redis")
CADDY_HEADINGS = ("Caddy, 1 process in memory", "Caddy, 2 processes on Redis")
CADDY_RPS_VS_MEMORY = 0.8


def get(data: Any, *path: str) -> Any:
    """``data[path0][path1]...`` or None where anything is missing or failed."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Tunnel ÷ direct and tunnel ÷ bare daphne for requests/s; added p50 at 1 connection."""
    small = results.get("small_get", {})
    out: dict[str, Any] = {}
    for layer in TUNNELS:
        entry: dict[str, Any] = {}
        for conns in ("1", "50"):
            rps = get(small, layer, conns, "rps")
            entry[f"rps_vs_direct_{conns}"] = _ratio(rps, get(small, "direct", conns, "rps"))
            entry[f"rps_vs_daphne_{conns}"] = _ratio(rps, get(small, "daphne_hello", conns, "rps"))
        p50 = get(small, layer, "1", "p50_ms")
        direct_p50 = get(small, "direct", "1", "p50_ms")
        entry["added_p50_ms_1"] = None if p50 is None or direct_p50 is None else p50 - direct_p50
        out[layer] = entry
    return out


_COMPARE = {">=": float.__ge__, "<=": float.__le__, "<": float.__lt__}


def _verdict(name: str, value: float | None, limit: float, comparison: str, unit: str) -> dict:
    met = None if value is None else _COMPARE[comparison](float(value), limit)
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "comparison": comparison,
        "unit": unit,
        "met": met,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 4, per layer where it applies: met, not met, or not measured."""
    found = []
    rat = results.get("ratios", {})
    label = {"tunnel_memory": "memory", "tunnel_redis": "redis"}
    for layer in TUNNELS:
        found.append(
            _verdict(
                f"GET req/s at 50 conns, {label[layer]} ÷ bare daphne",
                get(rat, layer, "rps_vs_daphne_50"),
                RPS_VS_DAPHNE,
                ">=",
                unit="x",
            )
        )
    for layer in TUNNELS:
        found.append(
            _verdict(
                f"added p50 at 1 conn, {label[layer]}",
                get(rat, layer, "added_p50_ms_1"),
                ADDED_P50_MS,
                "<=",
                unit="ms",
            )
        )
    for way in ("download", "upload"):
        found.append(
            _verdict(
                f"{way} through the tunnel on Redis",
                get(results, "transfer", way, "tunnel_redis", "mb_s"),
                TRANSFER_MB_S,
                ">=",
                unit="MB/s",
            )
        )
    caddy = results.get("caddy", {})
    for conns in ("1", "50"):
        found.append(
            _verdict(
                f"behind Caddy, GET req/s at {conns} conn(s), 2 processes on Redis ÷ 1 in memory",
                _ratio(
                    get(caddy, "caddy_redis", conns, "rps"),
                    get(caddy, "caddy_memory", conns, "rps"),
                ),
                CADDY_RPS_VS_MEMORY,
                ">=",
                unit="x",
            )
        )
    for way in ("download", "upload"):
        found.append(
            _verdict(
                f"behind Caddy, {way} on Redis (2 processes)",
                get(caddy, "caddy_redis", way, "mb_s"),
                TRANSFER_MB_S,
                ">=",
                unit="MB/s",
            )
        )
    slow = results.get("concurrent_slow", {})
    delay = slow.get("delay_s", 1.0)
    for layer in TUNNELS:
        found.append(
            _verdict(
                f"{slow.get('requests', 50)} x {delay:g} s requests, wall, {label[layer]}",
                get(slow, layer, "wall_s"),
                SLOW_WALL_FACTOR * delay,
                "<=",
                unit="s",
            )
        )
    for layer in TUNNELS:
        per = get(results, "idle_memory", layer, "per_tunnel_bytes")
        found.append(
            _verdict(
                f"server memory per idle tunnel, {label[layer]}",
                None if per is None else per / 1e3,
                KB_PER_IDLE_TUNNEL,
                "<=",
                unit="KB",
            )
        )
    for layer in TUNNELS:
        found.append(
            _verdict(
                f"client start to first 200 (median), {label[layer]}",
                get(results, "startup", layer, "url_s_median"),
                URL_SECONDS,
                "<=",
                unit="s",
            )
        )
    for layer in TUNNELS:
        peak = get(results, "slow_reader", layer, "peak_rss_bytes")
        found.append(
            _verdict(
                f"peak server RSS, slow 1 GB download, {label[layer]}",
                None if peak is None else peak / 1e6,
                PEAK_RSS_MB,
                "<",
                unit="MB",
            )
        )
    return found


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------
# The printed table


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _cell(data: Any, *path: str, scale: float = 1, digits: int = 0) -> str:
    """One table cell: the figure at ``path``, or ERROR, skipped or - on the way there."""
    for key in (*path, None):
        if isinstance(data, dict):
            if "error" in data:
                return "ERROR"
            if "skipped" in data:
                return "skipped"
        if key is None:
            break
        if not isinstance(data, dict) or key not in data:
            return "-"
        data = data[key]
    return _fmt(None if data is None else data * scale, digits)


def table(results: dict[str, Any]) -> str:
    """The one table: every figure of the run side by side, then ratios and targets."""
    meta = results["meta"]
    lines = [
        f"Luminet bench ({meta['mode']}), {meta['started']}, {meta['cpus']} CPUs, "
        f"load average {meta['load_before']} -> {meta['load_after']}, commit {meta['commit']}",
        "",
    ]
    rows: list[tuple[str, ...]] = [("figure", *HEADINGS)]
    small = results.get("small_get", {})
    if "skipped" in small:
        rows.append((f"small GET: skipped ({small['skipped']})", "", "", "", ""))
    else:
        rows += _get_rows(small, COLUMNS)
    transfer = results.get("transfer", {})
    size_mb = transfer.get("size_bytes", 0) / 1e6
    for way in ("download", "upload"):
        rows.append(
            (
                f"{way} MB/s, {size_mb:g} MB",
                *(_cell(transfer, way, c, "mb_s", digits=1) for c in COLUMNS),
            )
        )
    slow = results.get("concurrent_slow", {})
    rows.append(
        (
            f"{slow.get('requests')} x {slow.get('delay_s', 0):g} s requests: wall s",
            "-",
            *(_cell(slow, c, "wall_s", digits=2) for c in TUNNELS),
            "-",
        )
    )
    idle = results.get("idle_memory", {})
    rows.append(
        (
            f"server KB per idle tunnel ({idle.get('tunnels')})",
            "-",
            *(_cell(idle, c, "per_tunnel_bytes", scale=1e-3, digits=1) for c in TUNNELS),
            "-",
        )
    )
    rows.append(
        (
            "client idle RSS MB",
            "-",
            *(_cell(idle, "client", c, "rss_bytes", scale=1e-6, digits=1) for c in TUNNELS),
            "-",
        )
    )
    startup = results.get("startup", {})
    rows.append(
        (
            f"client start -> first 200, s (median of {startup.get('runs')})",
            "-",
            *(_cell(startup, c, "url_s_median", digits=2) for c in TUNNELS),
            "-",
        )
    )
    reader = results.get("slow_reader", {})
    rows.append(
        (
            f"peak server RSS MB, {reader.get('size_bytes', 0) / 1e9:g} GB at "
            f"{reader.get('rate_bytes_s', 0) / 1e6:g} MB/s",
            "-",
            *(_cell(reader, c, "peak_rss_bytes", scale=1e-6, digits=1) for c in TUNNELS),
            "-",
        )
    )
    lines += _columns(rows)
    for layer in TUNNELS:
        entry = reader.get(layer)
        if not isinstance(entry, dict) or "read_bytes" not in entry:
            continue
        how = (
            f"stopped at the {reader.get('cap_s'):g} s cap after" if entry["capped"] else "read all"
        )
        lines.append(
            f"  slow reader, {layer}: {how} {entry['read_bytes'] / 1e6:.0f} MB at "
            f"{entry['read_mb_s']:.1f} MB/s; RSS grew {entry['growth_bytes'] / 1e6:.1f} MB "
            f"during the read{' (peak so far)' if entry['capped'] else ''}"
        )
    lines.append(f"  CPU cores kept busy (1.0 = one core of the machine's {meta['cpus']}):")
    for layer in TUNNELS:
        parts = []
        for label, path in (
            ("GET 50 conns", ("small_get", layer, "50")),
            ("download", ("transfer", "download", layer)),
            ("upload", ("transfer", "upload", layer)),
        ):
            cores = get(results, *path, "cpu_cores")
            if isinstance(cores, dict):
                parts.append(
                    f"{label}: " + ", ".join(f"{role} {value:.2f}" for role, value in cores.items())
                )
        if parts:
            lines.append(f"    {layer}: " + "; ".join(parts))
    lines += _caddy_table(results.get("caddy", {}))
    lines.append("")
    lines.append("Ratios")
    rat = results.get("ratios", {})
    for layer, name in (("tunnel_memory", "memory"), ("tunnel_redis", "redis")):
        entry = rat.get(layer, {})
        lines.append(
            f"  {name:<7} req/s ÷ direct: {_fmt(entry.get('rps_vs_direct_1'), 3)} (1 conn), "
            f"{_fmt(entry.get('rps_vs_direct_50'), 3)} (50);  "
            f"÷ bare daphne: {_fmt(entry.get('rps_vs_daphne_1'), 3)} (1), "
            f"{_fmt(entry.get('rps_vs_daphne_50'), 3)} (50);  "
            f"added p50 at 1 conn: {_fmt(entry.get('added_p50_ms_1'), 2)} ms"
        )
    lines.append("")
    lines.append(f"Targets ({TARGETS})")
    if meta["mode"] == "smoke":
        lines.append(
            "  (smoke run: sizes and durations are cut down, so these verdicts mean little)"
        )
    for target in results.get("targets", []):
        state = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
        digits = 3 if target["unit"] == "x" else 2
        lines.append(
            f"  [{state:^12}] {target['target']}: {_fmt(target['value'], digits)} "
            f"{target['unit']} (target {target['comparison']} {target['limit']:g})"
        )
    return "\n".join(lines)


def _get_rows(small: dict[str, Any], columns: Sequence[str]) -> list[tuple[str, ...]]:
    """The small GETs' rows: req/s and latency at 1 and 50 connections, and the bench's
    own sequential client, one cell per column."""
    rows: list[tuple[str, ...]] = []
    for conns in ("1", "50"):
        rows.append((f"GET req/s, {conns} conn", *(_cell(small, c, conns, "rps") for c in columns)))
        for pct in ("p50", "p99"):
            rows.append(
                (
                    f"GET {pct} ms, {conns} conn",
                    *(_cell(small, c, conns, f"{pct}_ms", digits=2) for c in columns),
                )
            )
    for pct in ("p50", "p99"):
        rows.append(
            (
                f"GET {pct} ms, 1 conn, bench's own client",
                *(_cell(small, c, "1_sequential", f"{pct}_ms", digits=2) for c in columns),
            )
        )
    return rows


def _caddy_table(caddy: dict[str, Any]) -> list[str]:
    """The rows behind Caddy (issue 12), under the main table."""
    lines = ["", "Behind Caddy (https, tls internal; the client keeps 2 connections)"]
    if "skipped" in caddy:
        return [*lines, f"  skipped: {caddy['skipped']}"]
    rows: list[tuple[str, ...]] = [("figure", *CADDY_HEADINGS)]
    rows += _get_rows(caddy, CADDY_COLUMNS)
    size_mb = caddy.get("size_bytes", 0) / 1e6
    for way in ("download", "upload"):
        rows.append(
            (
                f"{way} MB/s, {size_mb:g} MB",
                *(_cell(caddy, c, way, "mb_s", digits=1) for c in CADDY_COLUMNS),
            )
        )
    rows.append(
        (
            "GETs delivered in the process they entered",
            *(_local_share(get(caddy, c, "deliveries")) for c in CADDY_COLUMNS),
        )
    )
    lines += _columns(rows)
    lines.append("  CPU cores kept busy:")
    for column in CADDY_COLUMNS:
        parts = []
        for label, key in (("GET 50 conns", "50"), ("download", "download"), ("upload", "upload")):
            cores = get(caddy, column, key, "cpu_cores")
            if isinstance(cores, dict):
                parts.append(
                    f"{label}: " + ", ".join(f"{role} {value:.2f}" for role, value in cores.items())
                )
        if parts:
            lines.append(f"    {column}: " + "; ".join(parts))
    return lines


def _local_share(deliveries: Any) -> str:
    if not isinstance(deliveries, dict):
        return "-"
    total = deliveries.get("local", 0) + deliveries.get("layer", 0)
    if not total:
        return "-"
    return f"{deliveries.get('local', 0) / total:.0%} of {total:,.0f}"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        out.append("  ".join(cells))
        if n == 0:
            out.append("-" * len(out[0]))
    return out
