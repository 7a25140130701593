"""Benchmark: the whole running system at steady rates: freshness p50/p95/p99 and resident memory per part.

    make bench-system                        # or: .venv/bin/python -m bench.system --rates 2 20 200 --minutes 5
    make bench-soak                          # 20 RSVPs/s for 60 minutes: is the lag bounded?
    .venv/bin/python -m bench.system --rates 20 50 100 200 --minutes 15     # a sweep: where does it stop being flat?

For each rate, `meetup-demo` runs the generator at that many RSVPs per second through the producer, Kafka,
the chain (bronze, silver + PostgreSQL, gold, score) and the app, each in its own process, on tables of
their own. Every 5 s the resident memory (RSS, whole process tree) of each part is sampled: the replay
server, the producer, the chain (Python driver + its JVM), the app, and the stack's Kafka broker, S3 server
and PostgreSQL (postmaster + backends). CPU is counted the same way, after warm-up, as cores used on average
(CPU seconds / wall seconds; the machine has os.cpu_count() cores), and the chain's is split into its Python
driver, its JVM and the Python workers the JVM starts (pandas UDFs, the state store's transformWithState).
Freshness comes from `gold/freshness` (every silver, PostgreSQL
and gold batch records, for its rows, Kafka append -> commit visible: p50, p95, max), the first
`--warm-up` seconds left out:
- p50: row-weighted median of the batch medians;
- p95: row-weighted 95th percentile of the batch p95s (an upper estimate of p95 over rows);
- p99: row-weighted 99th percentile of the batch maxima (an upper estimate of p99 over rows).
Keeping up is judged over time, not on one window: a lag that grows for five minutes looks like a large
constant one. For each stage the per-batch p95 freshness is kept against the minute it was recorded, and
the run reports its slope (seconds of lag gained per minute, least squares over the run after warm-up)
and whether it is bounded: the p95 of the last third of the run is no more than 1.25 x the p95 of the
middle third (for a 60-minute run: minutes 40-60 against 20-40). bench/results/system.png draws lag over
time per stage, one panel per rate. Where a batch's time goes comes from `gold/batch_phases`: mean seconds
per batch, per query and phase.
With `--floor-minutes N` (default 3; 0 skips it) each rate first runs the floor of this stack for N minutes
(bench/floor.py: a bare Spark Kafka -> Delta append query with the same trigger, read with delta-rs), and
the table reports each stage's p50 and p95 divided by the floor's from the same run.
Writes bench/results/system.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import psutil

from bench import floor
from bench.common import RESULTS, isolated, log, write_results
from common.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse import catalogue
from stack import kafka as kafka_service
from stack.procs import read_pid

STAGES = ("silver", "postgres", "gold")


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


def chain_role(process: psutil.Process, root_pid: int) -> str:
    """Which part of the chain a process is: its Python driver (the root), the JVM, or a Python worker."""
    if process.pid == root_pid:
        return "chain: Python driver"
    name = process.name()
    return "chain: JVM" if name == "java" else "chain: Python workers"


def tree_cpu(pid: int, role: Callable[[psutil.Process, int], str] | None = None) -> dict[tuple[str, int], float]:
    """Cumulative CPU seconds (user + system) of a process and each descendant, keyed by (role, pid); role
    names the part a process plays (default: all one part)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    found = {}
    for process in processes:
        try:
            times = process.cpu_times()
            found[(role(process, pid) if role else "", process.pid)] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return found


class CpuUse:
    """CPU seconds per part between the first and the last sample (a process's last sample is kept after it
    exits; one started in between counts from zero)."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str, int], float] = {}
        self.last: dict[tuple[str, str, int], float] = {}
        self.started: float | None = None
        self.ended: float | None = None

    def sample(self, label: str, pid: int, now: float) -> None:
        role = chain_role if label.startswith("chain") else None
        if self.started is None:
            self.started = now
        self.ended = now
        for (part, child), seconds in tree_cpu(pid, role).items():
            key = (label, part, child)
            self.first.setdefault(key, 0.0 if now > self.started else seconds)
            self.last[key] = seconds

    def cores(self) -> dict[str, float]:
        """Average cores used per part (and per chain role) over the sampled window."""
        wall = (self.ended or 0) - (self.started or 0)
        if wall <= 0:
            return {}
        used: dict[str, float] = {}
        for key, seconds in self.last.items():
            label, part, _pid = key
            spent = seconds - self.first[key]
            used[label] = used.get(label, 0.0) + spent
            if part:
                used[part] = used.get(part, 0.0) + spent
        return {name: round(seconds / wall, 2) for name, seconds in used.items()}


def stack_pids(settings: Settings) -> dict[str, int | None]:
    base = settings.stack_dir
    return {
        "kafka broker": read_pid(base / "kafka" / "kafka.pid"),
        "S3 server": read_pid(base / "s3" / "s3proxy.pid"),
        "PostgreSQL": read_pid(base / "postgres" / "data" / "postmaster.pid"),
    }


def run_rate(
    base: Settings, rate: float, minutes: float, warm_up_s: float, state: Path, interval: str, chain_args: str = ""
) -> dict[str, Any]:
    name = f"sys{int(time.time())}r{int(rate)}"
    settings = isolated(base, name)
    kafka_service.ensure_topics(settings, ("rsvps",))
    env = settings.child_env(MEETUP_APP_WARM_UP="false")
    state.mkdir(parents=True, exist_ok=True)
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo.run", "--source", "generator", "--rate", str(rate), "--no-browser",
         "--state-dir", str(state), "--interval", interval, "--train-after", "1000000000",
         "--status-every", "60", "--chain-args", chain_args],
        cwd=PROJECT_ROOT, env=env, stdout=(state / "demo.out").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    started = time.time()
    samples: dict[str, list[int]] = {}
    cpu = CpuUse()
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
            now = time.time()
            for label, pid in named.items():
                if pid is not None:
                    samples.setdefault(label, []).append(tree_rss(pid))
                    if now >= started + warm_up_s:
                        cpu.sample(label, pid, now)
            time.sleep(5)
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=300)
    result = {"rate_per_s": rate, "minutes": minutes, "warm_up_s": warm_up_s, "interval": interval,
              "chain_args": chain_args}  # fmt: skip
    result["memory_mb"] = {
        label: {"median": round(statistics.median(values) / 2**20), "peak": round(max(values) / 2**20)}
        for label, values in samples.items()
    }
    result["cpu_cores"] = cpu.cores()
    result.update(freshness(settings, started + warm_up_s))
    result["over_time"] = over_time(settings, started, started + warm_up_s)
    result["phases"] = phases(settings, started + warm_up_s)
    return result


def over_time(settings: Settings, started: float, after: float) -> dict[str, Any]:
    """Per stage: (minute of the run, batch p95 s) for every batch after warm-up, its slope and boundedness."""
    from datetime import datetime

    from app.reader import Lakehouse

    table = Lakehouse(settings).table(catalogue.GOLD_FRESHNESS)
    table = table[table["visible_at"] > datetime.fromtimestamp(after, UTC)]
    found = {}
    for stage in (*STAGES, "score"):
        rows = table[table["stage"] == stage].sort_values("visible_at")
        minutes = [(at.timestamp() - started) / 60 for at in rows["visible_at"]]
        p95 = [ms / 1000 for ms in rows["p95_ms"]]
        found[stage] = {"minutes": minutes, "p95_s": p95, "slope_s_per_min": slope(minutes, p95),
                        **thirds(minutes, p95), **issue_criterion(minutes, p95)}  # fmt: skip
    return found


def _p95(values: list[float]) -> float:
    """The 95th percentile, as the nearest value (an upper estimate)."""
    return sorted(values)[min(len(values) - 1, int(0.95 * len(values)))]


def issue_criterion(minutes: list[float], p95: list[float]) -> dict[str, Any]:
    """The keeping-up target as stated for a long run: the p95 of the last 10 minutes is no more than the
    p95 of minutes 5-15 (None when the run is shorter than 25 minutes)."""
    if not minutes or minutes[-1] < 25:
        return {"p95_min5_15_s": None, "p95_last10_s": None, "last10_within_min5_15": None}
    q = _p95
    early = [v for m, v in zip(minutes, p95, strict=True) if 5 <= m < 15]
    last = [v for m, v in zip(minutes, p95, strict=True) if m >= minutes[-1] - 10]
    if not early or not last:
        return {"p95_min5_15_s": None, "p95_last10_s": None, "last10_within_min5_15": None}
    return {"p95_min5_15_s": round(q(early), 1), "p95_last10_s": round(q(last), 1),
            "last10_within_min5_15": q(last) <= q(early)}  # fmt: skip


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than 3 points)."""
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return None if var == 0 else round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 2)


def thirds(minutes: list[float], p95: list[float]) -> dict[str, Any]:
    """p95 of the batch p95s in the middle and last thirds of the run, and whether the last stays within
    1.25 x the middle (bounded: no upward trend beyond noise)."""
    if len(minutes) < 6:
        return {"p95_middle_s": None, "p95_last_s": None, "bounded": None}
    lo, hi = minutes[0], minutes[-1]
    cut1, cut2 = lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3
    middle = [v for m, v in zip(minutes, p95, strict=True) if cut1 <= m < cut2]
    last = [v for m, v in zip(minutes, p95, strict=True) if m >= cut2]
    if not middle or not last:
        return {"p95_middle_s": None, "p95_last_s": None, "bounded": None}
    q = _p95
    return {"p95_middle_s": round(q(middle), 1), "p95_last_s": round(q(last), 1),
            "bounded": q(last) <= 1.25 * q(middle)}  # fmt: skip


def phases(settings: Settings, after: float) -> dict[str, Any]:
    """Mean seconds per batch, per query and phase (gold/batch_phases), for batches after warm-up."""
    from datetime import datetime

    from app.reader import Lakehouse

    lake = Lakehouse(settings)
    try:
        table = lake.table(catalogue.GOLD_BATCH_PHASES)
    except Exception:  # noqa: BLE001 - a chain that never flushed has no phases to report
        return {}
    table = table[table["started_at"] > datetime.fromtimestamp(after, UTC)]
    found: dict[str, dict[str, float]] = {}
    for query, rows in table.groupby("query"):
        batches = rows["batch_id"].nunique()
        order = rows.groupby("phase")["seq"].min().sort_values()
        sums = rows.groupby("phase")["seconds"].sum()
        found[str(query)] = {"batches": int(batches), **{p: round(float(sums[p]) / batches, 2) for p in order.index}}
    return found


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Lag (batch p95 freshness) over the run's minutes, per stage, one panel per rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for stage, series in result["over_time"].items():
            if series["minutes"]:
                ax.plot(series["minutes"], series["p95_s"], marker=".", linewidth=1,
                        label=f"{stage} (slope {series['slope_s_per_min']} s/min)")  # fmt: skip
        ax.set_title(f"{result['rate_per_s']:g} RSVPs/s, trigger {result['interval']}")
        ax.set_xlabel("minutes into the run")
        ax.set_ylabel("Kafka append -> visible, batch p95 (s)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def freshness(settings: Settings, after: float) -> dict[str, Any]:
    from datetime import datetime

    from app.reader import Lakehouse

    lake = Lakehouse(settings)
    table = lake.table(catalogue.GOLD_FRESHNESS)
    table = table[table["visible_at"] > datetime.fromtimestamp(after, UTC)]
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


def _ratio(ours: float | None, floor_s: float | None) -> str:
    return "-" if not ours or not floor_s else f"{ours / floor_s:.1f}x"


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(float(ms) / 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 20, 200])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--warm-up", type=float, default=90, help="seconds left out at the start of each run")
    parser.add_argument("--interval", default="1 second", help="the chain's trigger interval")
    parser.add_argument("--floor-minutes", type=float, default=3,
                        help="minutes of the floor query (bench/floor.py) before each rate; 0 skips it")  # fmt: skip
    parser.add_argument(
        "--chain-args", default="", metavar="ARGS",
        help="more meetup-chain options for every run, as one string (meetup-demo --chain-args)",
    )  # fmt: skip
    parser.add_argument("--name", default="system", help="results file name under bench/results/")
    parser.add_argument("--logs", type=Path, help="keep each run's logs (chain.log, demo.out...) under this directory")
    args = parser.parse_args(argv)
    base = load_settings()
    results = []
    keep = contextlib.nullcontext(str(args.logs)) if args.logs else tempfile.TemporaryDirectory(prefix="bench-system-")
    with keep as tmp:
        for rate in args.rates:
            found_floor = None
            if args.floor_minutes > 0:
                log(f"the floor: a bare Kafka -> Delta append at {rate:g} RSVPs/s for {args.floor_minutes:g} min")
                warm_up = min(args.warm_up, args.floor_minutes * 60 / 3)
                found_floor = floor.run_floor(base, rate, args.floor_minutes, warm_up, args.interval, Path(tmp))
                log(f"floor: {found_floor}")
            log(f"{rate:g} RSVPs/s for {args.minutes:g} min")
            results.append(
                run_rate(
                    base, rate, args.minutes, args.warm_up, Path(tmp) / f"r{rate:g}", args.interval, args.chain_args
                )
            )
            results[-1]["floor"] = found_floor
            log(str({k: v for k, v in results[-1].items() if k != "over_time"}))
    lines = ["| RSVPs/s | stage | batches | rows | p50 s | p95 s (upper est.) | p99 s (upper est.) | max s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        for stage in STAGES:
            s = r[stage]
            lines.append(f"| {r['rate_per_s']:g} | {stage} | {s['batches']} | {s['rows']:,} | {s['p50_s']} | "
                         f"{s['p95_s']} | {s['p99_s']} | {s['max_s']} |")  # fmt: skip
    floors = [r for r in results if r.get("floor")]
    if floors:
        lines += ["", "The floor (a bare Kafka -> Delta append query, same trigger, read with delta-rs; "
                  "bench/floor.py), and each stage's freshness divided by it:", "",
                  *floor.table_lines([r["floor"] for r in floors]),
                  "", "| RSVPs/s | stage | p50 / floor p50 | p95 / floor p95 |", "|---:|---|---:|---:|"]  # fmt: skip
        for r in floors:
            for stage in STAGES:
                s, f = r[stage], r["floor"]
                lines.append(f"| {r['rate_per_s']:g} | {stage} | {_ratio(s['p50_s'], f['p50_s'])} | "
                             f"{_ratio(s['p95_s'], f['p95_s'])} |")  # fmt: skip
    labels = list(results[0]["memory_mb"])
    lines += ["", "| RSS MB, median / peak | " + " | ".join(f"{r['rate_per_s']:g}/s" for r in results) + " |",
              "|---|" + "---:|" * len(results)]  # fmt: skip
    for label in labels:
        cells = [r["memory_mb"].get(label, {}) for r in results]
        lines.append(f"| {label} | " + " | ".join(f"{c.get('median')} / {c.get('peak')}" for c in cells) + " |")
    parts = list(dict.fromkeys(part for r in results for part in r.get("cpu_cores", {})))
    lines += [
        "",
        f"| CPU, cores used on average (of {os.cpu_count()}) after warm-up | "
        + " | ".join(f"{r['rate_per_s']:g}/s" for r in results)
        + " |",
        "|---|" + "---:|" * len(results),
    ]
    for part in parts:
        lines.append(f"| {part} | " + " | ".join(str(r.get("cpu_cores", {}).get(part)) for r in results) + " |")
    lines += ["", "| RSVPs/s | stage | lag slope (s/min) | p95 middle third s | p95 last third s | bounded "
              "| p95 min 5-15 s | p95 last 10 min s | last 10 <= min 5-15 |",
              "|---:|---|---:|---:|---:|---|---:|---:|---|"]  # fmt: skip
    for r in results:
        for stage, t in r["over_time"].items():
            lines.append(f"| {r['rate_per_s']:g} | {stage} | {t['slope_s_per_min']} | {t['p95_middle_s']} | "
                         f"{t['p95_last_s']} | {t['bounded']} | {t['p95_min5_15_s']} | {t['p95_last10_s']} | "
                         f"{t['last10_within_min5_15']} |")  # fmt: skip
    for r in results:
        lines += ["", f"Where a batch's time goes at {r['rate_per_s']:g}/s (mean seconds per batch):", ""]
        for query, split in r["phases"].items():
            spent = ", ".join(f"{p} {v}" for p, v in split.items() if p != "batches")
            lines.append(f"- {query} ({split['batches']} batches): {spent}")
    write_results(args.name, {"target_p95_s": 10, "results": results}, lines)
    plot(results, RESULTS / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
