"""Benchmark: the whole running system at steady rates: freshness p50/p95/p99 and resident memory per part.

    make bench-system                        # or: .venv/bin/python -m bench.system --rates 2 20 200 --minutes 5

For each rate, `meetup-demo` runs the generator at that many RSVPs per second through the producer, Kafka,
the chain (bronze, silver + PostgreSQL, gold, score) and the app, each in its own process, on tables of
their own. Every 5 s the resident memory (RSS, whole process tree) of each part is sampled: the replay
server, the producer, the chain (Python driver + its JVM), the app, and the stack's Kafka broker, S3 server
and PostgreSQL (postmaster + backends). Freshness comes from `gold/freshness` (every silver, PostgreSQL
and gold batch records, for its rows, Kafka append -> commit visible: p50, p95, max), the first
`--warm-up` seconds left out:
- p50: row-weighted median of the batch medians;
- p95: row-weighted 95th percentile of the batch p95s (an upper estimate of p95 over rows);
- p99: row-weighted 99th percentile of the batch maxima (an upper estimate of p99 over rows).
Writes bench/results/system.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import isolated, write_results
from common.settings import PROJECT_ROOT, Settings, load_settings
from stack import kafka as kafka_service
from stack.procs import read_pid

STAGES = ("silver", "postgres", "gold")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def weighted_quantile(pairs: list[tuple[float, int]], q: float) -> float | None:
    """pairs: (value, weight) -> the smallest value with at least q of the weight at or below it."""
    pairs = sorted((v, w) for v, w in pairs if v is not None and w)
    total, running = sum(w for _, w in pairs), 0
    for value, weight in pairs:
        running += weight
        if running >= q * total:
            return value
    return None


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def stack_pids(settings: Settings) -> dict[str, int | None]:
    base = settings.stack_dir
    return {
        "kafka broker": read_pid(base / "kafka" / "kafka.pid"),
        "S3 server": read_pid(base / "s3" / "s3proxy.pid"),
        "PostgreSQL": read_pid(base / "postgres" / "data" / "postmaster.pid"),
    }


def run_rate(base: Settings, rate: float, minutes: float, warm_up_s: float, state: Path) -> dict:
    name = f"sys{int(time.time())}r{int(rate)}"
    settings = isolated(base, name)
    kafka_service.ensure_topics(settings, ("rsvps",))
    env = {**os.environ, "KAFKA_TOPIC_PREFIX": name, "LAKEHOUSE_ROOT": settings.lakehouse_root,
           "POSTGRES_SCHEMA": settings.postgres.schema, "MEETUP_APP_WARM_UP": "0"}  # fmt: skip
    state.mkdir(parents=True, exist_ok=True)
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo.run", "--source", "generator", "--rate", str(rate), "--no-browser",
         "--state-dir", str(state), "--interval", "1 second", "--train-after", "1000000000",
         "--status-every", "60"],
        cwd=PROJECT_ROOT, env=env, stdout=(state / "demo.out").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    started = time.time()
    samples: dict[str, list[int]] = {}
    try:
        while time.time() - started < minutes * 60:
            if demo.poll() is not None:
                raise RuntimeError(f"meetup-demo exited early; see {state / 'demo.out'}")
            parts = {p.stem: read_pid(p) for p in state.glob("*.pid")}
            named = {
                "replay server": parts.get("server"),
                "producer": parts.get("producer"),
                "chain (driver + JVM)": parts.get("chain"),
                "app": parts.get("app"),
                **stack_pids(base),
            }
            for label, pid in named.items():
                if pid is not None:
                    samples.setdefault(label, []).append(tree_rss(pid))
            time.sleep(5)
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=300)
    result = {"rate_per_s": rate, "minutes": minutes, "warm_up_s": warm_up_s}
    result["memory_mb"] = {
        label: {"median": round(statistics.median(values) / 2**20), "peak": round(max(values) / 2**20)}
        for label, values in samples.items()
    }
    result.update(freshness(settings, started + warm_up_s))
    return result


def freshness(settings: Settings, after: float) -> dict:
    from datetime import datetime, timezone

    from app.data import Lakehouse

    lake = Lakehouse(settings)
    table = lake.table("gold", "freshness")
    table = table[table["visible_at"] > datetime.fromtimestamp(after, timezone.utc)]
    found = {}
    for stage in STAGES:
        rows = table[table["stage"] == stage]
        weights = list(rows["rows"])
        found[stage] = {
            "batches": len(rows),
            "rows": int(sum(weights)),
            "p50_s": _s(weighted_quantile(list(zip(rows["p50_ms"], weights, strict=True)), 0.5)),
            "p95_s": _s(weighted_quantile(list(zip(rows["p95_ms"], weights, strict=True)), 0.95)),
            "p99_s": _s(weighted_quantile(list(zip(rows["max_ms"], weights, strict=True)), 0.99)),
            "max_s": _s(rows["max_ms"].max() if len(rows) else None),
        }
    return found


def _s(ms) -> float | None:
    return None if ms is None else round(float(ms) / 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 20, 200])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--warm-up", type=float, default=90, help="seconds left out at the start of each run")
    args = parser.parse_args(argv)
    base = load_settings()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-system-") as tmp:
        for rate in args.rates:
            log(f"{rate:g} RSVPs/s for {args.minutes:g} min")
            results.append(run_rate(base, rate, args.minutes, args.warm_up, Path(tmp) / f"r{rate:g}"))
            log(str(results[-1]))
    lines = ["| RSVPs/s | stage | batches | rows | p50 s | p95 s (upper est.) | p99 s (upper est.) | max s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        for stage in STAGES:
            s = r[stage]
            lines.append(f"| {r['rate_per_s']:g} | {stage} | {s['batches']} | {s['rows']:,} | {s['p50_s']} | "
                         f"{s['p95_s']} | {s['p99_s']} | {s['max_s']} |")  # fmt: skip
    labels = list(results[0]["memory_mb"])
    lines += ["", "| RSS MB, median / peak | " + " | ".join(f"{r['rate_per_s']:g}/s" for r in results) + " |",
              "|---|" + "---:|" * len(results)]  # fmt: skip
    for label in labels:
        cells = [r["memory_mb"].get(label, {}) for r in results]
        lines.append(f"| {label} | " + " | ".join(f"{c.get('median')} / {c.get('peak')}" for c in cells) + " |")
    write_results("system", {"target_p95_s": 10, "results": results}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
