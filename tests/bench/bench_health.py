"""Benchmark: `gates run` against the reference vs. the same probes as a sequential shell loop.

Prints medians and ratios; it asserts nothing about time. Run with `make bench`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures.oroboros.deployment import PORT_NAMES, ROUTES
from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir

ROUNDS = 7


def timed(argv: list[str]) -> float:
    """Wall time of one command (its exit code is reported, not judged)."""
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def shell_loop(ports: dict[str, int]) -> str:
    """The upstream health script's probes, strictly sequential, with curl/pg_isready/redis-cli."""
    lines = ["set -u"]
    for name in PORT_NAMES:
        if name not in ("postgres", "redis", "proxy"):
            lines.append(f"curl -fsS -m 3 http://127.0.0.1:{ports[name]}/health >/dev/null")
    for host, _ in ROUTES:
        lines.append(f"curl -fsS -m 3 -H 'Host: {host}' http://127.0.0.1:{ports['proxy']}/health >/dev/null")
    lines.append(f"pg_isready -q -h 127.0.0.1 -p {ports['postgres']} -U postgres -d builder_control")
    lines.append(f"redis-cli -h 127.0.0.1 -p {ports['redis']} ping | grep -q PONG")
    return "\n".join(lines)


def main() -> int:
    """Start the reference, time each variant ROUNDS times, print medians and ratios, stop it."""
    ref = REFERENCES["oroboros"]
    state = default_state_dir("bench")
    ref.down(state)
    args = ref.up(state)
    ports = {
        a.split("=")[0].removeprefix("ports."): int(a.split("=")[1]) for a in args if a.startswith("ports.")
    }
    out = Path(tempfile.mkdtemp(prefix="gates-bench-"))
    gates = [sys.executable, "-m", "gates", "run", *args, "--out", str(out), "--quiet"]
    script = shell_loop(ports)
    missing = [tool for tool in ("curl", "pg_isready", "redis-cli") if shutil.which(tool) is None]
    try:
        health = [timed([*gates, "--gate", "runtime-health"]) for _ in range(ROUNDS)]
        full = [timed(gates) for _ in range(ROUNDS)]
        loop = [timed(["bash", "-c", script]) for _ in range(ROUNDS)] if not missing else []
    finally:
        ref.down(state)
        shutil.rmtree(out, ignore_errors=True)
    m_health, m_full = statistics.median(health), statistics.median(full)
    print(f"rounds: {ROUNDS} (medians of wall-clock seconds, 2-core machine)")
    print(f"gates run --gate runtime-health (36 checks):      {m_health:.3f}s")
    print(f"gates run runtime-health + runtime-topology (98): {m_full:.3f}s")
    if loop:
        m_loop = statistics.median(loop)
        print(f"sequential curl/pg_isready/redis-cli loop (17 probes, status only): {m_loop:.3f}s")
        print(f"ratio runtime-health / shell loop: {m_health / m_loop:.2f}x")
        print(f"ratio full run / shell loop:       {m_full / m_loop:.2f}x")
    else:
        print(f"shell loop skipped: {', '.join(missing)} not installed")
    print(f"full run within the 2 s goal: {'yes' if m_full < 2.0 else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
