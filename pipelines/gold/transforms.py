"""Gold's pure transforms: RSVP facts, the event-time watermark, and signed contributions to counts.

How gold counts (see docs/architecture.md, "Gold"):
- Every valid RSVP message becomes a *fact*: its version (mtime, Kafka partition, offset), answer,
  guests, and the keys it is counted under (region, group, event, topics, minute, hour of its mtime).
- The watermark is defined on the Kafka log, not on micro-batches: a message is *late* when its mtime
  is more than the allowed lateness older than the greatest mtime seen before it in its partition
  (every message of one RSVP is in one partition). The same log therefore gives the same late rows,
  however it is cut into batches: a replay agrees with the first run. Late messages go to
  `late_rsvps`; they never enter the windowed counts.
- Gold keeps its own state of each RSVP (the newest admitted fact), in the query's state store
  (state.py, which also applies the watermark). When a newer fact replaces the state, the old state's
  contribution is subtracted and the new one added: a duplicate counts once, and a yes that flips to no
  moves from the yes count to the no count (of its new minute).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse import message
from lakehouse.aggregates import AGGREGATES, MEASURES, Aggregate, aggregate
from lakehouse.schemas import VERSION_COLUMNS
from pipelines.gold.schemas import KEY_TYPES

__all__ = ["AGGREGATES", "MEASURES", "Aggregate"]  # defined in lakehouse.aggregates, used from here too

DEFAULT_LATENESS_MS = 10 * 60 * 1000


def to_facts(valid_df: DataFrame) -> DataFrame:
    """Valid parsed RSVP messages (silver's validation) -> one fact per message."""
    return valid_df.select(
        *message.flat("rsvp_id"),
        *message.version(),
        *message.flat("response", "guests"),
        message.field("group_country").alias("country"),
        message.field("group_state").alias("state"),
        message.field("group_city").alias("city"),
        *message.flat("group_id", "event_id"),
        F.transform(message.field("group_topics"), lambda t: t["urlkey"]).alias("topics"),
        F.col("kafka_timestamp"),
    )


STATE_COLUMNS = (
    "rsvp_id",
    *VERSION_COLUMNS,
    "response",
    "guests",
    "country",
    "state",
    "city",
    "group_id",
    "event_id",
    "topics",
)


def _key_columns() -> dict[str, Column]:
    """Every count key but a topic's urlkey, from a state's columns."""
    at = F.timestamp_millis(F.col("version_mtime"))
    return {
        "minute": F.date_trunc("minute", at),
        "hour": F.date_trunc("hour", at),
        **{key: F.col(key) for key in ("country", "state", "city", "group_id", "event_id")},
        "stream": F.lit("rsvps"),
    }


def _signed_measures(sign: int) -> list[Column]:
    """A state's yes, no and guests, signed: +1 added, -1 taken back."""
    yes = F.col("response") == "yes"
    return [
        (F.when(yes, 1).otherwise(0) * sign).cast("long").alias("yes"),
        (F.when(yes, 0).otherwise(1) * sign).cast("long").alias("no"),
        (F.when(yes, F.col("guests")).otherwise(0) * sign).cast("long").alias("guests"),
    ]


def contributions(states_df: DataFrame, aggregate: Aggregate, sign: int) -> DataFrame:
    """Each state's signed contribution (+1 added, -1 taken back) under the aggregate's keys."""
    keys = [column.alias(key) for key, column in _key_columns().items()]
    df = states_df.select(*keys, *_signed_measures(sign), F.col("topics"))
    if aggregate.explode_topics:
        df = df.withColumn("urlkey", F.explode(F.array_distinct("topics")))
    return df.select(*aggregate.keys, *MEASURES)


def count_deltas(new_states: DataFrame, old_states: DataFrame, aggregate: Aggregate) -> DataFrame:
    """Net change per key of one batch: new states added, replaced states taken back; zero changes dropped."""
    both = contributions(new_states, aggregate, +1).unionByName(contributions(old_states, aggregate, -1))
    return net_counts(both, aggregate.keys)


def all_count_deltas(new_states: DataFrame, old_states: DataFrame, batch_id: int) -> DataFrame:
    """Every aggregate's net change of one batch, as rows of the long counts table (see aggregates.py),
    each tagged with the batch that appended it.

    One pass for all six: each signed state (+1 added, -1 taken back) is exploded into one row per aggregate
    (per topic for topics_by_hour), carrying that aggregate's keys and the others null, and the rows are
    summed per (aggregate, keys) in one shuffle. The result is each aggregate's count_deltas
    (tests/unit/test_gold_transforms.py checks it). A union of the twelve (aggregate, sign) selects gave the
    same rows with twelve scans of the batch: 2.0-2.4 s against 0.5-0.75 s for a 290-state batch alone on
    the machine (docs/benchmarks-history.md)."""
    state_columns = ("version_mtime", "country", "state", "city", "group_id", "event_id", "topics")
    signed = new_states.select(*state_columns, *_signed_measures(+1)).unionByName(
        old_states.select(*state_columns, *_signed_measures(-1))
    )
    values = _key_columns()

    def keyed(agg: Aggregate, urlkey: Column | None = None) -> Column:
        known = {**values, "urlkey": F.lit(None) if urlkey is None else urlkey}
        return F.struct(
            F.lit(agg.name).alias("aggregate"),
            *((known[k] if k in agg.keys else F.lit(None)).cast(t).alias(k) for k, t in KEY_TYPES.items()),
        )

    def per_topic(agg: Aggregate) -> Column:
        topics = F.array_distinct(F.coalesce(F.col("topics"), F.array().cast("array<string>")))
        return F.transform(topics, lambda topic: keyed(agg, topic))

    keys = F.concat(
        F.array(*(keyed(agg) for agg in AGGREGATES if not agg.explode_topics)),
        *(per_topic(agg) for agg in AGGREGATES if agg.explode_topics),
    )
    rows = signed.select(F.explode(keys).alias("key"), *MEASURES).select("key.*", *MEASURES)
    return net_counts(rows, ["aggregate", *KEY_TYPES]).withColumn("batch_id", F.lit(batch_id).cast("long"))


def net_counts(counts_df: DataFrame, keys: Sequence[str]) -> DataFrame:
    """A key's count is the sum of its rows (the batches' changes, and what the fold made of earlier ones);
    a key whose every RSVP moved away sums to zero and is left out, as it would be from a fresh count."""
    summed = counts_df.groupBy(*keys).agg(*(F.sum(m).alias(m) for m in MEASURES))
    return summed.filter(" OR ".join(f"{m} != 0" for m in MEASURES))


def count_view(counts_df: DataFrame, name: str) -> DataFrame:
    """One aggregate of the long counts table, as a table of its own: its keys and their net measures."""
    return net_counts(counts_df.filter(F.col("aggregate") == name), aggregate(name).keys)


def null_safe_on(keys: Sequence[str], left: str = "t", right: str = "s") -> str:
    """Join condition for keys that may be null (a region without a state)."""
    return " AND ".join(f"{left}.`{k}` <=> {right}.`{k}`" for k in keys)


def rank_change(by_hour_df: DataFrame, key: str = "urlkey") -> DataFrame:
    """Each key's (topic's, category's) rank in each hour (by yes, then all RSVPs) and its change from the
    hour before. rank_change > 0 means it climbed; null means it was not ranked in the previous hour.
    """
    by_hour = Window.partitionBy("hour").orderBy(F.col("yes").desc(), (F.col("yes") + F.col("no")).desc(), key)
    ranked = by_hour_df.withColumn("rank", F.row_number().over(by_hour))
    previous = ranked.select(
        (F.col("hour") + F.expr("INTERVAL 1 HOUR")).alias("hour"), key, F.col("rank").alias("previous_rank")
    )
    return ranked.join(previous, ["hour", key], "left").withColumn(
        "rank_change", F.col("previous_rank") - F.col("rank")
    )


def categories_by_hour(groups_by_minute_df: DataFrame, categories_df: DataFrame, other: str = "other") -> DataFrame:
    """Group counts per minute + each group's category (group_id, category) -> yes and no per category per hour."""
    return (
        groups_by_minute_df.join(categories_df.select("group_id", "category"), "group_id", "left")
        .groupBy(F.date_trunc("hour", "minute").alias("hour"), F.coalesce("category", F.lit(other)).alias("category"))
        .agg(F.sum("yes").alias("yes"), F.sum("no").alias("no"))
    )


def top_groups(groups_by_minute_df: DataFrame, now: Column, minutes: int = 5, limit: int = 20) -> DataFrame:
    """Groups with the most yes RSVPs in the last `minutes` minutes of stream time before `now`."""
    since = now - F.expr(f"INTERVAL {minutes} MINUTES")
    recent = groups_by_minute_df.filter((F.col("minute") > since) & (F.col("minute") <= now))
    summed = recent.groupBy("group_id").agg(F.sum("yes").alias("yes"), F.sum("no").alias("no"))
    return summed.filter(F.col("yes") > 0).orderBy(F.col("yes").desc(), "group_id").limit(limit)


def upcoming_events(
    events_by_minute_df: DataFrame, events_df: DataFrame, now: Column, window_minutes: int = 60, limit: int = 50
) -> DataFrame:
    """Events not yet started at `now`, by yes RSVPs in the last hour of stream time (the fill rate)."""
    since = now - F.expr(f"INTERVAL {window_minutes} MINUTES")
    counts = events_by_minute_df.groupBy("event_id").agg(
        F.sum("yes").alias("yes"),
        F.sum("no").alias("no"),
        F.sum("guests").alias("guests"),
        F.sum(F.when(F.col("minute") > since, F.col("yes")).otherwise(0)).alias("yes_last_hour"),
    )
    return (
        counts.join(events_df.select("event_id", "event_name", "group_id", "time"), "event_id")
        .filter(F.col("time") > now)
        .filter(F.col("yes_last_hour") > 0)
        .orderBy(F.col("yes_last_hour").desc(), F.col("yes").desc(), "event_id")
        .limit(limit)
    )
