"""Features of an RSVP as known when it arrives, for training, batch scoring and the scoring stream alike.

One example per RSVP: the features of its *first* message, labelled later with its *final* answer.
Nothing after that first message may leak in. Two kinds of feature:

- attributes of the message itself (`attribute_columns`): guests, lead time to the event, hour and
  weekday in the group's local time (longitude / 15 hours from UTC: approximate, as allowed), country,
  online or venue-less event, the group's topics, whether the member shows a photo or other services;
- point-in-time history (`history_counts`): how many *other* RSVPs of the same member, group and event
  stood at yes and at no among the messages that arrived before this one. A flip moves one RSVP from yes
  to no; a repeat changes nothing (each RSVP counts once, at its newest-mtime version so far).

"Before" is the order of arrival: (`arrival_ms`, `partition`, `offset`), i.e. the Kafka timestamp and
then the log coordinates for bronze, the line number for a JSONL file. A late message (old mtime) counts
from the moment it arrived, as it would for a live scorer. The scoring stream keeps the state of every
RSVP it has seen (`prior_state`) so that a micro-batch sees the same history as one pass over the log.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import message, validation
from lakehouse.schemas import RSVP_MESSAGE, SERVICES, VERSION_COLUMNS

ARRIVAL = ("arrival_ms", "partition", "offset")
ENTITIES = ("member", "group", "event")
HISTORY_COUNTS = tuple(f"{entity}_{answer}" for entity in ENTITIES for answer in ("yes", "no"))
# A weak prior for the smoothed yes rates: (yes + 3 * 0.75) / (answers + 3). A fixed constant, so it
# carries nothing of the training data into the features.
PRIOR_RATE, PRIOR_WEIGHT = 0.75, 3.0
HOUR_MS, DAY_MS = 3_600_000, 86_400_000

# What the model sees. Numeric columns go to the assembler as they are; country is one-hot encoded and
# topics become a bag of words inside the fitted pipeline (ml/model.py).
NUMERIC_FEATURES = (
    "guests",
    "has_guests",
    "lead_log_hours",
    "lead_unknown",
    "lead_past",
    "local_hour_sin",
    "local_hour_cos",
    "local_weekend",
    "online",
    "topic_count",
    "member_photo",
    "member_services",
    "event_weekend",
    "event_hour_sin",
    "event_hour_cos",
    "venue_log_km",
    "venue_km_unknown",
    *(f"{entity}_{stat}" for entity in ENTITIES for stat in ("log_answers", "yes_rate", "no_seen")),
)
# candidates computed with the others and left out of the model, each measured by bench/ml_features.py
SERVICE_FLAGS = tuple(f"member_{service}" for service in SERVICES)  # each service the member linked
CATEGORICAL_FEATURES = ("country",)
TOKEN_FEATURES = ("topics",)  # bags of words; `name_words` is computed too, a candidate the model leaves out
MIN_WORD_LENGTH = 3  # words of the event's and the group's names shorter than this are left out
CONTEXT_COLUMNS = (
    "rsvp_id",
    "member_id",
    "group_id",
    "event_id",
    "group_name",
    "event_name",
    "mtime",
    "first_response",
    *ARRIVAL,
)
# an RSVP's version (silver's newest-wins order), as fields of the scorer's tables
VERSION_FIELDS = tuple(
    T.StructField(c, T.IntegerType() if c == "version_partition" else T.LongType()) for c in VERSION_COLUMNS
)
STATE = T.StructType(
    [
        T.StructField("rsvp_id", T.LongType()),
        T.StructField("member_id", T.LongType()),
        T.StructField("group_id", T.LongType()),
        T.StructField("event_id", T.StringType()),
        T.StructField("yes", T.BooleanType()),
        *VERSION_FIELDS,
    ]
)


def valid_messages(raw_df: DataFrame, checks: validation.Checks | None = None) -> DataFrame:
    """Bronze-shaped rows (value, partition, offset, kafka_timestamp or arrival_ms) -> valid parsed messages.

    Validation is silver's own, so the model sees exactly the messages silver accepts. A stream passes the
    Checks it built once (validation.Checks), so that each batch does not rebuild the rules.
    """
    if "arrival_ms" not in raw_df.columns:
        raw_df = raw_df.withColumn("arrival_ms", F.unix_millis(F.col("kafka_timestamp")))
    checks = checks or validation.Checks(validation.rsvp_rules())
    checked = checks.apply(validation.with_parsed(raw_df, RSVP_MESSAGE))
    return validation.filter_valid(checked).select("msg", *ARRIVAL)


def lines_as_messages(lines_df: DataFrame) -> DataFrame:
    """A JSONL capture read with spark.read.text -> bronze-shaped rows; arrival is the line order."""
    order = F.monotonically_increasing_id()  # increasing in file order within and across splits
    return lines_df.select(
        F.col("value"), F.lit(0).alias("partition"), order.alias("offset"), order.alias("arrival_ms")
    )


def history_rows(messages_df: DataFrame) -> DataFrame:
    """Valid messages -> the columns history needs: who, which version, what answer, when it arrived."""
    return messages_df.select(
        *message.flat("rsvp_id", "member_id", "group_id", "event_id"),
        (message.field("response") == "yes").alias("yes"),
        message.field("mtime").alias("version_mtime"),
        F.col("partition").cast("int").alias("version_partition"),
        F.col("offset").alias("version_offset"),
        *ARRIVAL,
    )


def history_counts(rows_df: DataFrame, prior_state_df: DataFrame | None = None) -> DataFrame:
    """Adds, to every message row, the yes and no counts of other RSVPs of its member, group and event.

    rows_df: `history_rows`. prior_state_df (schema STATE): the newest version of every RSVP seen before
    these rows, or None for a pass over the whole log. Prior states are placed before every row.
    """
    rows = rows_df.withColumn("_prior", F.lit(False))
    if prior_state_df is not None:
        keys = {entity: rows_df.select(f"{entity}_id").distinct() for entity in ENTITIES}
        relevant = (
            prior_state_df.join(keys["member"], "member_id", "left_semi")
            .unionByName(prior_state_df.join(keys["group"], "group_id", "left_semi"))
            .unionByName(prior_state_df.join(keys["event"], "event_id", "left_semi"))
            .unionByName(prior_state_df.join(rows_df.select("rsvp_id").distinct(), "rsvp_id", "left_semi"))
            .distinct()
        )
        before_all = [F.lit(-1).cast("long").alias(c) for c in ARRIVAL]
        rows = rows.unionByName(relevant.select(*STATE.fieldNames(), *before_all).withColumn("_prior", F.lit(True)))
    arrival = [F.col(c) for c in ARRIVAL]
    per_rsvp = Window.partitionBy("rsvp_id").orderBy(*arrival)
    version = standing_version()
    # the RSVP's standing answer after this row: its newest version so far (a stale resend changes nothing)
    rows = rows.withColumn("_after", F.max(version).over(per_rsvp.rowsBetween(Window.unboundedPreceding, 0)))
    rows = rows.withColumn("_before", F.lag("_after").over(per_rsvp))

    def stood(state: Column, answer: bool) -> Column:
        return F.coalesce((state["yes"] == answer).cast("int"), F.lit(0))

    rows = rows.withColumn("_d_yes", stood(F.col("_after"), True) - stood(F.col("_before"), True))
    rows = rows.withColumn("_d_no", stood(F.col("_after"), False) - stood(F.col("_before"), False))
    for entity in ENTITIES:
        earlier = Window.partitionBy(f"{entity}_id").orderBy(*arrival).rowsBetween(Window.unboundedPreceding, -1)
        for answer in ("yes", "no"):
            rows = rows.withColumn(f"{entity}_{answer}", F.coalesce(F.sum(f"_d_{answer}").over(earlier), F.lit(0)))
    return rows.filter(~F.col("_prior")).drop("_prior", "_after", "_before", "_d_yes", "_d_no")


def first_messages(messages_df: DataFrame) -> DataFrame:
    """The first-arrived message of each RSVP among these messages."""
    first = Window.partitionBy(message.field("rsvp_id")).orderBy(*(F.col(c) for c in ARRIVAL))
    return messages_df.withColumn("_n", F.row_number().over(first)).filter(F.col("_n") == 1).drop("_n")


def attribute_columns() -> list[Column]:
    """The message's own features (no history), as columns over a valid parsed message `msg`."""
    lead_hours = (message.field("time") - message.field("mtime")) / HOUR_MS
    local_hour, weekday = local_clock(message.field("mtime"))
    venue = message.field("venue")
    online = (
        venue.isNull()
        | F.lower(message.field("venue_name")).contains("online")
        | ((message.field("lat") == 0) & (message.field("lon") == 0))
    )
    event_hour, event_weekday = local_clock(message.field("time"))
    km = venue_km()
    services = F.coalesce(
        F.greatest(*(message.field("other_services")[s].isNotNull().cast("int") for s in SERVICES)), F.lit(0)
    )

    def as_double(column: Column) -> Column:
        return column.cast("double")

    return [
        as_double(message.field("guests")).alias("guests"),
        as_double(message.field("guests") > 0).alias("has_guests"),
        # signed log: an RSVP an hour before the event and one a month before differ most at the short end
        F.coalesce(F.signum(lead_hours) * F.log1p(F.abs(lead_hours)), F.lit(0.0)).alias("lead_log_hours"),
        as_double(message.field("time").isNull()).alias("lead_unknown"),
        as_double(F.coalesce(lead_hours < 0, F.lit(False))).alias("lead_past"),
        F.sin(hour_angle(local_hour)).alias("local_hour_sin"),
        F.cos(hour_angle(local_hour)).alias("local_hour_cos"),
        as_double(weekday >= 5).alias("local_weekend"),
        as_double(online).alias("online"),
        as_double(F.size(message.field("group_topics"))).alias("topic_count"),
        as_double(message.field("photo").isNotNull()).alias("member_photo"),
        as_double(services).alias("member_services"),
        *(as_double(message.field("other_services")[s].isNotNull()).alias(f"member_{s}") for s in SERVICES),
        # when the event is, in the group's local time (unknown time: neither weekend nor an hour)
        as_double(F.coalesce(event_weekday >= 5, F.lit(False))).alias("event_weekend"),
        F.coalesce(F.sin(hour_angle(event_hour)), F.lit(0.0)).alias("event_hour_sin"),
        F.coalesce(F.cos(hour_angle(event_hour)), F.lit(0.0)).alias("event_hour_cos"),
        # how far the venue is from the group's centre (online and venue-less events: unknown)
        F.coalesce(F.log1p(km), F.lit(0.0)).alias("venue_log_km"),
        as_double(km.isNull()).alias("venue_km_unknown"),
        message.field("group_country").alias("country"),
        F.transform(message.field("group_topics"), lambda t: t["urlkey"]).alias("topics"),
        name_words().alias("name_words"),
    ]


def local_clock(epoch_ms: Column) -> tuple[Column, Column]:
    """(hour 0-23, weekday with Monday = 0) of a moment in the group's local time (longitude / 15 hours)."""
    local_ms = epoch_ms + F.round(message.field("group_lon") / 15).cast("long") * HOUR_MS
    return F.floor((local_ms % DAY_MS) / HOUR_MS), (F.floor(local_ms / DAY_MS) + 3) % 7  # 1970-01-01: Thursday


def hour_angle(hour: Column) -> Column:
    """An hour of the day on the circle, so that 23 h and 0 h are neighbours."""
    return hour * (2 * math.pi / 24)


def standing_version() -> Column:
    """An RSVP's version (silver's newest-wins order) with its answer: the greatest of its rows is the answer
    that stands."""
    return F.struct(*(F.col(c) for c in VERSION_COLUMNS), F.col("yes"))


def venue_km() -> Column:
    """Great-circle distance from the group's centre to the venue, km; null without a venue or with one at (0, 0)
    (Meetup's placeholder for online events)."""
    venue = message.field("venue")
    lat1, lon1 = F.radians(message.field("group_lat")), F.radians(message.field("group_lon"))
    lat2, lon2 = F.radians(message.field("lat")), F.radians(message.field("lon"))
    a = F.sin((lat2 - lat1) / 2) ** 2 + F.cos(lat1) * F.cos(lat2) * F.sin((lon2 - lon1) / 2) ** 2
    km = 2 * 6371.0 * F.asin(F.sqrt(F.least(a, F.lit(1.0))))
    placeholder = (message.field("lat") == 0) & (message.field("lon") == 0)
    return F.when(venue.isNotNull() & ~F.coalesce(placeholder, F.lit(True)), km)


def name_words() -> Column:
    """The distinct lower-case words of the event's and the group's names ("happy hour", "workshop", "run"),
    for a bag of words the fitted pipeline keeps the common ones of (ml/model.py)."""
    text = F.lower(F.concat_ws(" ", message.field("event_name"), message.field("group_name")))
    words = F.split(text, r"[^\p{L}\p{N}]+")
    return F.array_distinct(F.filter(words, lambda w: F.length(w) >= MIN_WORD_LENGTH))


def history_features(counted_df: DataFrame) -> DataFrame:
    """Counts -> the model's history features: log of answers seen, smoothed yes rate, any no seen."""
    for entity in ENTITIES:
        yes, no = F.col(f"{entity}_yes"), F.col(f"{entity}_no")
        counted_df = (
            counted_df.withColumn(f"{entity}_log_answers", F.log1p((yes + no).cast("double")))
            .withColumn(f"{entity}_yes_rate", (yes + PRIOR_RATE * PRIOR_WEIGHT) / (yes + no + PRIOR_WEIGHT))
            .withColumn(f"{entity}_no_seen", (no > 0).cast("double"))
        )
    return counted_df


def rsvp_features(messages_df: DataFrame, prior_state_df: DataFrame | None = None) -> DataFrame:
    """Valid messages -> one row per RSVP first seen here: context columns, history counts and features.

    With prior_state_df, RSVPs already in it are not new and get no row.
    """
    counted = history_counts(history_rows(messages_df), prior_state_df)
    firsts = first_messages(messages_df)
    if prior_state_df is not None:
        firsts = firsts.join(
            prior_state_df.select("rsvp_id"), message.field("rsvp_id") == F.col("rsvp_id"), "left_anti"
        )
    context: list[Column] = [
        *message.flat("rsvp_id", "group_name", "event_name", "mtime"),
        message.field("response").alias("first_response"),
        *(F.col(name) for name in ARRIVAL),
    ]
    rows = firsts.select(*context, *attribute_columns())
    counts = counted.select("rsvp_id", *ARRIVAL, "member_id", "group_id", "event_id", *HISTORY_COUNTS)
    return history_features(rows.join(counts, ["rsvp_id", *ARRIVAL]))


def newest_states(messages_df: DataFrame) -> DataFrame:
    """The state (schema STATE) of each RSVP after these messages: its newest version among them."""
    newest_first = Window.partitionBy("rsvp_id").orderBy(*(F.col(c).desc() for c in VERSION_COLUMNS))
    rows = history_rows(messages_df)
    return rows.withColumn("_n", F.row_number().over(newest_first)).filter(F.col("_n") == 1).select(*STATE.fieldNames())
