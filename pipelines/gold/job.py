"""Gold job: RSVPs from Kafka -> event-time counts and late rows, decided in Spark's state store.

Gold reads the Kafka topic itself (bronze's row shape, bronze.transforms.to_bronze), not the bronze table:
it does not wait for bronze's commit, nor share the bronze query's cadence, and it runs beside silver. It
parses and validates with silver's own code, so both see the same valid messages. It is the chain's hot
path, with the PostgreSQL mirror's query beside it (silver/mirror_job.py; docs/architecture.md, "The hot path and the
slow path"). The query's plan:
1. facts from the valid messages, grouped by Kafka partition into the state store (state.py), which decides
   per fact: late (the log-defined watermark), counted (the RSVP's newest version), or ignored, and which
   counted state each counted fact replaces;
2. per micro-batch (foreachBatch), side by side: the net change per key of every count aggregate (counted
   added, replaced taken back) appended to the long `counts` table (aggregates.py; the slow path folds the
   changes, fold.py), the late rows to `late_rsvps`, and each partition's progress to `watermarks`;
3. the batch's freshness (Kafka append -> the counts committed) is recorded with the metrics.
The counts fold and the snapshot tables (topic trends, top groups of the last 5 minutes, upcoming events
filling fastest) are the slow path's: `SnapshotSchedule` runs them off the batch thread (an available-now
run, once at its end).

Exactly once: the state store keeps a version per batch, so a batch run again after a crash starts from
the state as it was before it and decides the same; each table's rows carry the batch id, and an append of a
batch the table already holds is skipped (delta_io.BatchAppender: looked up only for a batch that may have
been written before, not at every append as Delta's transaction ids are).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import Settings
from common.spark import HOT_POOL, SLOW_POOL, SparkThread, Trigger, in_pool, one_row, use_pool
from common.store import Store
from lakehouse import catalogue, validation
from lakehouse.aggregates import AGGREGATES, COUNTS_TABLE
from lakehouse.delta_io import BatchAppender, ensure_tables
from lakehouse.layout import Layout
from lakehouse.schemas import RSVP_MESSAGE
from ml.categories import group_topic_sets, load_assigner
from pipelines import checkpoints
from pipelines.bronze.job import kafka_source_options
from pipelines.bronze.transforms import to_bronze
from pipelines.cadence import FIRST_SNAPSHOT_AFTER_S
from pipelines.gold import state, transforms
from pipelines.gold.fold import fold_counts
from pipelines.gold.schemas import COUNTS, COUNTS_PARTITIONS, LATE_RSVPS, WATERMARKS
from pipelines.gold.transforms import STATE_COLUMNS, count_view
from pipelines.metrics import record_freshness
from pipelines.phases import PhaseClock

T = TypeVar("T")

log = logging.getLogger(__name__)

QUERY = "gold-rsvps"
SNAPSHOT_HOURS = 48  # topic trends are rebuilt for this many hours of stream time
WRITES_PHASE = "counts, late, watermarks"  # gold's writes, side by side (health page)


class GoldBatch:
    """The foreachBatch function of the gold query: it receives the state store's decisions (state.py)."""

    def __init__(self, spark: SparkSession, layout: Layout):
        self.spark = spark
        self.layout = layout
        self.query_name = QUERY
        self.appender = BatchAppender(spark)  # one per query: a restarted query looks its first batch up

    def path(self, name: str) -> str:
        return self.layout.table(catalogue.table("gold", name))

    def __call__(self, decisions_df: DataFrame, batch_id: int) -> None:
        use_pool(self.spark, HOT_POOL)
        clock = PhaseClock(self.query_name, batch_id)
        decisions = None
        try:
            with clock.phase("parse, validate and decide"):
                # One job runs the query's plan (Kafka, parsing, the state store) and keeps its output: every
                # write below reads it, and none may run the stateful plan again.
                decisions = decisions_df.localCheckpoint()
                empty = decisions.isEmpty()
            if not empty:
                self._process(decisions, batch_id, clock)
        finally:
            if decisions is not None:
                decisions.unpersist()
            clock.close()

    def _process(self, decisions: DataFrame, batch_id: int, clock: PhaseClock) -> None:
        spark = self.spark
        kind = F.col("kind")
        counted = decisions.filter(kind == state.COUNTED).select(*STATE_COLUMNS)
        replaced = decisions.filter(kind == state.REPLACED).select(*STATE_COLUMNS)
        with clock.phase(WRITES_PHASE):
            # Three appends side by side, each skipped when a batch re-run finds it committed (the batch id
            # in the rows, BatchAppender), each written by one task: one file per table partition, not one per task.
            # A re-run gets the same decisions: the state store restarts it from the state as it was
            # before the batch.
            took: dict[str, float] = {}  # each write's own seconds, for the batch's log line

            def hot(name: str, work: Callable[..., T], *args: Any) -> Future[T]:
                def timed() -> T:
                    started = time.perf_counter()
                    try:
                        return in_pool(spark, HOT_POOL, work)(*args)
                    finally:
                        took[name] = time.perf_counter() - started

                return pool.submit(timed)

            with ThreadPoolExecutor(max_workers=3) as pool:
                counts = hot("counts", self._apply_counts, counted, replaced, batch_id)
                late = hot("late", self._append_late, decisions, batch_id)
                marks = hot("watermarks", self._append_watermarks, decisions, batch_id)
                visible_at = counts.result()  # what readers of gold see: the counts
                late_count = late.result()
                marks.result()
        with clock.phase("freshness"):
            record_freshness(decisions.filter(kind.isin(*state.FACT_KINDS)), self.query_name, batch_id,
                             {"gold": visible_at})  # fmt: skip
        changed = counted.count()
        clock.rows = changed
        log.info(
            "%s: batch %s: %s RSVP states changed, %s late (%.1fs: %s; writes: %s)", self.query_name, batch_id,
            changed, late_count, sum(clock.seconds().values()), clock.summary(),
            ", ".join(f"{name} {seconds:.1f}s" for name, seconds in took.items()),
        )  # fmt: skip

    def _append_late(self, decisions: DataFrame, batch_id: int) -> int:
        """The batch's late messages into `late_rsvps` (once per batch); returns how many."""
        late = (
            decisions.filter(F.col("kind") == state.LATE)
            .withColumn("lateness_ms", F.col("watermark_ms") - F.col("version_mtime"))
            .withColumn("batch_id", F.lit(batch_id).cast("long"))
            .withColumn("recorded_at", F.current_timestamp())
            .select(*LATE_RSVPS.fieldNames())
        )
        late_count = late.count()
        if late_count:
            self.appender.append(late, self.path("late_rsvps"), batch_id, tasks=1)
        return late_count

    def _append_watermarks(self, decisions: DataFrame, batch_id: int) -> None:
        """Each partition's last offset and greatest mtime so far (the snapshots' "now"), once per batch."""
        marks = decisions.filter(F.col("kind") == state.MARK).select(
            "version_partition",
            F.col("version_offset").alias("through_offset"),
            F.col("version_mtime").alias("max_mtime"),
            F.lit(batch_id).cast("long").alias("batch_id"),
        )
        self.appender.append(marks, self.path("watermarks"), batch_id, tasks=1)

    def _apply_counts(self, counted: DataFrame, replaced: DataFrame, batch_id: int) -> datetime:
        """Every aggregate's net change, appended to the long counts table, into partitions of its own batch
        (so it neither waits for nor conflicts with the fold, fold.py); returns when it committed."""
        deltas = transforms.all_count_deltas(counted, replaced, batch_id)
        self.appender.append(deltas, self.path(COUNTS_TABLE), batch_id, tasks=1)
        return datetime.now(UTC)


def rebuild_snapshots(spark: SparkSession, layout: Layout, settings: Settings | None = None) -> None:
    """Rebuild the snapshot tables from the count tables, as of the stream time (the greatest mtime seen).

    With settings, and once categories are trained (meetup-categories), category_trends too.
    """

    def read(name: str) -> DataFrame:
        return spark.read.format("delta").load(layout.table(catalogue.table("gold", name)))

    counts = read(COUNTS_TABLE)

    def count(name: str) -> DataFrame:
        return count_view(counts, name)

    now_ms = one_row(read("watermarks").agg(F.max("max_mtime")))[0]
    if now_ms is None:
        return
    now = F.timestamp_millis(F.lit(now_ms))
    topic_hours = count("topics_by_hour").filter(
        F.col("hour") >= F.date_trunc("hour", now) - F.expr(f"INTERVAL {SNAPSHOT_HOURS} HOURS")
    )
    snapshots = {
        "topic_trends": transforms.rank_change(topic_hours),
        "top_groups_5min": transforms.top_groups(count("groups_by_minute"), now),
    }
    silver_events = layout.table(catalogue.SILVER_EVENTS)
    if DeltaTable.isDeltaTable(spark, silver_events):  # names and start times come from silver
        events = spark.read.format("delta").load(silver_events)
        snapshots["upcoming_events"] = transforms.upcoming_events(count("events_by_minute"), events, now)
    if settings is not None:
        trends = category_trends(spark, settings, layout, count("groups_by_minute"), now)
        if trends is not None:
            snapshots["category_trends"] = trends
    for name, df in snapshots.items():
        df.withColumn("as_of", now).write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            layout.table(catalogue.table("gold", name))
        )


class SnapshotSchedule(SparkThread):
    """Folds the counts (fold.py) and rebuilds the snapshot tables every `every_s` seconds in a thread of its
    own, in the slow pool: they read whole count tables, which took 26 s inside a gold batch under load (a
    spike in gold's freshness every 30 s). Only this thread folds and writes snapshots. A failed round is
    reported and tried again next time; a stop cancels the round running (each table keeps its last commit)."""

    def __init__(
        self,
        spark: SparkSession,
        layout: Layout,
        settings: Settings | None,
        every_s: float = 60.0,
        first_after_s: float = FIRST_SNAPSHOT_AFTER_S,
    ):
        super().__init__(spark, "gold-snapshots", pool=SLOW_POOL)
        self.layout, self.settings, self.every_s = layout, settings, every_s
        self.first_after_s = min(first_after_s, every_s)

    def work(self) -> None:
        # the first round soon after the start, so that a page opened on a fresh chain fills in within a
        # minute or two, not after a whole cadence; then every_s after each round ends
        wait = self.first_after_s
        while not self.stopped.wait(wait):
            wait = self.every_s
            clock = PhaseClock("gold-snapshots", int(time.time()))
            try:
                with clock.phase("fold counts"):
                    folded = fold_counts(self.spark, self.layout)
                    clock.rows = folded.rows_before if folded else 0
                with clock.phase("snapshots"):
                    rebuild_snapshots(self.spark, self.layout, self.settings)
            except Exception as error:  # noqa: BLE001 - the next round tries again; the stream goes on
                if self.stopped.is_set():
                    log.info("gold-snapshots: the stop cut a round short; the next run does it again")
                    return
                log.warning("gold-snapshots: fold or rebuild failed, tried again in %.0fs: %s", self.every_s, error)
            finally:
                clock.close()


def category_trends(
    spark: SparkSession, settings: Settings, layout: Layout, groups_by_minute: DataFrame, now: Column
) -> DataFrame | None:
    """Category popularity per hour with rank change, groups assigned by the current category model."""
    group_topics = layout.table(catalogue.SILVER_GROUP_TOPICS)
    assigner = load_assigner(settings) if DeltaTable.isDeltaTable(spark, group_topics) else None
    if assigner is None:
        return None
    version, assign = assigner
    categories = assign(group_topic_sets(spark.read.format("delta").load(group_topics)))
    recent = groups_by_minute.filter(
        F.col("minute") >= F.date_trunc("hour", now) - F.expr(f"INTERVAL {SNAPSHOT_HOURS} HOURS")
    )
    hours = transforms.categories_by_hour(recent, categories)
    return transforms.rank_change(hours, key="category").withColumn("categories_version", F.lit(version))


class OldLayoutError(RuntimeError):
    """A generation written before the counts moved into one table: its gold cannot be continued."""


def ensure_gold_tables(spark: SparkSession, layout: Layout) -> None:
    counts = layout.table(catalogue.GOLD_COUNTS)
    if DeltaTable.isDeltaTable(spark, counts):
        partitioned = one_row(DeltaTable.forPath(spark, counts).detail()).partitionColumns
        if list(partitioned) != list(COUNTS_PARTITIONS):  # totals MERGEd in place: batches cannot append
            raise OldLayoutError(
                f"generation {layout.generation} keeps its gold counts as totals ({counts}, partitioned by "
                f"{', '.join(partitioned)}), an older layout this chain cannot continue: reprocess it into a new "
                "generation, `make replay TO=<new generation>`, which rebuilds every table from Kafka"
            )
    else:
        old = layout.retired("gold", AGGREGATES[0].name)  # before the counts moved into one table
        if DeltaTable.isDeltaTable(spark, old):  # gold's state would subtract from counts that are not there
            raise OldLayoutError(
                f"generation {layout.generation} keeps its gold counts one table per aggregate ({old}), "
                "an older layout this chain cannot continue: reprocess it into a new generation, "
                "`make replay TO=<new generation>`, which rebuilds every table from Kafka"
            )
        ensure_tables(spark, layout, {catalogue.GOLD_COUNTS: COUNTS}, partition_by=COUNTS_PARTITIONS)
    ensure_tables(spark, layout, {catalogue.GOLD_WATERMARKS: WATERMARKS, catalogue.GOLD_LATE_RSVPS: LATE_RSVPS})


def start_gold(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: Trigger,
    lateness_ms: int = transforms.DEFAULT_LATENESS_MS,
    max_offsets_per_trigger: int | None = None,
    starting_offsets: str = "earliest",
) -> StreamingQuery:
    """The gold query, on the RSVP topic: parse and validate (silver's rules), decide in the state store
    (state.py), write in foreachBatch. starting_offsets applies only to a new checkpoint (as bronze's).
    The snapshot tables are not rebuilt here: the chain's SnapshotSchedule does it off the batch thread."""
    ensure_gold_tables(spark, layout)
    refuse_bronze_checkpoint(settings, layout)
    refuse_stateless_checkpoint(settings, layout)
    reader = spark.readStream.format("kafka").options(
        **kafka_source_options(settings, settings.kafka.topic("rsvps"), starting_offsets)
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    checked = validation.with_reason(
        validation.with_parsed(to_bronze(reader.load()), RSVP_MESSAGE), validation.rsvp_rules()
    )
    facts = transforms.to_facts(validation.filter_valid(checked))
    return (
        state.decide(facts, lateness_ms)
        .writeStream.queryName(QUERY)
        .foreachBatch(GoldBatch(spark, layout))
        .option("checkpointLocation", layout.checkpoint(QUERY))
        .trigger(**trigger)
        .start()
    )


def refuse_stateless_checkpoint(settings: Settings, layout: Layout) -> None:
    """Gold once kept its state in Delta tables (`rsvp_state`, `watermarks`) and its query had no state store.
    Such a checkpoint cannot gain one midway (the new state would start empty and count every RSVP again):
    the generation is refused, with the way out."""
    store = Store(settings)
    checkpoint = checkpoints.offsets_log(layout, QUERY).removesuffix("/offsets")
    if store.files(f"{checkpoint}/commits") and not store.exists(f"{checkpoint}/state/"):  # a batch done, no state
        raise OldLayoutError(
            f"generation {layout.generation}'s gold query kept its state in Delta tables, an older layout this "
            "chain cannot continue: reprocess it into a new generation, `make replay TO=<new generation>`, "
            "which rebuilds every table from Kafka"
        )


def refuse_bronze_checkpoint(settings: Settings, layout: Layout) -> None:
    """Gold once streamed from the bronze table. A checkpoint of that query holds Delta offsets, which the
    Kafka source cannot continue from; a new checkpoint would start at batch 0 and have its batches skipped
    as already applied (Delta transaction ids): so such a generation is refused, with the way out."""
    store = Store(settings)
    offsets = checkpoints.offsets_log(layout, QUERY)
    batches = [int(name) for name in store.files(offsets) if name.isdigit()]
    newest = store.read(f"{offsets}/{max(batches)}") if batches else None
    if newest and b"reservoirId" in newest:  # a Delta source's offset, not Kafka's
        raise OldLayoutError(
            f"generation {layout.generation}'s gold query streamed from the bronze table, an older layout this "
            "chain cannot continue: reprocess it into a new generation, `make replay TO=<new generation>`, "
            "which rebuilds every table from Kafka"
        )
