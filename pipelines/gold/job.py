"""Gold job: RSVPs from Kafka -> event-time counts, late rows, the PostgreSQL mirror, snapshots.

Gold reads the Kafka topic itself, in bronze's row shape (bronze.transforms.to_bronze), not the bronze
table: it does not wait for bronze's commit, nor share the bronze query's cadence, and it runs beside silver
rather than after it. It parses and validates with silver's own code, so both see the same valid messages.
It is the chain's hot path (see README, "The hot path and the slow path"). Per micro-batch (foreachBatch):
1. facts from the valid messages; the log-defined watermark marks late facts -> `late_rsvps` (append);
2. the newest admitted fact per RSVP that beats gold's own `rsvp_state`: its contribution is added to
   every count aggregate and the replaced state's is taken back, as the batch's net change per key,
   appended to the long `counts` table (aggregates.py; the slow path folds the changes, fold.py). Side by
   side with it, each in a thread of its own: the batch's 3NF rows to PostgreSQL
   (mirror.py: ledger-guarded, exactly once), the new states into `rsvp_state`, the late rows, and the
   new per-partition maxima into `watermarks`;
3. the batch's freshness (Kafka append -> visible in gold, i.e. the counts committed, and in PostgreSQL)
   is recorded with the metrics.
The counts fold and the snapshot tables (topic trends, top groups of the last 5 minutes, upcoming events
filling fastest) are the slow path's: `SnapshotSchedule` runs them off the batch thread (an available-now
run, once at its end).

Exactly once: the counts append is not idempotent by itself (it adds), so it carries Delta's transaction
id (app id, batch id): a batch re-run after a crash skips it if it already committed. A re-run must compute
the same deltas, so it reads the before-images from `rsvp_state` as it was before its first attempt: the
state MERGE marks its commit with the batch, and a re-run whose state had committed reads the version
before that mark (Delta time travel). The watermarks it reads leave out its own row.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.settings import Settings
from common.spark import HOT_POOL, SLOW_POOL, in_pool, use_pool
from common.store import Store
from ml.categories import group_topic_sets, load_assigner
from pipelines import checkpoints
from pipelines.bronze.job import kafka_source_options
from pipelines.bronze.transforms import to_bronze
from pipelines.delta_io import append_once, idempotent_merge, newest_merge
from pipelines.gold import transforms
from pipelines.gold.aggregates import AGGREGATES, COUNTS_TABLE
from pipelines.gold.fold import fold_counts
from pipelines.gold.schemas import COUNTS, COUNTS_PARTITIONS, LATE_RSVPS, RSVP_STATE, WATERMARKS
from pipelines.gold.transforms import STATE_COLUMNS, count_view
from pipelines.layout import Layout
from pipelines.metrics import record_freshness
from pipelines.phases import PhaseClock
from pipelines.silver import mirror, validation
from pipelines.silver import transforms as silver_transforms
from pipelines.silver.schemas import RSVP_MESSAGE

QUERY = "gold-rsvps"
SNAPSHOT_HOURS = 48  # topic trends are rebuilt for this many hours of stream time
WRITES_PHASE = "counts, state, mirror, late, watermarks"  # the hot path's writes, side by side (health page)


class GoldBatch:
    """The foreachBatch function of the gold query."""

    def __init__(
        self,
        spark: SparkSession,
        layout: Layout,
        *,
        lateness_ms: int,
        settings: Settings | None = None,
        mirror_to_postgres: bool = False,
    ):
        self.spark = spark
        self.layout = layout
        self.settings = settings  # where the category model is found, for category_trends
        self.lateness_ms = lateness_ms
        self.query_name = QUERY
        self.app_id = f"{layout.generation}-{self.query_name}"
        # The hot path: the PostgreSQL mirror of the batch's 3NF rows runs beside the count MERGEs.
        self.mirror_to_postgres = mirror_to_postgres
        if mirror_to_postgres and settings is None:
            raise ValueError("the PostgreSQL mirror needs the settings")
        # Delta's transaction id for a MERGE is a session setting: the state MERGE gets a session of its own,
        # so that it cannot leak into the jobs beside it (sessions share the SparkContext, not settings).
        self.state_session = spark.newSession()
        self._first_batch = True  # the first batch of a run may be one begun before a crash

    def path(self, name: str) -> str:
        return self.layout.table("gold", name)

    def __call__(self, bronze_batch_df: DataFrame, batch_id: int) -> None:
        use_pool(self.spark, HOT_POOL)
        clock = PhaseClock(self.query_name, batch_id)
        checked = validation.with_reason(validation.with_parsed(bronze_batch_df, RSVP_MESSAGE), validation.rsvp_rules())
        valid = validation.filter_valid(checked).persist()  # parsed once: facts and the mirror's rows
        facts = transforms.to_facts(valid).persist()
        try:
            with clock.phase("parse and validate"):
                empty = facts.isEmpty()
            if not empty:
                self._process(valid, facts, batch_id, clock)
        finally:
            facts.unpersist()
            valid.unpersist()
            clock.close()

    def _process(self, valid: DataFrame, facts: DataFrame, batch_id: int, clock: PhaseClock) -> None:
        spark = self.spark
        with clock.phase("watermarks read"):
            watermarks = spark.read.format("delta").load(self.path("watermarks"))
            prior = (
                watermarks.filter(F.col("batch_id") < batch_id)  # a re-run ignores its own first attempt's row
                .groupBy("version_partition")
                .agg(F.max("max_mtime").alias("prior_max_mtime"))
                .persist()  # read once: it decides lateness now and the next maxima below
            )
            judged = transforms.with_lateness(facts, prior, self.lateness_ms).persist()
        with clock.phase("state read and join"):
            state_now = self._state_before(batch_id)
            new_states, old_states = transforms.winners(judged.filter(~F.col("late")).select(*STATE_COLUMNS), state_now)
            # Materialize both now, against the state as it is before this batch: later steps write the state,
            # and a lazily recomputed winner would then compare the batch with itself.
            new_states, old_states = new_states.localCheckpoint(), old_states.localCheckpoint()
        try:
            with clock.phase(WRITES_PHASE):
                # Five writes side by side: none reads what another writes, and each is skipped when a batch
                # re-run finds it committed (Delta's transaction ids; the state's newest-wins MERGE changes
                # nothing twice). A re-run reads the state and the watermarks as they were before its first
                # attempt (see _state_before; the watermarks it reads leave out its own row), so it computes
                # the same counts and the same late rows whichever of the writes had committed.
                next_max = transforms.next_prior_max(facts, prior).withColumn("batch_id", F.lit(batch_id).cast("long"))
                took: dict[str, float] = {}  # each write's own seconds, for the batch's log line

                def hot(name, work, *args):
                    def timed():
                        started = time.perf_counter()
                        try:
                            return in_pool(spark, HOT_POOL, work)(*args)
                        finally:
                            took[name] = time.perf_counter() - started

                    return pool.submit(timed)

                with ThreadPoolExecutor(max_workers=5) as pool:
                    counted = hot("counts", self._apply_counts, new_states, old_states, batch_id)
                    mirrored = hot("mirror", self._mirror, valid, batch_id)
                    stated = hot("state", self._apply_state, new_states, batch_id)
                    late = hot("late", self._append_late, judged, batch_id)
                    marks = hot("watermarks", append_once, next_max.select(*WATERMARKS.fieldNames()),
                                self.path("watermarks"), self.app_id, batch_id)  # fmt: skip
                    visible_at = counted.result()  # what readers of gold see: the counts
                    mirrored_at, late_count = mirrored.result(), late.result()
                    stated.result()
                    marks.result()
            with clock.phase("freshness"):
                stages = {"gold": visible_at, **({"postgres": mirrored_at} if mirrored_at is not None else {})}
                record_freshness(facts, self.query_name, batch_id, stages)
            changed = new_states.count()
            clock.rows = changed
            print(
                f"{self.query_name}: batch {batch_id}: {changed} RSVP states changed, {late_count} late "
                f"({sum(clock.seconds().values()):.1f}s: {clock.summary()}; writes: "
                f"{', '.join(f'{name} {seconds:.1f}s' for name, seconds in took.items())})",
                file=sys.stderr,
                flush=True,
            )
        finally:
            for df in (prior, judged, new_states, old_states):
                df.unpersist()  # also frees the checkpointed blocks

    def _mirror(self, valid: DataFrame, batch_id: int) -> datetime | None:
        """The batch's newest rows per key of every 3NF table into PostgreSQL (ledger-guarded, one
        transaction); returns when they became visible there (None without the mirror)."""
        if not self.mirror_to_postgres:
            return None
        rows = mirror.collect_rows(silver_transforms.rsvp_tables(valid))
        mirror.apply_with_retry(
            lambda: mirror.connect(self.settings), self.settings.postgres.schema, self.app_id, batch_id, rows
        )
        return datetime.now(timezone.utc)

    def _state_before(self, batch_id: int) -> DataFrame:
        """`rsvp_state` as it was before this batch. A batch runs again only after a restart, as the first of
        its run; if its first attempt had committed the state (but not everything else), the state is read
        as of the version before that commit, which names the batch in its commit info."""
        path = self.path("rsvp_state")
        if self._first_batch:
            self._first_batch = False
            mark = self._state_mark(batch_id)
            # that commit is among the table's last few: only this query writes the state (and compacts it)
            begun = DeltaTable.forPath(self.spark, path).history(20).filter(F.col("userMetadata") == mark).collect()
            if begun:
                return self.spark.read.format("delta").option("versionAsOf", begun[0].version - 1).load(path)
        return self.spark.read.format("delta").load(path)

    def _state_mark(self, batch_id: int) -> str:
        return f"{self.app_id}:{batch_id}"

    def _apply_state(self, new_states: DataFrame, batch_id: int) -> None:
        """The batch's winners become the state (newest wins), the commit marked with the batch."""
        merge = newest_merge(self.state_session, self.path("rsvp_state"), new_states, ("rsvp_id",))
        idempotent_merge(self.state_session, self.app_id, batch_id, merge, user_metadata=self._state_mark(batch_id))

    def _append_late(self, judged: DataFrame, batch_id: int) -> int:
        """The batch's late messages into `late_rsvps` (once per batch); returns how many."""
        late = (
            judged.filter(F.col("late"))
            .withColumn("lateness_ms", F.col("watermark_ms") - F.col("version_mtime"))
            .withColumn("batch_id", F.lit(batch_id).cast("long"))
            .withColumn("recorded_at", F.current_timestamp())
            .select(*LATE_RSVPS.fieldNames())
        )
        late_count = late.count()
        if late_count:
            append_once(late, self.path("late_rsvps"), self.app_id, batch_id)
        return late_count

    def _apply_counts(self, new_states: DataFrame, old_states: DataFrame, batch_id: int) -> datetime:
        """Every aggregate's net change, appended to the long counts table, into partitions of its own batch
        (so it neither waits for nor conflicts with the fold, fold.py); returns when it committed."""
        deltas = transforms.all_count_deltas(new_states, old_states, batch_id)
        append_once(deltas, self.path(COUNTS_TABLE), self.app_id, batch_id)
        return datetime.now(timezone.utc)


def rebuild_snapshots(spark: SparkSession, layout: Layout, settings: Settings | None = None) -> None:
    """Rebuild the snapshot tables from the count tables, as of the stream time (the greatest mtime seen).

    With settings, and once categories are trained (meetup-categories), category_trends too.
    """
    read = lambda name: spark.read.format("delta").load(layout.table("gold", name))  # noqa: E731
    counts = read(COUNTS_TABLE)
    count = lambda name: count_view(counts, name)  # noqa: E731
    now_ms = read("watermarks").agg(F.max("max_mtime")).first()[0]
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
    silver_events = layout.table("silver", "events")
    if DeltaTable.isDeltaTable(spark, silver_events):  # names and start times come from silver
        events = spark.read.format("delta").load(silver_events)
        snapshots["upcoming_events"] = transforms.upcoming_events(count("events_by_minute"), events, now)
    if settings is not None:
        trends = category_trends(spark, settings, layout, count("groups_by_minute"), now)
        if trends is not None:
            snapshots["category_trends"] = trends
    for name, df in snapshots.items():
        df.withColumn("as_of", now).write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            layout.table("gold", name)
        )


class SnapshotSchedule:
    """Folds the counts (fold.py) and rebuilds the snapshot tables every `every_s` seconds in a thread of its
    own, in the slow pool: they read whole count tables, which took 26 s inside a gold batch under load (a
    spike in gold's freshness every 30 s). Only this thread folds and writes snapshots. A failed round is
    reported and tried again next time."""

    def __init__(self, spark: SparkSession, layout: Layout, settings: Settings | None, every_s: float = 60.0):
        self.spark, self.layout, self.settings, self.every_s = spark, layout, settings, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gold-snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=300)

    def _run(self) -> None:
        use_pool(self.spark, SLOW_POOL)
        while not self._stop.wait(self.every_s):
            clock = PhaseClock("gold-snapshots", int(time.time()))
            try:
                with clock.phase("fold counts"):
                    folded = fold_counts(self.spark, self.layout)
                    clock.rows = folded.rows_before if folded else 0
                with clock.phase("snapshots"):
                    rebuild_snapshots(self.spark, self.layout, self.settings)
            except Exception as error:  # noqa: BLE001 - the next round tries again; the stream goes on
                print(
                    f"gold-snapshots: fold or rebuild failed, tried again in {self.every_s:.0f}s: {error}",
                    file=sys.stderr,
                )
            finally:
                clock.close()


def category_trends(
    spark: SparkSession, settings: Settings, layout: Layout, groups_by_minute: DataFrame, now
) -> DataFrame | None:
    """Category popularity per hour with rank change, groups assigned by the current category model."""
    group_topics = layout.table("silver", "group_topics")
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
    counts = layout.table("gold", COUNTS_TABLE)
    if DeltaTable.isDeltaTable(spark, counts):
        partitioned = DeltaTable.forPath(spark, counts).detail().first().partitionColumns
        if list(partitioned) != list(COUNTS_PARTITIONS):  # totals MERGEd in place: batches cannot append
            raise OldLayoutError(
                f"generation {layout.generation} keeps its gold counts as totals ({counts}, partitioned by "
                f"{', '.join(partitioned)}), an older layout this chain cannot continue: reprocess it into a new "
                "generation, `make replay TO=<new generation>`, which rebuilds every table from Kafka"
            )
    else:
        old = layout.table("gold", AGGREGATES[0].name)
        if DeltaTable.isDeltaTable(spark, old):  # gold's state would subtract from counts that are not there
            raise OldLayoutError(
                f"generation {layout.generation} keeps its gold counts one table per aggregate ({old}), "
                "an older layout this chain cannot continue: reprocess it into a new generation, "
                "`make replay TO=<new generation>`, which rebuilds every table from Kafka"
            )
        DeltaTable.createIfNotExists(spark).location(counts).addColumns(COUNTS).partitionedBy(
            *COUNTS_PARTITIONS
        ).execute()
    for name, schema in {"rsvp_state": RSVP_STATE, "watermarks": WATERMARKS, "late_rsvps": LATE_RSVPS}.items():
        DeltaTable.createIfNotExists(spark).location(layout.table("gold", name)).addColumns(schema).execute()


def start_gold(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: dict[str, object],
    lateness_ms: int = transforms.DEFAULT_LATENESS_MS,
    max_offsets_per_trigger: int | None = None,
    starting_offsets: str = "earliest",
    mirror_to_postgres: bool = False,
) -> StreamingQuery:
    """The gold query, on the RSVP topic. starting_offsets applies only to a new checkpoint (as bronze's).
    The snapshot tables are not rebuilt here: the chain's SnapshotSchedule does it off the batch thread."""
    ensure_gold_tables(spark, layout)
    refuse_bronze_checkpoint(settings, layout)
    reader = spark.readStream.format("kafka").options(
        **kafka_source_options(settings, settings.kafka.topic("rsvps"), starting_offsets)
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return (
        to_bronze(reader.load())
        .writeStream.queryName(QUERY)
        .foreachBatch(
            GoldBatch(spark, layout, lateness_ms=lateness_ms, settings=settings, mirror_to_postgres=mirror_to_postgres)
        )
        .option("checkpointLocation", layout.checkpoint(QUERY))
        .trigger(**trigger)
        .start()
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
