"""Benchmark: what one Delta operation costs on this stack, alone: the unit the chain's batches are made of.

    make bench-delta-ops          # or: .venv/bin/python -m bench.delta_ops

A small append, the same append with a transaction id (how the slow path's exactly-once appends commit), the
same append known by the batch id in its row (gold's appends, `delta_io.BatchAppender`) and the lookup a
restart's first batch makes, a 100-row MERGE into a 10,000-row table (a silver upsert), a count, and a tiny
job, each repeated, on S3 (the local stack's S3Proxy) and on the local filesystem, with Spark's code generation off (the
chain's default) and on. Each configuration runs in a fresh Spark application, one after the other, so
no two share the cores. The first repetition includes warm-up; the median of the rest is reported.
Writes bench/results/delta_ops.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.common import write_results
from common.settings import PROJECT_ROOT

OPERATIONS = (
    "append 1 row",
    "append 1 row, txnAppId",
    "append 1 row, batch id in the row (BatchAppender)",
    "look a batch id up (a restart's first append)",
    "MERGE 100 rows into 10k",
    "count 10k rows",
    "tiny job",
)


def measure(root: str, repeats: int) -> dict[str, dict[str, float]]:
    """Run in a child process: time each operation against tables under root."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from common.settings import load_settings
    from common.spark import build_spark
    from lakehouse.delta_io import BatchAppender

    spark = build_spark(load_settings(), "bench-delta-ops", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    base = f"{root.rstrip('/')}/delta-ops-{int(time.time() * 1000)}"
    spark.range(10_000).select(F.col("id").alias("k"), (F.col("id") * 2).alias("v")).write.format("delta").save(
        f"{base}/target"
    )
    spark.range(1).write.format("delta").save(f"{base}/log")
    batches, appender = f"{base}/batches", BatchAppender(spark)  # gold's appends: the first one looks up

    def one_batch(i: int) -> Any:
        return spark.range(1).select(F.lit(i).cast("long").alias("batch_id"))

    one_batch(-1).write.format("delta").save(batches)

    def merge(i: int) -> None:
        source = spark.range(i * 100, i * 100 + 100).select(F.col("id").alias("k"), F.lit(i).cast("long").alias("v"))
        (
            DeltaTable.forPath(spark, f"{base}/target")
            .alias("t")
            .merge(source.alias("s"), "t.k = s.k")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

    operations: dict[str, Callable[[int], object]] = {
        "append 1 row": lambda i: spark.range(1).write.format("delta").mode("append").save(f"{base}/log"),
        "append 1 row, txnAppId": lambda i: (
            spark.range(1)
            .write.format("delta")
            .mode("append")
            .option("txnAppId", "bench")
            .option("txnVersion", i)
            .save(f"{base}/log")
        ),
        "append 1 row, batch id in the row (BatchAppender)": lambda i: appender.append(one_batch(i), batches, i),
        "look a batch id up (a restart's first append)": lambda i: BatchAppender(spark).holds(batches, i),
        "MERGE 100 rows into 10k": merge,
        "count 10k rows": lambda i: spark.read.format("delta").load(f"{base}/target").count(),
        "tiny job": lambda i: spark.range(10).collect(),
    }
    found = {}
    for name, operation in operations.items():
        seconds = []
        for i in range(repeats):
            started = time.perf_counter()
            operation(i)
            seconds.append(time.perf_counter() - started)
        found[name] = {"first_s": round(seconds[0], 3), "median_s": round(statistics.median(seconds[1:]), 3)}
    spark.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the child process's root
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeats)))
        return 0
    from common.cli import CommandError
    from common.health import settings_for

    try:
        settings = settings_for(("s3",))  # a stopped store is one line naming it, not a child's traceback
    except CommandError as error:
        print(f"bench-delta-ops: {error}", file=sys.stderr)
        return 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-delta-ops-") as local:
        roots = {"S3 (S3Proxy)": settings.path("bench", "delta-ops"), "local filesystem": f"file://{local}"}
        for where, root in roots.items():
            for codegen in ("false", "true"):
                label = f"{where}, codegen {'on' if codegen == 'true' else 'off'}"
                print(f"bench: {label}", file=sys.stderr, flush=True)
                child = subprocess.run(
                    [sys.executable, "-m", "bench.delta_ops", "--measure", root, "--repeats", str(args.repeats)],
                    cwd=PROJECT_ROOT,
                    env=settings.child_env(SPARK_CODEGEN=codegen),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[label] = json.loads(child.stdout.strip().splitlines()[-1])
    lines = ["| operation | " + " | ".join(results) + " |", "|---|" + "---:|" * len(results)]
    for operation in OPERATIONS:
        cells = [f"{results[label][operation]['median_s']:.2f}" for label in results]
        lines.append(f"| {operation} | " + " | ".join(cells) + " |")
    lines += ["", "Median seconds of the repetitions after the first (the first includes warm-up)."]
    write_results("delta_ops", {"repeats": args.repeats, "results": results}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
