"""Valid parsed messages -> rows of the 3NF tables, and the newest-wins reduction per key.

Every output row carries the version of the message it came from: `version_mtime` (epoch ms),
`version_partition` and `version_offset`. The state of a row is the one with the greatest version;
for an RSVP, ties in mtime go to the later Kafka offset (one key is always in one partition).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse import message
from lakehouse.schemas import RSVP_COLUMNS, SERVICES, TABLE_KEYS, VERSION_COLUMNS


def to_rsvps(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        *message.flat("rsvp_id", "event_id", "member_id"),
        F.timestamp_millis(message.field("mtime")).alias("mtime"),
        *message.flat("response", "guests", "visibility"),
        *message.version(),
    )


def to_events(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        *message.flat("event_id", "group_id", "venue_id", "event_name", "event_url"),
        F.timestamp_millis(message.field("time")).alias("time"),
        *message.version(),
    )


def to_venues(valid_df: DataFrame) -> DataFrame:
    return valid_df.filter(message.field("venue_id").isNotNull()).select(
        *message.flat(*RSVP_COLUMNS["venues"]),
        *message.version(),
    )


def to_members(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        *message.flat(*RSVP_COLUMNS["members"]),
        *message.version(),
    )


def explode_member_services(valid_df: DataFrame) -> DataFrame:
    """One row per (member, service) the message lists under member.other_services."""
    services = F.array(
        *(
            F.struct(
                F.lit(service).alias("service"),
                message.field("other_services")[service]["identifier"].alias("identifier"),
            )
            for service in SERVICES
        )
    )
    return (
        valid_df.select(*message.flat("member_id"), F.explode(services).alias("s"), *message.version())
        .filter(F.col("s.identifier").isNotNull())
        .select(
            "member_id",
            F.col("s.service").alias("service"),
            F.col("s.identifier").alias("identifier"),
            *VERSION_COLUMNS,
        )
    )


def to_groups(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(*message.flat(*RSVP_COLUMNS["groups"]), *message.version())


def explode_group_topics(valid_df: DataFrame) -> DataFrame:
    """One row per (group, topic) of the message, with the topic's name."""
    return valid_df.select(
        *message.flat("group_id"),
        F.explode(message.field("group_topics")).alias("t"),
        *message.version(),
    ).select("group_id", F.col("t.urlkey").alias("urlkey"), F.col("t.topic_name").alias("topic_name"), *VERSION_COLUMNS)


def to_topics(group_topics_df: DataFrame) -> DataFrame:
    return group_topics_df.select("urlkey", "topic_name", *VERSION_COLUMNS)


def to_group_topics(group_topics_df: DataFrame) -> DataFrame:
    return group_topics_df.select("group_id", "urlkey", *VERSION_COLUMNS)


def to_event_comments(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        F.col("msg.id").alias("comment_id"),
        F.col("msg.event.event_id").alias("event_id"),
        F.col("msg.member.member_id").alias("member_id"),
        F.col("msg.group.id").alias("group_id"),
        F.col("msg.comment").alias("comment"),
        F.col("msg.in_reply_to").alias("in_reply_to"),
        F.col("msg.status").alias("status"),
        F.timestamp_millis(F.col("msg.mtime")).alias("mtime"),
        *message.version(),
    )


def to_photos(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        F.col("msg.photo_id").alias("photo_id"),
        F.col("msg.photo_album.event.id").alias("event_id"),
        F.col("msg.member.member_id").alias("member_id"),
        F.col("msg.photo_album.group.id").alias("group_id"),
        F.col("msg.photo_album.photo_album_id").alias("photo_album_id"),
        F.col("msg.caption").alias("caption"),
        F.col("msg.photo_link").alias("photo_link"),
        F.timestamp_millis(F.col("msg.ctime")).alias("ctime"),
        F.timestamp_millis(F.col("msg.mtime")).alias("mtime"),
        *message.version(),
    )


def newest_per_key(rows_df: DataFrame, keys: Sequence[str]) -> DataFrame:
    """Keep, for each key, the row of the greatest (version_mtime, version_partition, version_offset)."""
    newest_first = Window.partitionBy(*keys).orderBy(*(F.col(c).desc() for c in VERSION_COLUMNS))
    return rows_df.withColumn("_rank", F.row_number().over(newest_first)).filter(F.col("_rank") == 1).drop("_rank")


def rsvp_tables(valid_df: DataFrame, *, newest: bool = True) -> dict[str, DataFrame]:
    """Every 3NF table's rows from one batch of valid RSVP messages, reduced to the newest per key (newest=False:
    every message's rows, for a writer that keeps the newest itself, as the PostgreSQL mirror does: one Spark
    stage instead of a shuffle per table)."""
    group_topics_df = explode_group_topics(valid_df)
    rows = {
        "venues": to_venues(valid_df),
        "groups": to_groups(valid_df),
        "topics": to_topics(group_topics_df),
        "members": to_members(valid_df),
        "events": to_events(valid_df),
        "rsvps": to_rsvps(valid_df),
        "member_services": explode_member_services(valid_df),
        "group_topics": to_group_topics(group_topics_df),
    }
    assert all(df.columns == [*RSVP_COLUMNS[name], *VERSION_COLUMNS] for name, df in rows.items()), (
        "schemas.RSVP_COLUMNS"
    )
    if not newest:
        return rows
    return {name: newest_per_key(df, TABLE_KEYS[name]) for name, df in rows.items()}
