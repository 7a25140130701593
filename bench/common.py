"""What every benchmark shares: settings of its own, and where and how results are written."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from typing import Any

from pyspark.sql import SparkSession

from common.settings import PROJECT_ROOT, Settings

RESULTS = PROJECT_ROOT / "bench" / "results"


def log(message: str) -> None:
    """A benchmark's progress line, on stderr (stdout carries its results table)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def isolated(base: Settings, name: str) -> Settings:
    """Topics, PostgreSQL schema and lakehouse prefix that belong to this run alone."""
    return replace(
        base,
        kafka=replace(base.kafka, topic_prefix=name),
        postgres=replace(base.postgres, schema=name),
        lakehouse_root=base.path("bench", name),
    )


def write_results(name: str, payload: dict[str, Any], table: list[str]) -> None:
    """bench/results/<name>.json (everything) and <name>.md (the table, also printed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def from_json_seconds(spark: SparkSession, bronze_path: str) -> float:
    """Seconds Spark's own `from_json` takes over a bronze table's values: the reference a benchmark's rate is
    set beside, since it moves with the machine as the chain does."""
    from pyspark.sql import functions as F

    from lakehouse.schemas import RSVP_MESSAGE

    bronze_df = spark.read.format("delta").load(bronze_path)
    started = time.perf_counter()
    bronze_df.select(F.from_json(F.col("value").cast("string"), RSVP_MESSAGE).alias("m")).agg(
        F.sum("m.guests")
    ).collect()
    return time.perf_counter() - started
