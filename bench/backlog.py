"""Benchmark: backlog catch-up from Kafka through bronze, silver with the PostgreSQL mirror, and gold.

    make bench-backlog                       # or: .venv/bin/python -m bench.backlog --sizes 100000 1000000

For each size: N generated RSVPs are produced to a fresh topic, then timed through
1. bronze alone (Kafka -> Delta, availableNow), and beside it Spark's own parse of the same
   values (`from_json` over bronze, the reference that survives a noisy machine);
2. silver with the mirror (bronze -> validation -> 8 MERGEs -> PostgreSQL), split per batch into
   validate/quarantine, merge and mirror;
3. gold as the chain runs it (Kafka -> validation -> the state store -> the counts append), then the
   fold and its snapshots once.
The whole chain's rate is RSVPs over the three times added up (live, silver and gold run side by side).
Writes bench/results/backlog.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from bench.common import from_json_seconds, isolated, write_results
from common.settings import Settings, load_settings
from common.spark import build_spark
from ingest import generator
from lakehouse import catalogue
from lakehouse.layout import Layout
from pipelines.bronze.job import start_bronze
from pipelines.chain import MAX_BYTES_PER_TRIGGER, MAX_OFFSETS_PER_TRIGGER
from pipelines.gold.fold import fold_counts
from pipelines.gold.job import rebuild_snapshots, start_gold
from pipelines.silver import mirror
from pipelines.silver.job import SilverBatch
from stack import kafka as kafka_service
from tests.helpers import produce


def run_size(spark: SparkSession, base: Settings, size: int, max_offsets: int) -> dict[str, Any]:
    name = f"bench{int(time.time())}n{size}"
    settings = isolated(base, name)
    kafka_service.ensure_topics(settings, ("rsvps",))
    started = time.perf_counter()
    produce(
        settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), list(generator.rsvps(seed=size, count=size))
    )
    print(f"bench: {size:,} RSVPs generated and produced in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    layout = Layout.from_settings(settings)

    started = time.perf_counter()
    query = start_bronze(
        spark, settings, layout, "rsvps", trigger={"availableNow": True}, max_offsets_per_trigger=max_offsets
    )
    query.awaitTermination()
    bronze_s = time.perf_counter() - started

    parse_s = from_json_seconds(spark, layout.table(catalogue.BRONZE_RSVPS))

    mirror.apply_ddl(settings)
    silver_batch = SilverBatch(spark, settings, layout, "rsvps", mirror_to_postgres=True)
    splits: list[dict[str, float]] = []

    def timed_batch(df: DataFrame, batch_id: int) -> None:
        silver_batch(df, batch_id)
        if silver_batch.timings:
            splits.append(silver_batch.timings)

    started = time.perf_counter()
    (
        spark.readStream.format("delta")
        .option("maxBytesPerTrigger", str(MAX_BYTES_PER_TRIGGER))
        .load(layout.table(catalogue.BRONZE_RSVPS))
        .writeStream.foreachBatch(timed_batch)
        .option("checkpointLocation", layout.checkpoint("bench-silver"))
        .trigger(availableNow=True)
        .start()
        .awaitTermination()
    )
    silver_s = time.perf_counter() - started

    started = time.perf_counter()  # gold as the chain runs it: from Kafka, its state in the state store
    start_gold(
        spark, settings, layout, trigger={"availableNow": True}, max_offsets_per_trigger=max_offsets
    ).awaitTermination()
    fold_counts(spark, layout)
    rebuild_snapshots(spark, layout)
    gold_s = time.perf_counter() - started

    def phase_s(*names: str) -> float:
        return round(sum(t.get(name, 0.0) for t in splits for name in names), 1)

    split = {
        "validate_quarantine_s": phase_s("parse and validate", "quarantine append"),
        "merge_s": phase_s("merge"),
        "mirror_s": phase_s("mirror collect", "mirror apply"),
    }
    return {
        "rsvps": size,
        "bronze_per_s": round(size / bronze_s),
        "spark_from_json_per_s": round(size / parse_s),
        "silver_and_postgres_per_s": round(size / silver_s),
        "gold_per_s": round(size / gold_s),
        "whole_chain_per_s": round(size / (bronze_s + silver_s + gold_s)),
        "silver_batches": len(splits),
        "silver_split_s": split,
        "bronze_s": round(bronze_s, 1),
        "silver_s": round(silver_s, 1),
        "gold_s": round(gold_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--max-offsets-per-trigger", type=int, default=MAX_OFFSETS_PER_TRIGGER)
    args = parser.parse_args(argv)
    base = load_settings()
    spark = build_spark(base, "bench-backlog", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    results = []
    for size in args.sizes:
        results.append(run_size(spark, base, size, args.max_offsets_per_trigger))
        print(f"bench: {results[-1]}", file=sys.stderr)
    lines = [
        "| RSVPs | bronze /s | Spark from_json /s (reference) | silver + PostgreSQL /s | gold /s | whole chain /s "
        "| batches | validate s | merge s | mirror s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["silver_split_s"]
        lines.append(
            f"| {r['rsvps']:,} | {r['bronze_per_s']:,} | {r['spark_from_json_per_s']:,} "
            f"| {r['silver_and_postgres_per_s']:,} | {r['gold_per_s']:,} | {r['whole_chain_per_s']:,} "
            f"| {r['silver_batches']} | {s['validate_quarantine_s']} | {s['merge_s']} | {s['mirror_s']} |"
        )
    targets = {"bronze_per_s": 60_000, "whole_chain_per_s": 20_000}
    write_results("backlog", {"targets": targets, "results": results}, lines)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
