"""Benchmark: what parsing and checking a message costs, and how many times the plan parses it.

    make bench-parse-checks          # or: .venv/bin/python -m bench.parse_checks --messages 20000

Every stage reads valid messages the same way: `validation.with_parsed`, the rules (`Checks`), then
`filter_valid`. The rules read the parsed message about 85 times; unguarded, Spark's optimizer copies the
parse into the filter once per reference (it pushes the filter below the parse's projection, then prunes
each copy of `from_json` to the one field it reads), so the whole message is parsed once per rule. Two
ways over the same messages, in one local Spark application:
- unguarded (before): `msg = from_json(json)`, as the stages had it until 2026-12-05;
- parsed once (now): `validation.with_parsed`, whose nondeterministic guard keeps `msg` one column.

The messages are the shipped captures (`data/rsvps/`), repeated to `--messages`. Each way's time is its
valid rows computed and kept (`localCheckpoint`, as the mirror does), the best of `--repeats`; the counts of
`from_json` in each optimized plan are reported beside. Both ways must keep the same rows (checked).
Writes bench/results/parse_checks.json and .md. Needs no service.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bench.common import write_results
from lakehouse import validation
from lakehouse.schemas import RSVP_MESSAGE
from tests.helpers import capture_frames


def unguarded_parsed(bronze_df: DataFrame, schema: T.StructType) -> DataFrame:
    """`with_parsed` as it was: the parse as a plain column, which the optimizer copies into each rule."""
    return (
        bronze_df.withColumn("json", F.col("value").cast("string"))
        .withColumn("msg", F.from_json(F.col("json"), schema))
        .withColumn("keys", F.json_object_keys(F.col("json")))
    )


WAYS: dict[str, Callable[[DataFrame, T.StructType], DataFrame]] = {
    "unguarded (before)": unguarded_parsed,
    "parsed once (now)": validation.with_parsed,
}


def measure(spark: SparkSession, messages: int, repeats: int) -> list[dict[str, Any]]:
    frames = capture_frames()
    raw = spark.createDataFrame([(frames[i % len(frames)],) for i in range(messages)], "value binary")
    raw = raw.localCheckpoint()  # the input is in memory before either way is timed
    checks = validation.Checks(validation.rsvp_rules())
    results, kept = [], []
    for name, parse in WAYS.items():
        valid = validation.filter_valid(checks.apply(parse(raw, RSVP_MESSAGE)))
        plan = valid._jdf.queryExecution().optimizedPlan().toString()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            done = valid.localCheckpoint()
            rows = done.count()
            times.append(time.perf_counter() - started)
            done.unpersist()
        kept.append(sorted(r.rsvp_id for r in valid.select("msg.rsvp_id").collect()))
        best = min(times)
        results.append(
            {
                "way": name,
                "messages": messages,
                "valid": rows,
                "best_s": round(best, 3),
                "us_per_message": round(best / messages * 1e6, 1),
                "from_json_in_plan": plan.count("from_json("),
            }
        )
        print(f"{name}: {rows:,} valid, best {best:.2f} s of {repeats}", flush=True)
    if kept[0] != kept[1]:
        raise SystemExit("the two ways kept different rows")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from common.settings import load_settings
    from common.spark import build_spark

    spark = build_spark(load_settings(), "bench-parse-checks", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    results = measure(spark, args.messages, args.repeats)
    table = [
        f"| way ({args.messages:,} captured messages, best of {args.repeats}) | parse, check, keep valid | "
        "us a message | `from_json` in the plan |",
        "|---|---:|---:|---:|",
        *(f"| {r['way']} | {r['best_s']} s | {r['us_per_message']} | {r['from_json_in_plan']} |" for r in results),
    ]
    write_results("parse_checks", {"results": results}, table)
    spark.stop()


if __name__ == "__main__":
    main()
