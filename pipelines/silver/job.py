"""Silver job: bronze Delta stream -> validate -> quarantine | 3NF Delta tables (+ PostgreSQL mirror).

Per micro-batch (foreachBatch), for each stream:
1. parse with the explicit schema and give every invalid row a reason -> `quarantine` (append);
2. reduce each table's rows to the newest version per key and MERGE them, updating a row only when
   the incoming version is greater, so batches may come in any order and a replayed batch is a no-op;
3. for RSVPs, when asked (the chain asks when gold, the hot path, is not running), mirror the same reduced
   rows into PostgreSQL (ledger-guarded, one transaction);
4. append the batch's accounting to `batch_stats` (rows in = valid + quarantined).
Appends carry Delta's txnAppId/txnVersion, so a batch re-run after a crash is not appended twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import Settings
from common.spark import SLOW_POOL, Trigger, in_pool, one_row, use_pool
from lakehouse import catalogue, validation
from lakehouse.delta_io import BatchAppender, append_once, ensure_tables, merge_newest
from lakehouse.layout import Layout
from lakehouse.schemas import (
    BATCH_STATS,
    COMMENT_MESSAGE,
    COMMENT_TOP_LEVEL_KEYS,
    PHOTO_MESSAGE,
    PHOTO_TOP_LEVEL_KEYS,
    QUARANTINE,
    RSVP_MESSAGE,
    RSVP_TABLES,
    RSVP_TOP_LEVEL_KEYS,
    TABLE_KEYS,
)
from pipelines import exporter
from pipelines.bronze.job import read_bronze_stream
from pipelines.metrics import record_freshness
from pipelines.phases import PhaseClock
from pipelines.silver import mirror, transforms

log = logging.getLogger(__name__)

MERGE_THREADS = 4
BATCH_STATS_COLUMNS = (
    "query string, batch_id long, rows_in long, rows_valid long, rows_quarantined long, unknown_field_rows long"
)


@dataclass(frozen=True)
class StreamSpec:
    schema: T.StructType
    known_keys: tuple[str, ...]
    rules: Callable[[], list[validation.Rule]]
    tables: Callable[[DataFrame], dict[str, DataFrame]]


STREAM_SPECS = {
    "rsvps": StreamSpec(RSVP_MESSAGE, RSVP_TOP_LEVEL_KEYS, validation.rsvp_rules, transforms.rsvp_tables),
    "event_comments": StreamSpec(
        COMMENT_MESSAGE,
        COMMENT_TOP_LEVEL_KEYS,
        validation.comment_rules,
        lambda df: {
            "event_comments": transforms.newest_per_key(transforms.to_event_comments(df), TABLE_KEYS["event_comments"])
        },
    ),
    "photos": StreamSpec(
        PHOTO_MESSAGE,
        PHOTO_TOP_LEVEL_KEYS,
        validation.photo_rules,
        lambda df: {"photos": transforms.newest_per_key(transforms.to_photos(df), TABLE_KEYS["photos"])},
    ),
}


class SilverBatch:
    """The foreachBatch function of one stream's silver query."""

    def __init__(
        self, spark: SparkSession, settings: Settings, layout: Layout, stream: str, *, mirror_to_postgres: bool
    ):
        self.spark = spark
        self.settings = settings
        self.layout = layout
        self.stream = stream
        self.spec = STREAM_SPECS[stream]
        self.checks = validation.Checks(self.spec.rules())  # built once, applied to every batch
        self.query_name = f"silver-{stream}"
        self.app_id = f"{layout.generation}-{self.query_name}"
        # the batch stats carry (query, batch id): known by them, without Delta's transaction-id lookup (4-5 s
        # an append under load). The quarantine has no batch id and is appended only when a batch has bad rows.
        self.stats_appender = BatchAppender(spark, rows_of=F.col("query") == self.query_name)
        self.mirror_to_postgres = mirror_to_postgres and stream == "rsvps"
        self.timings: dict[str, float] = {}
        self._created: set[str] = set()  # tables known to exist, so each batch skips the check
        self.pool = SLOW_POOL  # silver's Delta tables may follow the hot path (gold, PostgreSQL) on a slower cadence

    def __call__(self, bronze_batch_df: DataFrame, batch_id: int) -> None:
        use_pool(self.spark, self.pool)
        clock = PhaseClock(self.query_name, batch_id)
        try:
            self._process(bronze_batch_df, batch_id, clock)
        finally:
            clock.close()

    def _process(self, bronze_batch_df: DataFrame, batch_id: int, clock: PhaseClock) -> None:
        checked_df = validation.with_unknown_field_count(
            self.checks.apply(validation.with_parsed(bronze_batch_df, self.spec.schema)),
            self.spec.known_keys,
        ).persist()
        try:
            with clock.phase("parse and validate"):
                counts = one_row(
                    checked_df.agg(
                        F.count(F.lit(1)).alias("rows_in"),
                        F.count(F.when(F.col("reason").isNull(), 1)).alias("rows_valid"),
                        F.count(F.when(F.col("reason").isNotNull(), 1)).alias("rows_quarantined"),
                        F.count(F.when(F.col("unknown_fields") > 0, 1)).alias("unknown_field_rows"),
                    )
                )
            clock.rows = counts["rows_in"]
            if counts["rows_in"] == 0:
                return
            if counts["rows_quarantined"]:
                with clock.phase("quarantine append"):
                    quarantine_df = validation.to_quarantine(checked_df).select(*QUARANTINE.fieldNames())
                    append_once(quarantine_df, self.layout.table(catalogue.SILVER_QUARANTINE), self.app_id, batch_id)
            tables = {name: df.persist() for name, df in self.spec.tables(validation.filter_valid(checked_df)).items()}
            try:
                with clock.phase("merge"):
                    # The merges touch different tables, so they may run at once: most of a small MERGE is
                    # driver-side planning and storage round trips, which overlap well.
                    with ThreadPoolExecutor(max_workers=MERGE_THREADS) as pool:
                        merges = [
                            pool.submit(
                                in_pool(self.spark, self.pool, merge_newest),
                                self.spark,
                                self.layout.table(catalogue.table("silver", name)),
                                rows_df,
                                TABLE_KEYS[name],
                                create=name not in self._created,
                            )
                            for name, rows_df in tables.items()
                        ]
                        for merge in merges:
                            merge.result()
                self._created.update(tables)
                visible_at = {"silver": datetime.now(UTC)}  # per stage, for the freshness rows
                if self.mirror_to_postgres:
                    with clock.phase("mirror collect"):
                        rows = mirror.collect_rows({name: tables[name] for name in RSVP_TABLES})
                    with clock.phase("mirror apply"):
                        mirror.apply_with_retry(
                            lambda: mirror.connect(self.settings),
                            self.settings.postgres.schema,
                            self.app_id,
                            batch_id,
                            rows,
                        )
                    visible_at["postgres"] = datetime.now(UTC)
            finally:
                for df in tables.values():
                    df.unpersist()
            if self.stream == "rsvps":
                with clock.phase("freshness"):
                    record_freshness(checked_df, self.query_name, batch_id, visible_at)
            with clock.phase("batch stats append"):
                counted = T.StructType(BATCH_STATS.fields[:-1])
                stats_df = self.spark.createDataFrame([(self.query_name, batch_id, *counts)], counted).withColumn(
                    "processed_at", F.current_timestamp()
                )
                self.stats_appender.append(stats_df, self.layout.table(catalogue.SILVER_BATCH_STATS), batch_id)
            self.timings = clock.seconds()
            exporter.observe_validation(self.stream, counts["rows_valid"], counts["rows_quarantined"])
            log.info(
                "%s: batch %s: %s in, %s valid, %s quarantined, %s with unknown fields (%.1fs: %s)", self.query_name,
                batch_id, counts["rows_in"], counts["rows_valid"], counts["rows_quarantined"],
                counts["unknown_field_rows"], sum(self.timings.values()), clock.summary(),
            )  # fmt: skip
        finally:
            checked_df.unpersist()


def ensure_shared_tables(spark: SparkSession, layout: Layout) -> None:
    """Create the tables every stream's query appends to, before any query starts: two queries
    creating one Delta table at the same moment would conflict."""
    ensure_tables(spark, layout, {catalogue.SILVER_QUARANTINE: QUARANTINE, catalogue.SILVER_BATCH_STATS: BATCH_STATS})


def start_silver(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    stream: str,
    *,
    trigger: Trigger,
    mirror_to_postgres: bool = True,
    max_files_per_trigger: int | None = None,
    max_bytes_per_trigger: int | None = None,
) -> StreamingQuery:
    ensure_shared_tables(spark, layout)
    query: StreamingQuery = (
        read_bronze_stream(spark, layout, stream, max_files_per_trigger, max_bytes_per_trigger)
        .writeStream.queryName(f"silver-{stream}")
        .foreachBatch(SilverBatch(spark, settings, layout, stream, mirror_to_postgres=mirror_to_postgres))
        .option("checkpointLocation", layout.checkpoint(f"silver-{stream}"))
        .trigger(**trigger)
        .start()
    )
    return query
