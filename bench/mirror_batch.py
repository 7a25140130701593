"""Benchmark: what one PostgreSQL-mirror batch costs the driver, alone, before any row reaches PostgreSQL.

    make bench-mirror-batch          # or: .venv/bin/python -m bench.mirror_batch --messages 250

A static batch of captured messages (data/rsvps, shaped as the Kafka source gives them) goes through the
mirror's Spark side: parse, silver's checks, the eight 3NF tables, and the one job that collects their rows
(`mirror.collect_rows`). Three ways, each repeated in one local Spark application:
- checks rebuilt every batch and the batch cached (`with_reason` per batch, `persist`): how the mirror ran
  before `validation.Checks`;
- checks built once, batch cached;
- checks built once, batch checkpointed (`localCheckpoint`): how the mirror runs now (silver/mirror_job.py).
All three must give the same rows. The first repetitions include warm-up; the median of the rest is
reported, with each part's share. Writes bench/results/mirror_batch.json and .md. Needs no service.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from bench.common import write_results
from ingest.generator import CAPTURES

WAYS = (
    "checks rebuilt per batch, batch cached (before)",
    "checks built once, batch cached",
    "checks built once, batch checkpointed (now)",
)
PARTS = ("parse and check (plan)", "batch computed", "tables and collect")


def kafka_batch(spark: SparkSession, count: int) -> DataFrame:
    """`count` captured messages as the Kafka source's rows after bronze.to_bronze's renaming."""
    from pyspark.sql import types as T

    from pipelines.bronze.schemas import BRONZE_SCHEMA

    lines: list[bytes] = []
    for path in sorted(CAPTURES.glob("*.jsonl")):
        with open(path, "rb") as handle:
            lines.extend(line.rstrip(b"\n") for line in handle if line.strip())
    chosen = list(itertools.islice(itertools.cycle(lines), count))
    rows = [(value, None, "rsvps", i % 3, i, datetime(2021, 9, 2)) for i, value in enumerate(chosen)]
    # bronze's columns up to the Kafka timestamp: what to_bronze gives before it stamps the ingest
    schema = T.StructType(BRONZE_SCHEMA.fields[: BRONZE_SCHEMA.fieldNames().index("kafka_timestamp") + 1])
    batch = spark.createDataFrame(rows, schema).localCheckpoint()
    batch.count()
    return batch


def one_batch(batch: DataFrame, way: str, checks: Any) -> tuple[dict[str, float], dict[str, list[tuple[Any, ...]]]]:
    from lakehouse import validation
    from lakehouse.schemas import RSVP_MESSAGE
    from pipelines.silver import mirror, transforms

    took: dict[str, float] = {}
    started = time.perf_counter()
    parsed = validation.with_parsed(batch, RSVP_MESSAGE)
    if way == WAYS[0]:
        checked = validation.with_reason(parsed, validation.rsvp_rules())
    else:
        checked = checks.apply(parsed)
    valid = validation.filter_valid(checked)
    took[PARTS[0]] = time.perf_counter() - started
    started = time.perf_counter()
    if way == WAYS[2]:
        valid = valid.localCheckpoint()
    else:
        valid = valid.persist()
        valid.count()
    took[PARTS[1]] = time.perf_counter() - started
    started = time.perf_counter()
    rows = mirror.collect_rows(transforms.rsvp_tables(valid, newest=False))
    took[PARTS[2]] = time.perf_counter() - started
    valid.unpersist()
    return took, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=250, help="messages in the batch (250: 12 s at 20/s)")
    parser.add_argument("--repeats", type=int, default=10, help="batches per way; the first 2 are warm-up")
    args = parser.parse_args(argv)
    from common.settings import load_settings
    from common.spark import build_spark
    from lakehouse import validation

    spark = build_spark(load_settings(), "bench-mirror-batch")
    batch = kafka_batch(spark, args.messages)
    checks = validation.Checks(validation.rsvp_rules())
    results: dict[str, dict[str, float]] = {}
    reference = None
    for way in WAYS:
        print(f"bench: {way}", file=sys.stderr, flush=True)
        runs = []
        for _ in range(args.repeats):
            took, rows = one_batch(batch, way, checks)
            runs.append(took)
            if reference is None:
                reference = rows
            elif rows != reference:
                raise SystemExit(f"bench: {way} gave other rows than {WAYS[0]}")
        kept = runs[2:] or runs
        results[way] = {part: statistics.median(run[part] for run in kept) for part in PARTS}
        results[way]["total"] = statistics.median(sum(run.values()) for run in kept)
    spark.stop()
    lines = [f"| {args.messages} messages, median s | " + " | ".join(PARTS) + " | total |"]
    lines.append("|---|" + "---:|" * (len(PARTS) + 1))
    for way, parts in results.items():
        lines.append(f"| {way} | " + " | ".join(f"{parts[p]:.2f}" for p in (*PARTS, "total")) + " |")
    lines += ["", f"Median of {max(args.repeats - 2, 1)} batches after 2 of warm-up, one local Spark application."]
    write_results("mirror_batch", {"messages": args.messages, "repeats": args.repeats, "results": results}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
