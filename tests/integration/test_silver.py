"""Kafka -> bronze -> silver -> PostgreSQL on the real services, checked against tests/expected.py."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import psycopg2
import pytest
from psycopg2 import sql
from pyspark.sql import functions as F

from common.settings import Settings
from pipelines.chain import run_chain
from pipelines.layout import Layout
from pipelines.silver.job import SilverBatch
from stack import kafka as kafka_service
from tests.conftest import new_name
from tests.expected import COLUMNS, expected_tables
from tests.helpers import capture_frames, consume_with_coordinates, produce

pytestmark = pytest.mark.integration

REAL = capture_frames()
MS_COLUMNS = {"mtime_ms": "mtime", "time_ms": "time"}


def isolated(stack: Settings, name: str) -> Settings:
    """Settings whose topics, lakehouse prefix and PostgreSQL schema belong to this test alone."""
    settings = replace(
        stack,
        kafka=replace(stack.kafka, topic_prefix=name),
        postgres=replace(stack.postgres, schema=name),
        lakehouse_root=stack.path(name),
    )
    kafka_service.ensure_topics(settings)
    return settings


def silver_rows(spark, layout: Layout, table: str) -> set[tuple]:
    columns = [F.unix_millis(MS_COLUMNS[c]).alias(c) if c in MS_COLUMNS else F.col(c) for c in COLUMNS[table]]
    return {
        tuple(row) for row in spark.read.format("delta").load(layout.table("silver", table)).select(*columns).collect()
    }


def postgres_rows(settings: Settings, table: str) -> set[tuple]:
    columns = [
        sql.SQL("(extract(epoch FROM {}) * 1000)::bigint").format(sql.Identifier(MS_COLUMNS[c]))
        if c in MS_COLUMNS
        else sql.Identifier(c)
        for c in COLUMNS[table]
    ]
    conn = psycopg2.connect(settings.postgres.dsn(), password=settings.postgres.password_for())
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(columns), sql.Identifier(settings.postgres.schema, table)
                )
            )
            return set(cur.fetchall())
    finally:
        conn.close()


def run_available_now(spark, settings: Settings, **options) -> Layout:
    layout = Layout.from_settings(settings)
    run_chain(spark, settings, layout=layout, streams=("rsvps",), available_now=True, progress_every=3600, **options)
    return layout


@pytest.fixture(scope="module")
def real_run(stack, spark):
    """The 4,088 real messages through the whole chain once."""
    settings = isolated(stack, new_name())
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), REAL)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(REAL))
    layout = run_available_now(spark, settings)
    return settings, layout, records


def test_bronze_holds_every_message_once_with_its_kafka_coordinates(spark, real_run):
    _, layout, records = real_run
    bronze = spark.read.format("delta").load(layout.table("bronze", "rsvps"))
    rows = [(r.partition, r.offset, bytes(r.value)) for r in bronze.select("partition", "offset", "value").collect()]
    assert sorted(rows) == sorted(records)
    assert len(records) == 4088


def test_real_captures_quarantine_nothing_and_every_silver_table_is_exact(spark, real_run):
    _, layout, records = real_run
    expected = expected_tables(records)
    stats = (
        spark.read.format("delta")
        .load(layout.table("silver", "batch_stats"))
        .agg(F.sum("rows_in"), F.sum("rows_valid"), F.sum("rows_quarantined"))
        .first()
    )
    assert tuple(stats) == (4088, 4088, 0)
    for table in COLUMNS:
        assert silver_rows(spark, layout, table) == expected[table], table
    assert len(expected["rsvps"]) == 3260  # 4,088 messages, 828 of them repeats


def test_postgres_mirror_equals_the_expected_tables(real_run):
    settings, _, records = real_run
    expected = expected_tables(records)
    for table in COLUMNS:
        assert postgres_rows(settings, table) == expected[table], table


def test_a_replayed_batch_changes_no_table(spark, real_run):
    settings, layout, records = real_run
    expected = expected_tables(records)
    bronze_df = spark.read.format("delta").load(layout.table("bronze", "rsvps"))
    silver_batch = SilverBatch(spark, settings, layout, "rsvps", mirror_to_postgres=True)
    stats_path = layout.table("silver", "batch_stats")
    stats_before = spark.read.format("delta").load(stats_path).count()

    silver_batch(bronze_df, 0)  # the very batch again, as after a crash before the checkpoint commit

    assert spark.read.format("delta").load(stats_path).count() == stats_before, "stats appended once per batch id"
    for table in COLUMNS:
        assert silver_rows(spark, layout, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table


def test_shuffled_input_sent_twice_in_many_small_batches_gives_the_same_tables(stack, spark, unique):
    settings = isolated(stack, f"{unique}s")
    shuffled = list(REAL)
    random.Random(8).shuffle(shuffled)
    twice = shuffled + REAL  # every message twice: shuffled first, then again in capture order
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), twice)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(twice))
    layout = run_available_now(spark, settings, max_offsets_per_trigger=2800, max_files_per_trigger=4)

    batches = spark.read.format("delta").load(layout.table("silver", "batch_stats")).count()
    assert batches >= 3
    expected = expected_tables(records)
    for table in COLUMNS:
        assert silver_rows(spark, layout, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table


def test_comments_and_photos_reach_their_silver_tables(stack, spark, unique):
    from ingest import generator

    settings = isolated(stack, unique)
    comments = list(generator.event_comments(seed=4, count=400))
    photos = list(generator.photos(seed=4, count=300))
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("event_comments"), comments, id_field="id")
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("photos"), photos, id_field="photo_id")
    layout = Layout.from_settings(settings)
    run_chain(
        spark, settings, layout=layout, streams=("event_comments", "photos"), available_now=True, progress_every=3600
    )

    def table(name, *columns):
        return {
            tuple(r) for r in spark.read.format("delta").load(layout.table("silver", name)).select(*columns).collect()
        }

    parsed = [json.loads(c) for c in comments]
    assert table("event_comments", "comment_id", "event_id", "member_id", "group_id", "comment") == {
        (c["id"], c["event"]["event_id"], c["member"]["member_id"], c["group"]["id"], c["comment"]) for c in parsed
    }
    parsed = [json.loads(p) for p in photos]
    assert table("photos", "photo_id", "event_id", "member_id", "group_id") == {
        (
            p["photo_id"],
            p["photo_album"].get("event", {}).get("id"),
            p["member"]["member_id"],
            p["photo_album"]["group"]["id"],
        )
        for p in parsed
    }
