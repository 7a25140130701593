"""Benchmark: a backlog through the chain as it runs, every stage at once, until every table is final.

    make bench-chain-backlog                 # or: .venv/bin/python -m bench.chain_backlog --sizes 1000000

`bench.backlog` times each stage alone, one after another. This one is the shape the chain has in
production: N generated RSVPs are produced to a fresh topic, then `run_chain` starts every stage (bronze,
silver with its Delta tables, the PostgreSQL mirror, gold, scoring) with their live triggers (the hot path
every `--interval`, bronze every 10 s, silver and scoring every 60 s), in this process, on this
machine's two cores. The clock stops when every query has taken in all N messages (the chain's own
counters, pipelines/exporter.py): bronze, gold and the mirror from Kafka, silver and scoring from
bronze. Gold's counts are then final (the fold and the snapshots follow on their own 2-minute cadence).
Then it checks the result (silver and PostgreSQL hold one row per distinct RSVP), and times Spark's own
`from_json` over the same values (the reference that survives a noisy machine). It samples this
process's resident memory (driver, JVM and Python workers) every 5 s.
Writes bench/results/chain_backlog.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from prometheus_client import REGISTRY
from pyspark.sql import SparkSession

from bench.common import from_json_seconds, isolated, log, write_results
from bench.system import tree_rss
from common.settings import Settings, load_settings
from common.spark import build_spark
from ingest import generator
from lakehouse import catalogue
from lakehouse.layout import Layout
from pipelines.cadence import HOT_INTERVAL
from pipelines.chain import MAX_BYTES_PER_TRIGGER, MAX_OFFSETS_PER_TRIGGER, run_chain
from pipelines.stages import STAGE_NAMES as STAGES
from pipelines.stages import ChainOptions, query_names
from stack import kafka as kafka_service
from tests.helpers import produce

QUERIES = tuple(query_names(ChainOptions(streams=("rsvps",))))


def taken_in(query: str) -> float:
    return REGISTRY.get_sample_value("meetup_chain_input_rows_total", {"query": query}) or 0.0


def run_size(spark: SparkSession, base: Settings, size: int, interval: str) -> dict[str, Any]:
    name = f"chainbl{int(time.time())}n{size}"
    settings = isolated(base, name)
    kafka_service.ensure_topics(settings, ("rsvps",))
    frames = list(generator.rsvps(seed=size, count=size))
    distinct = len({json.loads(frame)["rsvp_id"] for frame in frames})
    started = time.perf_counter()
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    del frames
    log(f"{size:,} RSVPs ({distinct:,} distinct) produced in {time.perf_counter() - started:.0f}s")
    layout = Layout.from_settings(settings)
    before = {query: taken_in(query) for query in QUERIES}  # the counters are per process
    stop = threading.Event()
    failure: list[BaseException] = []

    def chain() -> None:
        try:
            run_chain(
                spark,
                settings,
                layout=layout,
                stop_event=stop,
                options=ChainOptions(
                    stages=STAGES,
                    streams=("rsvps",),
                    interval=interval,
                    max_offsets_per_trigger=MAX_OFFSETS_PER_TRIGGER,
                    max_bytes_per_trigger=MAX_BYTES_PER_TRIGGER,
                    progress_every=60,
                ),
            )
        except BaseException as error:  # reported below
            failure.append(error)

    runner = threading.Thread(target=chain, name="chain")
    started = time.perf_counter()
    runner.start()
    peak, done_at, last_report = 0, {}, started
    while runner.is_alive():
        peak = max(peak, tree_rss(os.getpid()))
        now = time.perf_counter()
        for query in QUERIES:
            if query not in done_at and taken_in(query) - before[query] >= size:
                done_at[query] = now - started
                log(f"{query} took in all {size:,} after {done_at[query]:.0f}s")
        if len(done_at) == len(QUERIES):
            break
        if now - last_report >= 60:
            last_report = now
            log(", ".join(f"{q} {taken_in(q) - before[q]:,.0f}" for q in QUERIES))
        time.sleep(2)
    wall_s = time.perf_counter() - started
    stop.set()
    runner.join()
    if failure:
        raise failure[0]

    silver = spark.read.format("delta").load(layout.table(catalogue.SILVER_RSVPS)).count()
    import psycopg2

    with psycopg2.connect(settings.postgres.dsn(), password=settings.postgres.password_for()) as conn:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{settings.postgres.schema}".rsvps')  # a name of ours
            mirrored = cur.fetchone()[0]
    parse_s = from_json_seconds(spark, layout.table(catalogue.BRONZE_RSVPS))
    return {
        "rsvps": size,
        "distinct": distinct,
        "wall_s": round(wall_s, 1),
        "chain_per_s": round(size / wall_s),
        "spark_from_json_per_s": round(size / parse_s),
        "chain_over_from_json": round(parse_s / wall_s, 3),
        "done_at_s": {q: round(s, 1) for q, s in done_at.items()},
        "silver_rows": silver,
        "postgres_rows": mirrored,
        "exact": silver == mirrored == distinct,
        "peak_rss_mb": round(peak / 2**20),
        "interval": interval,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--interval", default=HOT_INTERVAL, help="the hot path's trigger, as meetup-chain's")
    args = parser.parse_args(argv)
    base = load_settings()
    spark = build_spark(base, "bench-chain-backlog", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    results = []
    for size in args.sizes:
        results.append(run_size(spark, base, size, args.interval))
        log(str(results[-1]))
    lines = [
        "| RSVPs | wall s | chain /s | Spark from_json /s (reference) | chain / from_json | each query done at (s) "
        "| silver / PostgreSQL rows = distinct | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in results:
        done = ", ".join(f"{q.removesuffix('-rsvps')} {s}" for q, s in r["done_at_s"].items())
        lines.append(
            f"| {r['rsvps']:,} | {r['wall_s']} | {r['chain_per_s']:,} | {r['spark_from_json_per_s']:,} "
            f"| {r['chain_over_from_json']} | {done} | {r['silver_rows']:,} / {r['postgres_rows']:,} "
            f"{'=' if r['exact'] else '!='} {r['distinct']:,} | {r['peak_rss_mb']:,} |"
        )
    write_results("chain_backlog", {"targets": {"chain_per_s": 20_000, "chain_over_from_json": 0.15},
                                    "results": results}, lines)  # fmt: skip
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
