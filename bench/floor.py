"""Benchmark: the floor of this stack, a bare Spark Kafka -> Delta append query, measured as a reader sees it.

    make bench-floor                         # or: .venv/bin/python -m bench.floor --rates 20 --minutes 5

What the chain's freshness could be at best on this machine and this stack: generated RSVPs are produced to
a topic of their own at a steady rate; one Spark query (its own JVM, the chain's Spark settings and trigger)
appends Kafka's rows to a Delta table on the lakehouse, with nothing else: no parsing, no checks, no
MERGE, no metrics. A reader polls the table with delta-rs every 0.25 s; each row's lag is the time the
reader first saw its version minus its Kafka append time. Reported per rate: rows, p50/p95/p99/max over rows
(after warm-up), the query's batches and their mean duration. `bench.system --floor-minutes N` runs this
before the chain at each rate and reports the chain's freshness divided by the floor's.

The chain records `visible` as the moment its commit returns (the writer's view); the floor is measured from
the reader's side, up to one poll (0.25 s) later, so the ratio is a little kind to the chain.
Writes bench/results/floor.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import isolated, log, write_results
from common.settings import PROJECT_ROOT, Settings, load_settings

POLL_S = 0.25


def query_main(topic: str, table: str, checkpoint: str, interval: str) -> int:
    """The floor query itself (run in a process of its own): Kafka -> Delta append, nothing else."""
    from common.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "meetup-floor")
    rows = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select("key", "value", "topic", "partition", "offset", "timestamp")
    )
    query = (
        rows.writeStream.format("delta")
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=interval)
        .start(table)
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    durations = []
    seen = -1
    while not stop.wait(0.5) and query.isActive:
        progress = query.lastProgress
        if progress and progress["batchId"] != seen and progress["numInputRows"] > 0:
            seen = progress["batchId"]
            durations.append(progress["durationMs"]["triggerExecution"] / 1000)
    query.stop()
    print(json.dumps({"batches": len(durations), "durations_s": durations}), flush=True)
    return 0


def produce_steadily(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> None:
    """Generated RSVPs at `rate` per second until stopped (keyed by RSVP id, like the producer)."""
    from confluent_kafka import Producer

    from ingest import generator
    from tests.helpers import frame_key

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    started = time.monotonic()
    for sent, frame in enumerate(generator.rsvps(seed=int(rate * 1000))):
        due = started + sent / rate
        if stop.wait(max(0.0, due - time.monotonic())):
            break
        producer.produce(topic, key=frame_key("rsvp_id", frame), value=frame)
        producer.poll(0)
    producer.flush(30)


def poll_lags(uri: str, options: dict[str, str], stop: threading.Event) -> list[tuple[float, float]]:
    """(seen at, seconds from Kafka append to first seen by a delta-rs reader), one per row, until stopped.

    Auto compaction rewrites small files into bigger ones, so a new file may hold rows seen before: a row is
    counted once, by its Kafka coordinates."""
    from deltalake import DeltaTable

    table = None
    seen: set[str] = set()
    rows_seen: set[tuple[int, int]] = set()
    lags: list[tuple[float, float]] = []
    while not stop.wait(POLL_S):
        try:
            if table is None:
                table = DeltaTable(uri, storage_options=options)
            else:
                table.update_incremental()
        except Exception:  # noqa: BLE001 - the query has not created the table yet
            continue
        now = time.time()
        dataset = table.to_pyarrow_dataset()
        for fragment in dataset.get_fragments():
            if fragment.path in seen:
                continue
            seen.add(fragment.path)
            found = fragment.to_table(columns=["partition", "offset", "timestamp"]).to_pylist()
            for row in found:
                if (row["partition"], row["offset"]) not in rows_seen:
                    rows_seen.add((row["partition"], row["offset"]))
                    lags.append((now, now - row["timestamp"].timestamp()))
    return lags


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def run_floor(
    base: Settings, rate: float, minutes: float, warm_up_s: float, interval: str, logs: Path
) -> dict[str, Any]:
    """One floor run at `rate` RSVPs/s: its own topic and table; lag quantiles over rows after warm-up."""
    from app.reader import Lakehouse, delta_rs_uri
    from stack import kafka as kafka_service

    name = f"floor{int(time.time())}r{int(rate)}"
    settings = isolated(base, name)
    kafka_service.ensure_topics(settings, ("rsvps",))
    topic = settings.kafka.topic("rsvps")
    table, checkpoint = settings.path("floor", "rsvps"), settings.path("floor", "_checkpoints", "rsvps")
    logs.mkdir(parents=True, exist_ok=True)
    query = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", "--query", topic, table, checkpoint, interval],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=(logs / f"floor-r{rate:g}.log").open("w"), text=True,
        start_new_session=True, env=settings.child_env(),
    )  # fmt: skip
    stop = threading.Event()
    producer = threading.Thread(target=produce_steadily, args=(settings.kafka.bootstrap_servers, topic, rate, stop))
    found: list[tuple[float, float]] = []
    uri = delta_rs_uri(table)
    reader = threading.Thread(target=lambda: found.extend(poll_lags(uri, Lakehouse(settings).options, stop)))
    started = time.time()
    producer.start()
    reader.start()
    try:
        while time.time() - started < minutes * 60:
            if query.poll() is not None:
                raise RuntimeError(f"the floor query exited early; see {logs / f'floor-r{rate:g}.log'}")
            time.sleep(1)
    finally:
        stop.set()
        producer.join()
        reader.join()
        query.send_signal(signal.SIGTERM)  # the Python side stops the query through its JVM, then reports
        try:
            out, _ = query.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(query.pid, signal.SIGKILL)
    batches: dict[str, Any] = (
        json.loads(out.strip().splitlines()[-1]) if out.strip() else {"batches": 0, "durations_s": []}
    )
    # rows seen in the warm-up are left out: the JVM's start, the table's creation, the first batches
    kept = [lag for seen_at, lag in found if seen_at >= started + warm_up_s]
    durations = batches["durations_s"]
    return {
        "rate_per_s": rate,
        "minutes": minutes,
        "interval": interval,
        "rows": len(kept),
        "p50_s": quantile(kept, 0.5),
        "p95_s": quantile(kept, 0.95),
        "p99_s": quantile(kept, 0.99),
        "max_s": quantile(kept, 1.0),
        "batches": batches["batches"],
        "batch_mean_s": round(sum(durations) / len(durations), 2) if durations else None,
    }


def table_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| RSVPs/s | rows | p50 s | p95 s | p99 s | max s | batches | mean batch s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['rate_per_s']:g} | {r['rows']:,} | {r['p50_s']} | {r['p95_s']} | {r['p99_s']} | "
                     f"{r['max_s']} | {r['batches']} | {r['batch_mean_s']} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--query"]:
        return query_main(*argv[1:5])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[20])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--warm-up", type=float, default=60, help="seconds left out at the start of each run")
    parser.add_argument("--interval", default="1 second", help="the query's trigger interval (the chain's default)")
    parser.add_argument("--name", default="floor", help="results file name under bench/results/")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/bench-floor"), help="the query's log per rate")
    args = parser.parse_args(argv)
    base = load_settings()
    results = []
    for rate in args.rates:
        log(f"floor: a bare Kafka -> Delta append at {rate:g} RSVPs/s for {args.minutes:g} min")
        results.append(run_floor(base, rate, args.minutes, args.warm_up, args.interval, args.logs))
        log(str(results[-1]))
    write_results(args.name, {"results": results}, table_lines(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
