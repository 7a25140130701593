"""Benchmark: freshness at a steady rate, Kafka append -> visible in gold and in PostgreSQL.

    make bench-freshness                     # or: .venv/bin/python -m bench.freshness --rates 20 200 --minutes 4

For each rate: the replay server streams generated RSVPs at that many per second, the producer
(`meetup-ingest`) puts them into a fresh topic, and the whole chain (bronze, silver + PostgreSQL, gold)
runs continuously in this process for the given minutes. Every silver and gold batch records, for its
rows, the time from the Kafka append to the moment its commit was visible (`gold/freshness`: p50, p95,
max per batch). The first minute is warm-up and left out. Reported: the row-weighted median of the batch
medians (~ p50 over rows) and the row-weighted 95th percentile of the batch p95s (an upper estimate of
p95 over rows). Writes bench/results/freshness.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

from pyspark.sql import functions as F

from bench.common import isolated, write_results
from common.settings import PROJECT_ROOT, load_settings
from common.spark import build_spark
from pipelines.chain import StopRequest, run_chain
from pipelines.layout import Layout
from stack import kafka as kafka_service

BIN = PROJECT_ROOT / ".venv" / "bin"


def weighted_quantile(pairs: list[tuple[float, int]], q: float) -> float | None:
    """pairs: (value, weight) -> the smallest value with at least q of the weight at or below it."""
    pairs = sorted((v, w) for v, w in pairs if v is not None and w)
    total = sum(w for _, w in pairs)
    running = 0
    for value, weight in pairs:
        running += weight
        if running >= q * total:
            return value
    return None


def run_rate(spark, base, rate: int, minutes: float, port: int) -> dict:
    name = f"fresh{int(time.time())}r{rate}"
    settings = isolated(base, name)
    kafka_service.ensure_topics(settings, ("rsvps",))
    env = {**os.environ, "KAFKA_TOPIC_PREFIX": name}
    server = subprocess.Popen(
        [BIN / "meetup-replay-server", "--generate", "--count", "0", "--pace", "rate", "--rate", str(rate),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2)
    producer = subprocess.Popen(
        [BIN / "meetup-ingest", "--url", f"ws://127.0.0.1:{port}", "--streams", "rsvps"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    layout = Layout.from_settings(settings)
    stop = StopRequest()
    timer = threading.Timer(minutes * 60, stop.set)
    started = time.time()
    timer.start()
    try:
        run_chain(
            spark,
            settings,
            layout=layout,
            streams=("rsvps",),
            interval="1 second",
            stop_event=stop,
            progress_every=60,
            vacuum_every_s=None,
        )
    finally:
        timer.cancel()
        for process in (producer, server):
            process.terminate()
            process.wait(timeout=30)
    freshness = spark.read.format("delta").load(layout.table("gold", "freshness"))
    warm = freshness.filter(F.col("visible_at") > F.timestamp_millis(F.lit(int((started + 60) * 1000))))
    result = {"rate_per_s": rate, "minutes": minutes}
    for stage in ("gold", "postgres", "silver"):
        rows = warm.filter(F.col("stage") == stage).collect()
        result[stage] = {
            "batches": len(rows),
            "rows": sum(r.rows for r in rows),
            "p50_s": _s(weighted_quantile([(r.p50_ms, r.rows) for r in rows], 0.5)),
            "p95_s": _s(weighted_quantile([(r.p95_ms, r.rows) for r in rows], 0.95)),
            "max_s": _s(max((r.max_ms for r in rows), default=None)),
        }
    return result


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args(argv)
    base = load_settings()
    spark = build_spark(base, "bench-freshness", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    results = []
    for rate in args.rates:
        results.append(run_rate(spark, base, rate, args.minutes, args.port))
        print(f"bench: {results[-1]}", file=sys.stderr)
    lines = [
        "| RSVPs/s | stage | batches | rows | p50 s | p95 s (upper est.) | max s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for stage in ("gold", "postgres", "silver"):
            s = r[stage]
            lines.append(
                f"| {r['rate_per_s']} | {stage} | {s['batches']} | {s['rows']:,} | {s['p50_s']} | {s['p95_s']} "
                f"| {s['max_s']} |"
            )
    write_results("freshness", {"target_p95_s": 10, "results": results}, lines)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
