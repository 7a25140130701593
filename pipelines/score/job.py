"""The scoring stage of the chain: every new RSVP scored by the current model, its final answer joined later.

Query `score-rsvps` reads bronze (like gold) and, per micro-batch (foreachBatch):
1. validates with silver's rules; computes each *new* RSVP's features against `score_state`, the
   newest version of every RSVP seen so far (ml/features.py: history is point-in-time);
2. scores them with the model CURRENT names in the registry, polled every batch: a newly trained
   version is picked up by the next batch, without a restart. With no model yet, nothing is scored
   (the state still moves on, so the history of later RSVPs is complete);
3. one MERGE into gold `scored_rsvps`: new RSVPs are inserted with their prediction, and every RSVP
   already there takes the batch's newest answer (newest mtime wins), which is what live accuracy is
   measured against;
4. `score_state` takes the batch's newest versions.

Exactly once: both writes are idempotent (insert-if-absent, newest-wins), and the scores are written
before the state moves, so a batch re-run after a crash computes the same features and changes nothing.
The stage reads bronze without gold's small file limit (Delta's default admits up to 1,000 files a batch,
and a bronze commit has one file per Kafka partition), so a batch boundary practically never splits the
messages of one bronze commit, and a batch sees everything that arrived before it; a test checks that
scores across runs equal one pass over the whole log.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from delta.tables import DeltaTable
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import Settings
from common.spark import SLOW_POOL, Trigger, use_pool
from ml import features as X
from ml.model import predict
from ml.registry import Registry
from pipelines.bronze.job import read_bronze_stream
from pipelines.delta_io import merge_newest, retry_on_conflict
from pipelines.layout import Layout
from pipelines.metrics import record_freshness
from pipelines.phases import PhaseClock
from pipelines.silver import validation
from pipelines.silver.schemas import VERSION_COLUMNS
from pipelines.silver.transforms import is_newer

log = logging.getLogger(__name__)

QUERY = "score-rsvps"
SCORED_RSVPS = T.StructType(
    [
        T.StructField("rsvp_id", T.LongType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("probability_yes", T.DoubleType()),
        T.StructField("predicted", T.StringType()),
        T.StructField("scored_at", T.TimestampType()),
        T.StructField("rsvp_time", T.TimestampType()),  # mtime of the first message: when it was made
        T.StructField("member_id", T.LongType()),
        T.StructField("group_id", T.LongType()),
        T.StructField("event_id", T.StringType()),
        T.StructField("group_name", T.StringType()),
        T.StructField("event_name", T.StringType()),
        T.StructField("country", T.StringType()),
        T.StructField("answer", T.StringType()),  # the newest answer so far; the final one in the end
        *X.VERSION_FIELDS,
    ]
)


class ModelPoller:
    """Holds the current model version, reloading it when the registry's CURRENT changes."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.version: str | None = None
        self.model: PipelineModel | None = None

    def get(self) -> tuple[str | None, PipelineModel | None]:
        current = self.registry.current()
        if current is not None and current != self.version:
            self.version, self.model = self.registry.load(current)
            log.info("%s: scoring with model %s", QUERY, current)
        return self.version, self.model


def scored_rows(features_df: DataFrame, model: PipelineModel, version: str) -> DataFrame:
    """Feature rows of new RSVPs -> prediction rows (without the answer columns)."""
    return predict(model, features_df).select(
        "rsvp_id",
        F.lit(version).alias("model_version"),
        F.col("p_yes").alias("probability_yes"),
        "predicted",
        F.current_timestamp().alias("scored_at"),
        F.timestamp_millis("mtime").alias("rsvp_time"),
        "member_id",
        "group_id",
        "event_id",
        "group_name",
        "event_name",
        "country",
    )


def with_answers(predictions_df: DataFrame | None, newest_df: DataFrame) -> DataFrame:
    """The MERGE source: every RSVP of the batch with its newest answer, and its prediction if it is new."""
    answers = newest_df.select("rsvp_id", F.when(F.col("yes"), "yes").otherwise("no").alias("answer"), *VERSION_COLUMNS)
    if predictions_df is None:
        empty = [
            F.lit(None).cast(f.dataType).alias(f.name) for f in SCORED_RSVPS.fields if f.name not in answers.columns
        ]
        return answers.select(*answers.columns, *empty).select(*SCORED_RSVPS.fieldNames())
    return answers.join(predictions_df, "rsvp_id", "left").select(*SCORED_RSVPS.fieldNames())


class ScoreBatch:
    """The foreachBatch function of the scoring query."""

    def __init__(self, spark: SparkSession, settings: Settings, layout: Layout):
        self.spark = spark
        self.layout = layout
        self.models = ModelPoller(Registry(settings))
        self.app_id = f"{layout.generation}-{QUERY}"
        self.checks = validation.Checks(validation.rsvp_rules())  # built once, applied to every batch

    def path(self, name: str) -> str:
        return self.layout.table("gold", name)

    def __call__(self, bronze_batch_df: DataFrame, batch_id: int) -> None:
        use_pool(self.spark, SLOW_POOL)
        clock = PhaseClock(QUERY, batch_id)
        # read the batch once: a second read of the source would count its rows twice in the query's progress
        raw = bronze_batch_df.select("value", "partition", "offset", "kafka_timestamp").persist()
        messages = X.valid_messages(raw, self.checks).persist()
        try:
            with clock.phase("parse and validate"):
                empty = messages.isEmpty()
            if not empty:
                self._process(raw, messages, batch_id, clock)
        finally:
            messages.unpersist()
            raw.unpersist()
            clock.close()

    def _process(self, raw: DataFrame, messages: DataFrame, batch_id: int, clock: PhaseClock) -> None:
        with clock.phase("model poll"):
            version, model = self.models.get()
        state = self.spark.read.format("delta").load(self.path("score_state"))
        predictions = None
        if model is not None and version is not None:
            with clock.phase("features and predict"):
                # materialized now, against the state before this batch (the state is written below)
                predictions = scored_rows(X.rsvp_features(messages, state), model, version).localCheckpoint()
        with clock.phase("newest states"):
            newest = X.newest_states(messages).localCheckpoint()
        source = with_answers(predictions, newest)
        with clock.phase("scored merge"):
            retry_on_conflict(
                lambda: (
                    DeltaTable.forPath(self.spark, self.path("scored_rsvps"))
                    .alias("t")
                    .merge(source.alias("s"), "t.rsvp_id = s.rsvp_id")
                    .whenMatchedUpdate(
                        condition=is_newer("s", "t"),
                        set={c: f"s.{c}" for c in ("answer", *VERSION_COLUMNS)},
                    )
                    .whenNotMatchedInsertAll(condition="s.probability_yes IS NOT NULL")
                    .execute()
                )
            )
        with clock.phase("state merge"):
            merge_newest(self.spark, self.path("score_state"), newest, ("rsvp_id",), create=False)
        visible_at = datetime.now(timezone.utc)
        with clock.phase("freshness"):
            record_freshness(raw, QUERY, batch_id, {"score": visible_at})
        scored = predictions.count() if predictions is not None else 0
        clock.rows = scored
        log.info(
            "%s: batch %s: %s new RSVPs scored%s (%.1fs: %s)", QUERY, batch_id, scored,
            f" by {version}" if version else " (no model yet: make train)", sum(clock.seconds().values()),
            clock.summary(),
        )  # fmt: skip
        for df in (predictions, newest):
            if df is not None:
                df.unpersist()


def ensure_scoring_tables(spark: SparkSession, layout: Layout) -> None:
    for name, schema in {"score_state": X.STATE, "scored_rsvps": SCORED_RSVPS}.items():
        DeltaTable.createIfNotExists(spark).location(layout.table("gold", name)).addColumns(schema).execute()


def start_scoring(spark: SparkSession, settings: Settings, layout: Layout, *, trigger: Trigger) -> StreamingQuery:
    ensure_scoring_tables(spark, layout)
    query: StreamingQuery = (
        read_bronze_stream(spark, layout, "rsvps")  # whole bronze commits: see the module's docstring
        .writeStream.queryName(QUERY)
        .foreachBatch(ScoreBatch(spark, settings, layout))
        .option("checkpointLocation", layout.checkpoint(QUERY))
        .trigger(**trigger)
        .start()
    )
    return query
