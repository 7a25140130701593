"""Parse bronze values with explicit schemas and give every invalid row one reason code.

Reason codes (the first rule a row breaks wins, in this order):

| reason            | when                                                                  |
|-------------------|-----------------------------------------------------------------------|
| `oversized`       | the value is larger than MAX_VALUE_BYTES                              |
| `invalid_utf8`    | the bytes are not UTF-8                                               |
| `malformed_json`  | not a JSON object (truncated, HTML, an array...)                      |
| `missing_field`   | a required field is absent (detail: its path)                         |
| `wrong_type`      | a field is present but not of its type (detail: its path)             |
| `bad_enum`        | response not yes/no, visibility not public (detail: path=value)       |
| `out_of_range`    | negative guests, times before 2002 or after 2100, lat/lon off the globe |
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

MAX_VALUE_BYTES = 1_000_000
MIN_EPOCH_MS = 1_009_843_200_000  # 2002-01-01, Meetup's founding year
MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01
MAX_GUESTS = 1000

Rule = tuple[Column, str, Column]  # (broken?, reason, detail)


def with_parsed(bronze_df: DataFrame, schema: T.StructType) -> DataFrame:
    """Adds `json` (the value as text), `msg` (parsed with `schema`, once per row) and `keys` (its top-level
    keys).

    `msg` is parsed once per row, and it takes a guard to keep it so: the rules read `msg` about 85 times,
    and Spark's optimizer copies a column's expression into every filter that it pushes below the column's
    projection (`filter_valid`), then prunes each copy of `from_json` to the one field it reads, so every
    rule parsed the whole message again: 85 parses a row, 810 us a message for parse and checks (JFR showed
    a third of the running chain's JVM in JacksonParser). A projection holding a nondeterministic expression
    is one the optimizer neither pushes filters through nor copies, and `spark_partition_id()` is the
    cheapest one: 124 us a message (tests/unit/test_silver_transforms.py checks the plan parses once).
    """
    parse_once = F.spark_partition_id() >= 0  # always true; nondeterministic, so `msg` stays one column
    return (
        bronze_df.withColumn("json", F.col("value").cast("string"))
        .withColumn("msg", F.when(parse_once, F.from_json(F.col("json"), schema)))
        .withColumn("keys", F.json_object_keys(F.col("json")))
    )


def _present(path: str) -> Column:
    return F.get_json_object(F.col("json"), f"$.{path}").isNotNull()


def required(*paths: str) -> list[Rule]:
    rules: list[Rule] = []
    for path in paths:
        parsed = F.col(f"msg.{path}")
        rules.append((parsed.isNull() & ~_present(path), "missing_field", F.lit(path)))
        rules.append((parsed.isNull() & _present(path), "wrong_type", F.lit(path)))
    return rules


def optional(*paths: str) -> list[Rule]:
    """Fields that may be absent but, when present, must have their type."""
    return [(F.col(f"msg.{path}").isNull() & _present(path), "wrong_type", F.lit(path)) for path in paths]


def enum(path: str, allowed: Sequence[str]) -> Rule:
    value = F.col(f"msg.{path}")
    return (~value.isin(*allowed), "bad_enum", F.concat(F.lit(f"{path}="), value))


def in_range(path: str, low: float, high: float) -> Rule:
    value = F.col(f"msg.{path}")
    return (
        value.isNotNull() & ((value < low) | (value > high)),
        "out_of_range",
        F.concat(F.lit(f"{path}="), value.cast("string")),
    )


def base_rules() -> list[Rule]:
    return [
        (
            F.length(F.col("value")) > MAX_VALUE_BYTES,
            "oversized",
            F.concat(F.lit("bytes="), F.length("value").cast("string")),
        ),
        (~F.expr("is_valid_utf8(json)"), "invalid_utf8", F.lit(None).cast("string")),
        (F.col("keys").isNull(), "malformed_json", F.substring(F.col("json"), 1, 200)),
    ]


def rsvp_rules() -> list[Rule]:
    times = [in_range(path, MIN_EPOCH_MS, MAX_EPOCH_MS) for path in ("mtime", "event.time")]
    coordinates = [
        in_range("venue.lat", -90, 90),
        in_range("venue.lon", -180, 180),
        in_range("group.group_lat", -90, 90),
        in_range("group.group_lon", -180, 180),
    ]
    topics_broken = F.exists(F.col("msg.group.group_topics"), lambda t: t.urlkey.isNull() | t.topic_name.isNull())
    return [
        *base_rules(),
        *required(
            "rsvp_id",
            "mtime",
            "response",
            "guests",
            "visibility",
            "member.member_id",
            "member.member_name",
            "event.event_id",
            "event.event_name",
            "event.event_url",
            "group.group_id",
            "group.group_name",
            "group.group_urlname",
            "group.group_city",
            "group.group_country",
            "group.group_lat",
            "group.group_lon",
            "group.group_topics",
        ),  # fmt: skip
        (topics_broken, "wrong_type", F.lit("group.group_topics[]")),
        *optional("member.photo", "event.time", "group.group_state"),
        *required_if_present("venue", "venue_id", "venue_name", "lat", "lon"),
        enum("response", ("yes", "no")),
        enum("visibility", ("public",)),
        in_range("rsvp_id", 1, 2**62),
        in_range("guests", 0, MAX_GUESTS),
        *times,
        *coordinates,
    ]


def required_if_present(parent: str, *children: str) -> list[Rule]:
    """Children that an optional object must have whenever it is there at all."""
    rules: list[Rule] = []
    for child in children:
        path, parsed = f"{parent}.{child}", F.col(f"msg.{parent}.{child}")
        # `parsed.isNull()` first: the JSON path lookups then only run for the few rows that need them.
        rules.append((parsed.isNull() & _present(parent) & ~_present(path), "missing_field", F.lit(path)))
        rules.append((parsed.isNull() & _present(parent) & _present(path), "wrong_type", F.lit(path)))
    return rules


def comment_rules() -> list[Rule]:
    return [
        *base_rules(),
        *required("id", "mtime", "member.member_id", "event.event_id", "group.id"),
        *optional("comment", "in_reply_to", "status"),
        in_range("mtime", MIN_EPOCH_MS, MAX_EPOCH_MS),
    ]


def photo_rules() -> list[Rule]:
    return [
        *base_rules(),
        *required("photo_id", "mtime", "member.member_id", "photo_album.group.id"),
        *optional("ctime", "caption", "photo_album.event.id"),
        in_range("mtime", MIN_EPOCH_MS, MAX_EPOCH_MS),
    ]


class Checks:
    """A list of rules compiled once into one expression: which rule, if any, a row breaks first.

    A stage builds its Checks once and applies them to every micro-batch. Building the rules' Columns
    costs hundreds of calls into the JVM, and a nested CASE per rule made a plan whose analysis and task
    serialization cost the PostgreSQL mirror more than its rows did (docs/benchmarks-history.md); one flat CASE
    whose branches carry (reason, detail) together checks each rule once per row.
    """

    def __init__(self, rules: Sequence[Rule]):
        first_broken: Column | None = None
        for broken, code, why in rules:
            found = F.struct(F.lit(code).alias("reason"), why.cast("string").alias("detail"))
            first_broken = F.when(broken, found) if first_broken is None else first_broken.when(broken, found)
        if first_broken is None:
            raise ValueError("Checks needs at least one rule")
        self._why = first_broken.alias("_why")
        self._reason = [F.col("_why.reason").alias("reason"), F.col("_why.detail").alias("detail")]

    def apply(self, parsed_df: DataFrame) -> DataFrame:
        """Adds `reason` and `detail`: null for a valid row, else those of the first rule it breaks."""
        return parsed_df.select("*", self._why).select("*", *self._reason).drop("_why")


def with_reason(parsed_df: DataFrame, rules: Sequence[Rule]) -> DataFrame:
    """Adds `reason` and `detail`: null for a valid row, else those of the first rule it breaks (a stage
    that checks every micro-batch builds Checks once instead)."""
    return Checks(rules).apply(parsed_df)


def with_unknown_field_count(parsed_df: DataFrame, known: Sequence[str]) -> DataFrame:
    """Adds `unknown_fields`: how many top-level keys the schema does not know (kept in bronze)."""
    known_keys = F.array(*(F.lit(key) for key in known))
    return parsed_df.withColumn(
        "unknown_fields", F.coalesce(F.size(F.array_except(F.col("keys"), known_keys)), F.lit(0))
    )


def filter_valid(checked_df: DataFrame) -> DataFrame:
    return checked_df.filter(F.col("reason").isNull())


def to_quarantine(checked_df: DataFrame) -> DataFrame:
    """Invalid rows as quarantine rows: the raw value, its Kafka coordinates, reason and detail."""
    return checked_df.filter(F.col("reason").isNotNull()).select(
        "value", "key", "topic", "partition", "offset", "kafka_timestamp", "reason", "detail",
        F.current_timestamp().alias("quarantined_at"),
    )  # fmt: skip
