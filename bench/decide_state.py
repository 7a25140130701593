"""Benchmark: what gold's state store decide costs per RSVP, by how the counted states are laid out.

    make bench-decide-state          # or: .venv/bin/python -m bench.decide_state --rows 5000 --batches 6

Gold decides in Spark's state store (pipelines/gold/state.py) through `transformWithStateInPandas`, whose
every state call is a round trip from the Python worker to the JVM. Three layouts, each over the same
batches of facts, in one local Spark application, each with a checkpoint of its own:
- per-RSVP map (before): one map entry per RSVP, a `getValue` and an `updateValue` per RSVP;
- buckets (now): one entry per `rsvp_id >> BUCKET_BITS`, a `getValue` and an `updateValue` per bucket touched;
- no state (the floor): the same query, whose processor reads and writes no state and decides nothing: what
  the file source, the shuffle, the Arrow transfer to Python and back and the output cost by themselves.

The facts are shaped as Meetup's: RSVP ids grow by 1-40 from one RSVP to the next, and a fifth of the
messages are an earlier RSVP again, picked uniformly from all earlier ones (the worst case for buckets);
three Kafka partitions. The two stateful layouts must decide the same (checked). Each batch's time is the
stateful plan computed once (`localCheckpoint`), as gold's first phase does; the first batch (warm-up) is left
out of the median. Writes bench/results/decide_state.json and .md. Needs no service.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues
from pyspark.sql.types import StructType

from bench.common import write_results

LAYOUTS = ("per-RSVP map (before)", "buckets (now)", "no state (floor)")
PARTITIONS = 3
T0 = 1_700_000_000_000


def fact_batches(rows: int, batches: int, seed: int = 7) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of facts (RSVP_STATE's columns, then the Kafka timestamp), offsets and mtimes increasing."""
    rng = random.Random(seed)
    next_id, offset = 1_900_000_000, 0
    seen: list[int] = []
    for _ in range(batches):
        batch = []
        for _ in range(rows):
            if seen and rng.random() < 0.2:
                rsvp_id = rng.choice(seen)
            else:
                next_id += rng.randrange(1, 41)
                rsvp_id = next_id
                seen.append(rsvp_id)
            partition = rsvp_id % PARTITIONS  # the producer keys by rsvp_id: one RSVP, one partition
            response = rng.choice(("yes", "yes", "yes", "no"))
            kafka_at = datetime.now(UTC)
            batch.append(
                (rsvp_id, T0 + offset * 50, partition, offset, response, 0, "us", "ca", "SF", 5, "e1", ["a"], kafka_at)
            )
            offset += 1
        yield batch


def per_rsvp_processor(lateness_ms: int) -> StatefulProcessor:
    """Gold's processor with the layout before the buckets: one map entry per RSVP (the state names and
    schemas that layout wrote). Also what tests/unit/test_gold_state_store.py upgrades from."""
    from pipelines.gold.state import GoldState, decide_partition

    class PerRsvpGoldState(GoldState):
        def handleInputRows(  # noqa: N802 - Spark's name
            self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
        ) -> Iterator[pd.DataFrame]:
            facts = pd.concat(list(rows), ignore_index=True)
            if facts.empty:
                return
            stored = self.max_mtime.get() if self.max_mtime.exists() else None
            prior = stored[0] if stored is not None else None
            decided = decide_partition(facts, prior, lambda i: self.counted.getValue((i,)), self.lateness_ms)
            for rsvp_id, value in decided.counted.items():
                self.counted.updateValue((rsvp_id,), value)
            self.max_mtime.update((decided.max_mtime,))
            yield decided.rows

    return PerRsvpGoldState(lateness_ms)


def no_state_processor() -> StatefulProcessor:
    """A processor that touches no state and decides nothing: every fact out as `counted`."""
    from pyspark.sql.streaming.stateful_processor import StatefulProcessor

    from pipelines.gold.state import _COLUMNS, COUNTED, typed

    class NoState(StatefulProcessor):
        def init(self, handle: StatefulProcessorHandle) -> None:
            pass

        def handleInputRows(  # noqa: N802 - Spark's name
            self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
        ) -> Iterator[pd.DataFrame]:
            facts = pd.concat(list(rows), ignore_index=True).assign(kind=COUNTED, watermark_ms=None)
            yield typed(facts[list(_COLUMNS)])

        def close(self) -> None:
            pass

    return NoState()


def fact_schema() -> StructType:
    """The facts gold's state store takes (RSVP_STATE's columns, then the Kafka timestamp)."""
    from pyspark.sql import types as T

    from pipelines.gold.schemas import RSVP_STATE

    return T.StructType(RSVP_STATE.fields + [T.StructField("kafka_timestamp", T.TimestampType())])


def decisions_query(spark: SparkSession, source: str, processor: StatefulProcessor) -> DataFrame:
    from pipelines.gold.state import DECISIONS, STATE_FIELDS

    return (
        spark.readStream.schema(fact_schema())
        .parquet(source)
        .select(*STATE_FIELDS, "kafka_timestamp")
        .groupBy("version_partition")
        .transformWithStateInPandas(
            statefulProcessor=processor, outputStructType=DECISIONS, outputMode="Append", timeMode="None"
        )
    )


def run_layout(
    spark: SparkSession, root: str, layout: str, batches: list[list[tuple[Any, ...]]], lateness_ms: int
) -> tuple[list[float], list[tuple[Any, ...]]]:
    """Each batch through the layout's query -> (seconds per batch, the decisions)."""
    from pipelines.gold.state import GoldState

    schema = fact_schema()
    source, checkpoint = f"{root}/{layout[:6]}-in", f"{root}/{layout[:6]}-checkpoint"
    seconds: list[float] = []
    decided: list[tuple[Any, ...]] = []

    def sink(df: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        computed = df.localCheckpoint()
        computed.count()
        seconds.append(time.perf_counter() - started)
        decided.extend(
            tuple(row) for row in computed.select("kind", "version_partition", "version_offset", "rsvp_id").collect()
        )

    for number, facts in enumerate(batches):
        spark.createDataFrame(facts, schema).write.parquet(f"{source}/batch={number}")
        processor = {
            LAYOUTS[0]: lambda: per_rsvp_processor(lateness_ms),
            LAYOUTS[1]: lambda: GoldState(lateness_ms),
            LAYOUTS[2]: no_state_processor,
        }[layout]()
        query = (
            decisions_query(spark, source, processor)
            .writeStream.foreachBatch(sink)
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        print(f"  {layout}: batch {number}: {seconds[-1]:.2f} s", file=sys.stderr)
    return seconds, sorted(decided)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="facts per batch (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=6, help="batches per layout (default: %(default)s)")
    args = parser.parse_args(argv)

    from common.settings import load_settings
    from common.spark import build_spark
    from pipelines.gold.state import BUCKET_BITS
    from pipelines.gold.transforms import DEFAULT_LATENESS_MS

    spark = build_spark(load_settings(), "bench-decide-state")
    spark.sparkContext.setLogLevel("ERROR")
    batches = list(fact_batches(args.rows, args.batches))
    root = tempfile.mkdtemp(prefix="decide-state-")
    results: dict[str, Any] = {"rows": args.rows, "batches": args.batches, "bucket_bits": BUCKET_BITS, "layouts": {}}
    decisions = {}
    try:
        for layout in LAYOUTS:
            seconds, decisions[layout] = run_layout(spark, root, layout, batches, DEFAULT_LATENESS_MS)
            median = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
            results["layouts"][layout] = {"seconds": seconds, "median_s": median}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    same = decisions[LAYOUTS[0]] == decisions[LAYOUTS[1]]
    results["same_decisions"] = same
    floor = results["layouts"][LAYOUTS[2]]["median_s"]
    table = [
        f"# gold's state store decide, {args.rows:,} facts a batch, {args.batches} batches "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| layout | median batch | ms per fact | above the floor, ms per fact |",
        "|---|---:|---:|---:|",
    ]
    for layout, figures in results["layouts"].items():
        median = figures["median_s"]
        table.append(
            f"| {layout} | {median:.2f} s | {median / args.rows * 1000:.3f} | "
            f"{(median - floor) / args.rows * 1000:.3f} |"
        )
    table += ["", f"The two stateful layouts decided the same: {'yes' if same else 'NO'}."]
    write_results("decide_state", results, table)
    spark.stop()
    if not same:
        sys.exit("the two layouts decided differently")


if __name__ == "__main__":
    main()
