"""The PostgreSQL mirror on the hot path: Kafka -> silver's 3NF rows -> PostgreSQL, a query of its own.

meetup-chain starts it beside gold (see docs/architecture.md, "The hot path and the slow path"): it reads the RSVP
topic itself, parses and validates with silver's code, and writes each batch's newest rows per key of
every 3NF table in one ledger-guarded transaction (mirror.py), exactly once. It does not wait on silver's
Delta MERGEs, nor on gold's writes: the three run side by side. When gold does not run, silver mirrors
instead (silver/job.py), on its slower cadence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import Settings
from common.spark import HOT_POOL, Trigger, use_pool
from lakehouse import validation
from lakehouse.layout import Layout
from lakehouse.schemas import RSVP_MESSAGE
from pipelines.bronze.job import kafka_source_options
from pipelines.bronze.transforms import to_bronze
from pipelines.metrics import record_freshness
from pipelines.phases import PhaseClock
from pipelines.silver import mirror, transforms

log = logging.getLogger(__name__)

QUERY = "mirror-rsvps"


class MirrorBatch:
    """The foreachBatch function of the mirror query."""

    def __init__(self, settings: Settings, layout: Layout):
        self.settings = settings
        self.query_name = QUERY
        self.app_id = f"{layout.generation}-{QUERY}"
        self.checks = validation.Checks(validation.rsvp_rules())  # built once, applied to every batch

    def __call__(self, kafka_batch_df: DataFrame, batch_id: int) -> None:
        use_pool(kafka_batch_df.sparkSession, HOT_POOL)
        clock = PhaseClock(self.query_name, batch_id)
        checked = self.checks.apply(validation.with_parsed(kafka_batch_df, RSVP_MESSAGE))
        valid = None
        try:
            with clock.phase("mirror collect"):
                # parsed once for the rows and the freshness; a checkpoint, not a cache, so the plans built on
                # it below are small: each is analysed on its own, and over the parse and the checks they cost
                # the driver more than the rows did (docs/benchmarks-history.md)
                valid = validation.filter_valid(checked).localCheckpoint()
                # every message's rows: PostgreSQL keeps the newest per key (mirror.upsert_statement), which
                # saves eight shuffles (6 s of a 9.5 s batch at 20 RSVPs/s, docs/benchmarks-history.md)
                rows = mirror.collect_rows(transforms.rsvp_tables(valid, newest=False))
            clock.rows = len(rows.get("rsvps", []))
            if not any(rows.values()):
                return
            with clock.phase("mirror apply"):
                mirror.apply_with_retry(
                    lambda: mirror.connect(self.settings), self.settings.postgres.schema, self.app_id, batch_id, rows
                )
                visible_at = datetime.now(UTC)
            with clock.phase("freshness"):
                record_freshness(valid, self.query_name, batch_id, {"postgres": visible_at})
            log.info("%s: batch %s: %s RSVPs mirrored (%s)", self.query_name, batch_id, clock.rows, clock.summary())
        finally:
            if valid is not None:
                valid.unpersist()
            clock.close()


def start_mirror(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: Trigger,
    max_offsets_per_trigger: int | None = None,
    starting_offsets: str = "earliest",
) -> StreamingQuery:
    """The mirror query, on the RSVP topic. starting_offsets applies only to a new checkpoint (as bronze's)."""
    reader = spark.readStream.format("kafka").options(
        **kafka_source_options(settings, settings.kafka.topic("rsvps"), starting_offsets)
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return (
        to_bronze(reader.load())
        .writeStream.queryName(QUERY)
        .foreachBatch(MirrorBatch(settings, layout))
        .option("checkpointLocation", layout.checkpoint(QUERY))
        .trigger(**trigger)
        .start()
    )
