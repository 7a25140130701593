"""Kafka -> bronze -> silver -> PostgreSQL on the real services, checked against tests/expected.py."""

from __future__ import annotations

import json
import random

import pytest
from pyspark.sql import functions as F

from lakehouse import catalogue
from lakehouse.layout import Layout
from pipelines import heartbeat
from pipelines.chain import run_chain
from pipelines.silver.job import SilverBatch
from pipelines.stages import ChainOptions
from tests.expected import COLUMNS, expected_tables
from tests.helpers import capture_frames, consume_with_coordinates, produce
from tests.integration.lakehouse import isolated, postgres_rows, run_available_now, silver_rows
from tests.integration.test_gold import assert_gold_exact

pytestmark = pytest.mark.integration

REAL = capture_frames()


def test_bronze_holds_every_message_once_with_its_kafka_coordinates(spark, real_run):
    _, layout, records = real_run
    bronze = spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS))
    rows = [(r.partition, r.offset, bytes(r.value)) for r in bronze.select("partition", "offset", "value").collect()]
    assert sorted(rows) == sorted(records)
    assert len(records) == 4088


def test_real_captures_quarantine_nothing_and_every_silver_table_is_exact(spark, real_run):
    _, layout, records = real_run
    expected = expected_tables(records)
    stats = (
        spark.read.format("delta")
        .load(layout.table(catalogue.SILVER_BATCH_STATS))
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
    bronze_df = spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS))
    silver_batch = SilverBatch(spark, settings, layout, "rsvps", mirror_to_postgres=True)
    stats_path = layout.table(catalogue.SILVER_BATCH_STATS)
    stats_before = spark.read.format("delta").load(stats_path).count()

    silver_batch(bronze_df, 0)  # the very batch again, as after a crash before the checkpoint commit

    assert spark.read.format("delta").load(stats_path).count() == stats_before, "stats appended once per batch id"
    for table in COLUMNS:
        assert silver_rows(spark, layout, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table


def test_shuffled_input_sent_twice_in_many_small_batches_gives_the_same_silver_and_gold(stack, spark, unique):
    settings = isolated(stack, f"{unique}s")
    shuffled = list(REAL)
    random.Random(8).shuffle(shuffled)
    twice = shuffled + REAL  # every message twice: shuffled first, then again in capture order
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), twice)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(twice))
    layout = run_available_now(spark, settings, max_offsets_per_trigger=2800, max_files_per_trigger=3)

    batches = spark.read.format("delta").load(layout.table(catalogue.SILVER_BATCH_STATS)).count()
    assert batches >= 3
    expected = expected_tables(records)
    for table in COLUMNS:
        assert silver_rows(spark, layout, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table
    assert_gold_exact(spark, layout, records)


def test_comments_and_photos_reach_their_silver_tables(stack, spark, unique):
    from ingest import generator

    settings = isolated(stack, unique)
    comments = list(generator.event_comments(seed=4, count=400))
    photos = list(generator.photos(seed=4, count=300))
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("event_comments"), comments, id_field="id")
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("photos"), photos, id_field="photo_id")
    layout = Layout.from_settings(settings)
    run_chain(
        spark,
        settings,
        layout=layout,
        options=ChainOptions(streams=("event_comments", "photos"), available_now=True, progress_every=3600),
    )

    def table(name, *columns):
        return {
            tuple(r)
            for r in spark.read.format("delta")
            .load(layout.table(catalogue.table("silver", name)))
            .select(*columns)
            .collect()
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


def test_the_hot_path_makes_gold_and_postgres_exact_while_silver_is_still_behind(stack, spark, unique):
    """Gold and the PostgreSQL mirror come from the same Kafka records as silver, without waiting for it:
    with silver not run at all, both already equal the independent computation."""
    from delta.tables import DeltaTable

    settings = isolated(stack, unique)
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), REAL[:1500])
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), 1500)
    layout = run_available_now(spark, settings, stages=("bronze", "gold"), max_offsets_per_trigger=400)

    assert not DeltaTable.isDeltaTable(spark, layout.table(catalogue.SILVER_RSVPS)), "silver has not run"
    expected = expected_tables(records)
    for table in COLUMNS:
        assert postgres_rows(settings, table) == expected[table], table
    assert_gold_exact(spark, layout, records)
    freshness = spark.read.format("delta").load(layout.table(catalogue.GOLD_FRESHNESS))
    per_stage = {r.stage: r.rows for r in freshness.groupBy("stage").agg(F.sum("rows").alias("rows")).collect()}
    assert per_stage == {"gold": 1500, "postgres": 1500}, "every row's visibility in gold and PostgreSQL is recorded"
    stopped = heartbeat.last(settings, layout.generation)
    assert stopped is not None and stopped[1] == [], "the chain's last heartbeat says nothing runs any more"


def test_batch_stats_shared_by_queries_know_each_querys_batches_apart(stack, spark, unique):
    """Every stream's silver query appends its batch stats to one table, known by (query, batch id)
    (delta_io.BatchAppender with rows_of): another query's later batch does not make this query's batch look
    written, and a restarted query's first batch, already there, is not appended twice."""
    from lakehouse.delta_io import BatchAppender

    path = Layout.from_settings(isolated(stack, unique)).table(catalogue.SILVER_BATCH_STATS)
    spark.createDataFrame([], "query string, batch_id long").write.format("delta").save(path)

    def stats(query: str, batch: int):
        return spark.createDataFrame([(query, batch)], "query string, batch_id long")

    def appender(query: str) -> BatchAppender:
        return BatchAppender(spark, rows_of=F.col("query") == query)

    assert appender("silver-photos").append(stats("silver-photos", 7), path, 7)
    rsvps = appender("silver-rsvps")
    assert rsvps.append(stats("silver-rsvps", 5), path, 5) and rsvps.lookups == 1, "photos' batch 7 is not rsvps'"
    assert not appender("silver-rsvps").append(stats("silver-rsvps", 5), path, 5), "a restart's batch 5, already in"
    rows = sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())
    assert rows == [("silver-photos", 7), ("silver-rsvps", 5)]
