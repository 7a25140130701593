"""Pipeline metrics: every streaming query's progress, collected by a listener, kept in gold.

`gold/pipeline_metrics` gets one row per micro-batch of every query of the chain: input and processing
rates, the batch's duration and where it went, and for Kafka sources the lag (offsets behind the latest).
Freshness (Kafka append -> visible in gold or PostgreSQL) is measured by the batches themselves and kept
in `gold/freshness`; quarantine counts are in `silver/batch_stats`. The listener only buffers: the chain
appends the freshness rows to Delta every 10 s and the rest every minute (`meetup-chain --metrics-every`),
off the listener's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
    StreamingQueryProgress,
)
from pyspark.sql.streaming.query import StreamingQuery

from common.spark import one_row
from lakehouse import catalogue
from lakehouse.delta_io import ensure_tables
from lakehouse.layout import Layout
from pipelines import exporter
from pipelines.phases import BATCH_PHASES, RECORDER, PhaseRecorder

PIPELINE_METRICS = T.StructType(
    [
        T.StructField("query", T.StringType(), True),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("batch_started", T.TimestampType(), False),
        T.StructField("input_rows", T.LongType(), False),
        T.StructField("input_rows_per_s", T.DoubleType(), True),
        T.StructField("processed_rows_per_s", T.DoubleType(), True),
        T.StructField("batch_ms", T.LongType(), True),
        T.StructField("add_batch_ms", T.LongType(), True),
        T.StructField("kafka_offsets_behind_max", T.LongType(), True),
        T.StructField("kafka_offsets_behind_avg", T.DoubleType(), True),
    ]
)


FRESHNESS = T.StructType(
    [
        T.StructField("stage", T.StringType(), False),
        T.StructField("query", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("rows", T.LongType(), False),
        T.StructField("p50_ms", T.LongType(), True),
        T.StructField("p95_ms", T.LongType(), True),
        T.StructField("max_ms", T.LongType(), True),
        T.StructField("visible_at", T.TimestampType(), False),
    ]
)


# Freshness rows of every stage's batches, until the chain's next metrics flush.
FRESHNESS_BUFFER = PhaseRecorder()


def ensure_metrics_tables(spark: SparkSession, layout: Layout) -> None:
    """Create the tables before any query starts: several queries append to them."""
    ensure_tables(
        spark,
        layout,
        {
            catalogue.GOLD_PIPELINE_METRICS: PIPELINE_METRICS,
            catalogue.GOLD_FRESHNESS: FRESHNESS,
            catalogue.GOLD_BATCH_PHASES: BATCH_PHASES,
        },
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN (no rate yet) -> null


# Spark's own parts of a micro-batch (durationMs), kept beside the stages' phases: what is not addBatch is
# the engine's fixed cost (offsets, the write-ahead log, planning, the commit), most of it storage round trips.
SPARK_PHASES = ("latestOffset", "getBatch", "queryPlanning", "walCommit", "addBatch", "commitOffsets")


def spark_phase_rows(progress: StreamingQueryProgress) -> list[tuple[Any, ...]]:
    """One StreamingQueryProgress -> BATCH_PHASES rows for Spark's parts of the batch (`spark: walCommit`...)."""
    durations = progress.durationMs or {}
    started = datetime.fromisoformat(progress.timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return [
        (
            progress.name,
            int(progress.batchId),
            -1 - i,
            f"spark: {name}",
            started,
            durations[name] / 1000,
            int(progress.numInputRows),
        )  # fmt: skip
        for i, name in enumerate(SPARK_PHASES)
        if name in durations
    ]


def progress_row(progress: StreamingQueryProgress) -> tuple[Any, ...]:
    """One StreamingQueryProgress -> a PIPELINE_METRICS row."""
    durations = progress.durationMs or {}
    behind_max, behind_avg = None, None
    for source in progress.sources:
        metrics = source.metrics or {}
        if "maxOffsetsBehindLatest" in metrics:
            behind_max = int(float(metrics["maxOffsetsBehindLatest"]))
            behind_avg = _number(metrics.get("avgOffsetsBehindLatest"))
    started = datetime.fromisoformat(progress.timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return (
        progress.name,
        str(progress.runId),
        int(progress.batchId),
        started,
        int(progress.numInputRows),
        _number(progress.inputRowsPerSecond),
        _number(progress.processedRowsPerSecond),
        durations.get("triggerExecution"),
        durations.get("addBatch"),
        behind_max,
        behind_avg,
    )


class MetricsListener(StreamingQueryListener):
    """Buffers a row per progress event; `flush` appends them to gold/pipeline_metrics. Each batch is also
    counted once in the Prometheus metrics (pipelines/exporter.py), so the two agree."""

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []
        self._seen: set[tuple[str, int]] = set()  # (run id, batch id) of every progress event received
        self._phases: list[tuple[Any, ...]] = []  # Spark's parts of each batch, for gold/batch_phases
        self._lock = threading.Lock()

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        pass

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        row = progress_row(event.progress)
        with self._lock:
            if (row[1], row[2]) not in self._seen:  # not already taken from the query by `backfill`
                self._seen.add((row[1], row[2]))
                self._rows.append(row)
                self._phases.extend(spark_phase_rows(event.progress))
                exporter.observe_progress(event.progress)

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        pass

    def backfill(self, queries: Iterable[StreamingQuery]) -> int:
        """Add the rows of batches whose event has not reached the listener yet, from each query's own
        `recentProgress`: Spark posts events asynchronously, so a query can end before its last event
        arrives, and a flush right then would miss that batch. A late event is then dropped as seen."""
        added = 0
        for query in queries:
            for progress in query.recentProgress:
                row = progress_row(progress)
                with self._lock:
                    if (row[1], row[2]) not in self._seen:
                        self._seen.add((row[1], row[2]))
                        self._rows.append(row)
                        self._phases.extend(spark_phase_rows(progress))
                        exporter.observe_progress(progress)
                        added += 1
        return added

    def flush(
        self, spark: SparkSession, layout: Layout, recorder: PhaseRecorder = RECORDER, *, everything: bool = True
    ) -> int:
        """Append the stages' freshness rows to gold/freshness and, with `everything`, the buffered progress
        rows to gold/pipeline_metrics and Spark's and the stages' phases (`recorder`) to gold/batch_phases;
        returns the number of progress rows appended. Each append is a Delta commit: the chain flushes the
        freshness rows often (the app's "as of" line reads them) and the rest less often."""
        rows: list[tuple[Any, ...]] = []
        phases: list[tuple[Any, ...]] = []
        if everything:
            with self._lock:
                rows, self._rows = self._rows, []
                phases, self._phases = self._phases, []
            phases += recorder.drain()
        freshness = FRESHNESS_BUFFER.drain()
        if freshness:
            spark.createDataFrame(freshness, FRESHNESS).write.format("delta").mode("append").save(
                layout.table(catalogue.GOLD_FRESHNESS)
            )
        if rows:
            spark.createDataFrame(rows, PIPELINE_METRICS).write.format("delta").mode("append").save(
                layout.table(catalogue.GOLD_PIPELINE_METRICS)
            )
        if phases:
            spark.createDataFrame(phases, BATCH_PHASES).write.format("delta").mode("append").save(
                layout.table(catalogue.GOLD_BATCH_PHASES)
            )
        return len(rows)


def arrival_stats(kafka_ts_df: DataFrame) -> tuple[int, list[int] | None]:
    """(rows, [median, 5th percentile, earliest] Kafka append times) of a batch, in one small job: from
    these, the batch's freshness follows for any moment it became visible (`freshness_rows`)."""
    found = one_row(
        kafka_ts_df.agg(
            F.count(F.lit(1)).alias("rows"),
            F.percentile_approx(F.unix_micros("kafka_timestamp"), [0.5, 0.05], 10000).alias("quantiles"),
            F.min(F.unix_micros("kafka_timestamp")).alias("earliest"),
        )
    )
    if not found["rows"]:
        return 0, None
    return found["rows"], [*found["quantiles"], found["earliest"]]


def freshness_rows(
    stats: tuple[int, list[int] | None], query: str, batch_id: int, visible_at: dict[str, datetime]
) -> list[tuple[Any, ...]]:
    """FRESHNESS rows of one batch, one per stage that made it visible: its rows' p50, p95 and greatest
    time from the Kafka append to `visible_at[stage]`."""
    rows, quantiles = stats
    if not rows or quantiles is None:
        return []
    median_us, p05_us, earliest_us = quantiles
    found = []
    for stage, at in visible_at.items():
        at_us = int(at.timestamp() * 1_000_000)
        p50, p95, most = ((at_us - us) // 1000 for us in (median_us, p05_us, earliest_us))  # ms of lag
        found.append((stage, query, int(batch_id), int(rows), int(p50), int(p95), int(most), at))
    return found


def record_freshness(kafka_ts_df: DataFrame, query: str, batch_id: int, visible_at: dict[str, datetime]) -> None:
    """Buffer the batch's freshness rows; the chain appends them to gold/freshness with its metrics.

    A measurement, like pipeline_metrics, not data: kept out of the batch's own commits (an append per
    stage per batch was a Delta commit each, 4-9 s apiece on two busy cores), so a batch re-run after a
    crash records its freshness again.
    """
    rows = freshness_rows(arrival_stats(kafka_ts_df), query, batch_id, visible_at)
    FRESHNESS_BUFFER.add(rows)
    exporter.observe_freshness(rows)
