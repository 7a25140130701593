"""The scoring stage of the chain: every new RSVP scored by the current model, its final answer joined later.

Query `score-rsvps` reads bronze (like gold) and, per micro-batch (foreachBatch):
1. validates with silver's rules; computes each *new* RSVP's features against `score_state`, the
   newest version of every RSVP seen so far (ml/features.py: history is point-in-time);
2. scores them with the model CURRENT names in the registry, polled every batch: a newly trained
   version is picked up by the next batch, without a restart. With no model yet, nothing is scored
   (the state still moves on, so the history of later RSVPs is complete);
3. calibrates them online (StreamCalibration, ml/calibration.py): each block of 100 RSVPs gets a shift of
   the model's log-odds fitted on the answers before it; a block starting in this batch is fitted now and
   kept in gold `score_calibration`;
4. one MERGE into gold `scored_rsvps`: new RSVPs are inserted with their prediction, and every RSVP
   already there takes the batch's newest answer (newest mtime wins), which is what live accuracy is
   measured against;
5. `score_state` takes the batch's newest versions.

Exactly once: every write is idempotent (the shifts appended once per batch id, insert-if-absent,
newest-wins), and the state moves last, so a batch re-run after a crash computes the same features,
ordinals and shifts, and changes nothing.
The stage reads bronze without gold's small file limit (Delta's default admits up to 1,000 files a batch,
and a bronze commit has one file per Kafka partition), so a batch boundary practically never splits the
messages of one bronze commit, and a batch sees everything that arrived before it; a test checks that
scores across runs equal one pass over the whole log.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from delta.tables import DeltaTable
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import Settings
from common.spark import SLOW_POOL, Trigger, use_pool
from lakehouse import catalogue, validation
from lakehouse.delta_io import append_once, ensure_tables, is_newer, merge_newest, retry_on_conflict
from lakehouse.layout import Layout
from lakehouse.schemas import VERSION_COLUMNS
from ml import calibration as C
from ml import features as X
from ml.model import predict
from ml.registry import Registry
from pipelines.bronze.job import read_bronze_stream
from pipelines.metrics import record_freshness
from pipelines.phases import PhaseClock

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
        # online calibration (ml/calibration.py): probability_yes = sigmoid(logit(probability_raw) + shift)
        T.StructField("ordinal", T.LongType()),  # the RSVP's place in the order of first arrivals
        T.StructField("probability_raw", T.DoubleType()),  # the model's own probability
        T.StructField("calibration_shift", T.DoubleType()),
    ]
)
# one row per block of RSVPs and model version: the shift its RSVPs were scored with, and what decided it
SCORE_CALIBRATION = T.StructType(
    [
        T.StructField("block", T.LongType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("shift", T.DoubleType()),
        T.StructField("answers", T.LongType()),  # the earlier answers it was fitted on
        T.StructField("yes_rate", T.DoubleType()),  # their yes rate
        T.StructField("block_start", T.TimestampType()),  # when the block's first RSVP reached Kafka
        T.StructField("batch_id", T.LongType()),
        T.StructField("fitted_at", T.TimestampType()),
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


# what a scored RSVP carries from its features: who, which group and event, where
WHO_WHERE = ("member_id", "group_id", "event_id", "group_name", "event_name", "country")


def raw_scores(features_df: DataFrame, model: PipelineModel, version: str, first_ordinal: int) -> DataFrame:
    """Feature rows of new RSVPs -> the model's own scores, each RSVP numbered from first_ordinal in the order
    of first arrivals (the scorer's state counts the RSVPs before them)."""
    in_batch = Window.partitionBy(F.lit(0)).orderBy(*(F.col(c) for c in X.ARRIVAL))  # a batch's new RSVPs
    predicted = predict(model, features_df)
    return predicted.select(
        "rsvp_id",
        F.lit(version).alias("model_version"),
        F.col("p_yes").alias("probability_raw"),
        (F.row_number().over(in_batch) - 1 + first_ordinal).cast("long").alias("ordinal"),
        F.timestamp_millis("mtime").alias("rsvp_time"),
        *WHO_WHERE,
        *X.ARRIVAL,
    )


def scored_rows(raw_df: DataFrame, shifts: dict[tuple[int, str], dict[str, float]]) -> DataFrame:
    """raw_scores' rows -> prediction rows (without the answer columns), calibrated by the blocks' shifts."""
    shift = C.shifts_column(shifts)
    calibrated = C.sigmoid(C.logit(F.col("probability_raw")) + shift)
    return raw_df.select(
        "rsvp_id",
        "model_version",
        calibrated.alias("probability_yes"),
        F.when(calibrated >= 0.5, "yes").otherwise("no").alias("predicted"),
        F.current_timestamp().alias("scored_at"),
        "rsvp_time",
        *WHO_WHERE,
        "ordinal",
        "probability_raw",
        shift.alias("calibration_shift"),
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
        self.calibration = StreamCalibration(spark, layout, self.app_id)

    def path(self, name: str) -> str:
        return self.layout.table(catalogue.table("gold", name))

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
        predictions = own = None
        if model is not None and version is not None:
            with clock.phase("features and predict"):
                # materialized now, against the state before this batch (the state is written below); the state
                # holds one row per RSVP seen, so its count is the first new RSVP's ordinal
                first_ordinal = state.count()
                features = X.rsvp_features(messages, state)
                own = raw_scores(features, model, version, first_ordinal).localCheckpoint()
            with clock.phase("calibration"):
                shifts = self.calibration(own, state, messages, version, first_ordinal, batch_id)
                predictions = scored_rows(own, shifts).localCheckpoint()
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
        visible_at = datetime.now(UTC)
        with clock.phase("freshness"):
            record_freshness(raw, QUERY, batch_id, {"score": visible_at})
        scored = predictions.count() if predictions is not None else 0
        clock.rows = scored
        log.info(
            "%s: batch %s: %s new RSVPs scored%s (%.1fs: %s)", QUERY, batch_id, scored,
            f" by {version}" if version else " (no model yet: make train)", sum(clock.seconds().values()),
            clock.summary(),
        )  # fmt: skip
        for df in (own, predictions, newest):
            if df is not None:
                df.unpersist()


class StreamCalibration:
    """The scoring stream's online calibration (ml/calibration.py), block by block as the RSVPs arrive.

    A block's shift is fitted in the batch where its first RSVP arrives, with the model version scoring then,
    on the answers of the blocks before it as they stood at that moment: the state before the batch and the
    batch's messages that arrived before the block's first RSVP. It is kept in `score_calibration`, where a
    later batch of the same block finds it. RSVPs of a block that a newer version scores than the one its
    shift was fitted for are scored raw (shift 0) until the next block.

    Exact after a crash: the state moves last, so a re-run batch counts the same ordinals and finds the same
    answers; the earlier RSVPs' scores are read below its first ordinal, and the shifts are appended once per
    batch id (Delta's transaction ids).
    """

    def __init__(self, spark: SparkSession, layout: Layout, app_id: str, settings: C.Blocks = C.DEFAULT):
        self.spark = spark
        self.layout = layout
        self.app_id = f"{app_id}-calibration"
        self.settings = settings

    def __call__(
        self,
        raw_df: DataFrame,
        state_df: DataFrame,
        messages_df: DataFrame,
        version: str,
        first_ordinal: int,
        batch_id: int,
    ) -> dict[tuple[int, str], dict[str, float]]:
        """(block, version) -> fit, for every block this batch's new RSVPs (raw_df, raw_scores) fall in."""
        block = self.settings.block
        last_ordinal = first_ordinal + raw_df.count() - 1
        if last_ordinal < first_ordinal:
            return {}
        touched = range(first_ordinal // block, last_ordinal // block + 1)
        starting = [b for b in touched if b > 0 and b * block >= first_ordinal]
        shifts = self._stored(touched, version)
        if starting:
            fitted = self._fit(raw_df, state_df, messages_df, version, first_ordinal, starting)
            self._keep(raw_df, fitted, version, starting, batch_id)
            shifts.update(fitted)
        return shifts

    def path(self) -> str:
        return self.layout.table(catalogue.GOLD_SCORE_CALIBRATION)

    def _stored(self, blocks: range, version: str) -> dict[tuple[int, str], dict[str, float]]:
        rows = (
            self.spark.read.format("delta")
            .load(self.path())
            .filter(F.col("block").between(blocks.start, blocks.stop - 1) & (F.col("model_version") == version))
            .collect()
        )
        return {(r["block"], version): {"shift": r["shift"], "answers": float(r["answers"])} for r in rows}

    def _fit(
        self,
        raw_df: DataFrame,
        state_df: DataFrame,
        messages_df: DataFrame,
        version: str,
        first_ordinal: int,
        starting: list[int],
    ) -> dict[tuple[int, str], dict[str, float]]:
        block, lo = self.settings.block, (starting[0] - self.settings.window_blocks) * self.settings.block
        earlier = (
            self.spark.read.format("delta")
            .load(self.layout.table(catalogue.GOLD_SCORED_RSVPS))
            .filter((F.col("ordinal") >= lo) & (F.col("ordinal") < first_ordinal))
            .select("rsvp_id", "ordinal", "model_version", C.logit(F.col("probability_raw")).alias("logit"))
        )
        this_batch = raw_df.filter(F.col("ordinal") < starting[-1] * block).select(
            "rsvp_id", "ordinal", "model_version", C.logit(F.col("probability_raw")).alias("logit")
        )
        versions = C.state_versions(state_df).unionByName(C.message_versions(messages_df))
        starts = C.block_starts(raw_df, self.settings)
        answers = C.block_answers(earlier.unionByName(this_batch), starts, versions, self.settings)
        fitted = C.fit_blocks(answers.filter(F.col("model_version") == version), self.settings)
        for b in starting:  # a block with no earlier answers of this version keeps the model's own probabilities
            fitted.setdefault((b, version), {"shift": 0.0, "answers": 0.0, "yes_rate": float("nan")})
        return fitted

    def _keep(
        self,
        raw_df: DataFrame,
        fitted: dict[tuple[int, str], dict[str, float]],
        version: str,
        starting: list[int],
        batch_id: int,
    ) -> None:
        starts = {
            r["block"]: r["arrival_ms"]
            for r in raw_df.filter(F.col("ordinal") % self.settings.block == 0)
            .select((F.col("ordinal") / self.settings.block).cast("long").alias("block"), "arrival_ms")
            .collect()
        }
        now = datetime.now(UTC)
        rows = [
            (
                b,
                version,
                fitted[(b, version)]["shift"],
                int(fitted[(b, version)]["answers"]),
                None if math.isnan(fitted[(b, version)]["yes_rate"]) else fitted[(b, version)]["yes_rate"],
                datetime.fromtimestamp(starts[b] / 1000, UTC),
                batch_id,
                now,
            )
            for b in starting
        ]
        append_once(self.spark.createDataFrame(rows, SCORE_CALIBRATION), self.path(), self.app_id, batch_id, tasks=1)


def ensure_scoring_tables(spark: SparkSession, layout: Layout) -> None:
    tables = {
        catalogue.GOLD_SCORE_STATE: X.STATE,
        catalogue.GOLD_SCORED_RSVPS: SCORED_RSVPS,
        catalogue.GOLD_SCORE_CALIBRATION: SCORE_CALIBRATION,
    }
    ensure_tables(spark, layout, tables)
    for entry, schema in tables.items():
        path = layout.table(entry)
        have = set(spark.read.format("delta").load(path).columns)
        missing = [f for f in schema.fields if f.name not in have]  # a table an older chain created
        if missing:
            columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in missing)
            spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
            log.info("%s: added %s to %s", QUERY, columns, path)


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
