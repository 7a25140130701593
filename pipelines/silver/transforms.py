"""Valid parsed messages -> rows of the 3NF tables, and the newest-wins reduction per key.

Every output row carries the version of the message it came from: `version_mtime` (epoch ms),
`version_partition` and `version_offset`. The state of a row is the one with the greatest version;
for an RSVP, ties in mtime go to the later Kafka offset (one key is always in one partition).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.schemas import SERVICES, TABLE_KEYS, VERSION_COLUMNS


def _version() -> list[Column]:
    return [
        F.col("msg.mtime").alias("version_mtime"),
        F.col("partition").alias("version_partition"),
        F.col("offset").alias("version_offset"),
    ]


def to_rsvps(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        F.col("msg.rsvp_id").alias("rsvp_id"),
        F.col("msg.event.event_id").alias("event_id"),
        F.col("msg.member.member_id").alias("member_id"),
        F.timestamp_millis(F.col("msg.mtime")).alias("mtime"),
        F.col("msg.response").alias("response"),
        F.col("msg.guests").alias("guests"),
        F.col("msg.visibility").alias("visibility"),
        *_version(),
    )


def to_events(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        F.col("msg.event.event_id").alias("event_id"),
        F.col("msg.group.group_id").alias("group_id"),
        F.col("msg.venue.venue_id").alias("venue_id"),
        F.col("msg.event.event_name").alias("event_name"),
        F.col("msg.event.event_url").alias("event_url"),
        F.timestamp_millis(F.col("msg.event.time")).alias("time"),
        *_version(),
    )


def to_venues(valid_df: DataFrame) -> DataFrame:
    return valid_df.filter(F.col("msg.venue.venue_id").isNotNull()).select(
        F.col("msg.venue.venue_id").alias("venue_id"),
        F.col("msg.venue.venue_name").alias("venue_name"),
        F.col("msg.venue.lat").alias("lat"),
        F.col("msg.venue.lon").alias("lon"),
        *_version(),
    )


def to_members(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        F.col("msg.member.member_id").alias("member_id"),
        F.col("msg.member.member_name").alias("member_name"),
        F.col("msg.member.photo").alias("photo"),
        *_version(),
    )


def explode_member_services(valid_df: DataFrame) -> DataFrame:
    """One row per (member, service) the message lists under member.other_services."""
    services = F.array(
        *(
            F.struct(
                F.lit(service).alias("service"),
                F.col(f"msg.member.other_services.{service}.identifier").alias("identifier"),
            )
            for service in SERVICES
        )
    )
    return (
        valid_df.select(F.col("msg.member.member_id").alias("member_id"), F.explode(services).alias("s"), *_version())
        .filter(F.col("s.identifier").isNotNull())
        .select(
            "member_id",
            F.col("s.service").alias("service"),
            F.col("s.identifier").alias("identifier"),
            *VERSION_COLUMNS,
        )
    )


def to_groups(valid_df: DataFrame) -> DataFrame:
    return valid_df.select(
        F.col("msg.group.group_id").alias("group_id"),
        F.col("msg.group.group_name").alias("group_name"),
        F.col("msg.group.group_urlname").alias("group_urlname"),
        F.col("msg.group.group_city").alias("group_city"),
        F.col("msg.group.group_state").alias("group_state"),
        F.col("msg.group.group_country").alias("group_country"),
        F.col("msg.group.group_lat").alias("group_lat"),
        F.col("msg.group.group_lon").alias("group_lon"),
        *_version(),
    )


def explode_group_topics(valid_df: DataFrame) -> DataFrame:
    """One row per (group, topic) of the message, with the topic's name."""
    return valid_df.select(
        F.col("msg.group.group_id").alias("group_id"),
        F.explode(F.col("msg.group.group_topics")).alias("t"),
        *_version(),
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
        *_version(),
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
        *_version(),
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
    if not newest:
        return rows
    return {name: newest_per_key(df, TABLE_KEYS[name]) for name, df in rows.items()}
