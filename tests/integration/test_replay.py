"""Reprocessing by replaying Kafka offsets into a new generation, on the real services."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition

from common import health
from lakehouse import catalogue, generations
from lakehouse.layout import Layout
from pipelines.gold.transforms import AGGREGATES
from pipelines.replay import RetentionGap, replay, starting_offsets
from tests.expected import COLUMNS, expected_tables
from tests.helpers import capture_frames, produce
from tests.integration.lakehouse import gold_table, isolated, postgres_rows, silver_rows

pytestmark = pytest.mark.integration


def gold_rows(spark, layout: Layout, table: str) -> set[tuple]:
    """A gold table's rows without the columns that record when or in which batch they were written."""
    df = gold_table(spark, layout, table)
    return {tuple(r) for r in df.drop("batch_id", "recorded_at").collect()}


def test_a_replay_from_offset_zero_rebuilds_equal_tables_and_switches_readers_atomically(spark, real_run):
    settings, first, records = real_run
    assert generations.current(settings) == first.generation == "g1"

    second = replay(spark, settings, "g2", streams=("rsvps",), progress_every=3600)

    assert generations.current(settings) == "g2"
    assert set(generations.existing(settings)) == {"g1", "g2"}, "the old generation stays until dropped"
    expected = expected_tables(records)
    for table in COLUMNS:
        assert silver_rows(spark, second, table) == silver_rows(spark, first, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table
    for table in [a.name for a in AGGREGATES] + ["late_rsvps"]:
        assert gold_rows(spark, second, table) == gold_rows(spark, first, table), table

    with pytest.raises(generations.GenerationError, match="already exists"):
        replay(spark, settings, "g2", streams=("rsvps",))
    with pytest.raises(generations.GenerationError, match="current generation"):
        generations.drop(settings, "g2")
    assert generations.switch(settings, "g1") == "g2"
    assert generations.drop(settings, "g2") > 0
    assert generations.existing(settings) == ["g1"]


def test_an_empty_directory_left_in_the_object_store_is_no_generation(stack, unique):
    """S3Proxy's filesystem backend once kept an empty directory of a dropped generation, listed as a prefix."""
    settings = isolated(stack, unique)
    bucket, _, prefix = settings.lakehouse_root.removeprefix("s3a://").partition("/")
    ghost = stack.stack_dir / "s3" / "data" / bucket / prefix / "g7" / "_checkpoints" / "silver-rsvps" / "commits"
    ghost.mkdir(parents=True)
    assert ghost.is_dir()
    assert "g7" not in generations.existing(settings)


def produce_then_expire(settings, *, count: int, partition: int, expire_before: int) -> None:
    """`count` frames into one partition, then what retention does when a segment expires: the log
    start offset moves up to `expire_before`."""
    topic = settings.kafka.topic("rsvps")
    produce(settings.kafka.bootstrap_servers, topic, capture_frames()[:count], partition=partition)
    admin = health.kafka_admin(settings)
    for future in admin.delete_records([TopicPartition(topic, partition, expire_before)]).values():
        future.result(timeout=30)


def test_a_replay_past_retention_is_refused_with_what_is_still_there(stack, unique):
    settings = isolated(stack, unique)
    topic = settings.kafka.topic("rsvps")
    produce_then_expire(settings, count=60, partition=1, expire_before=25)

    with pytest.raises(RetentionGap) as refused:
        starting_offsets(settings, topic)
    message = str(refused.value)
    assert "partition 1: asked for offset 0" in message
    assert "still available: offsets 25..59" in message
    with pytest.raises(RetentionGap, match="partition 1: asked for records from 0 ms on"):
        starting_offsets(settings, topic, timestamp_ms=0)

    assert starting_offsets(settings, topic, offsets={1: 25}) == {0: 0, 1: 25, 2: 0}
    assert starting_offsets(settings, topic, offsets={1: 40}) == {0: 0, 1: 40, 2: 0}


def test_the_replay_cli_refuses_a_gap_before_starting_spark(stack, unique, monkeypatch, capsys):
    from pipelines.replay import main

    settings = isolated(stack, unique)
    produce_then_expire(settings, count=10, partition=0, expire_before=5)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", settings.kafka.topic_prefix)
    monkeypatch.setenv("LAKEHOUSE_ROOT", settings.lakehouse_root)

    assert main(["--to", "g2", "--streams", "rsvps", "--no-postgres"]) == 2
    err = capsys.readouterr().err
    assert "past Kafka's retention" in err and "offsets 5..9" in err
    assert "g2" not in generations.existing(settings), "nothing was written"


def test_a_lost_checkpoint_is_refused_and_a_replay_from_a_timestamp_rebuilds_every_table(
    stack, spark, unique, monkeypatch, capsys
):
    from common.store import Store
    from pipelines.chain import main as chain_main
    from pipelines.checkpoints import LostCheckpoint
    from tests.helpers import consume_with_coordinates
    from tests.integration.lakehouse import run_available_now
    from tests.integration.test_gold import assert_gold_exact

    settings = isolated(stack, unique)
    before = int(time.time() * 1000) - 1000
    frames = capture_frames()[:300]
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(frames))
    g1 = run_available_now(spark, settings)
    assert Store(settings).delete_tree("g1/_checkpoints") > 0  # the checkpoints are lost

    with pytest.raises(LostCheckpoint, match="bronze-rsvps, silver-rsvps, gold-rsvps") as refused:
        run_available_now(spark, settings)
    assert "meetup-replay --to" in str(refused.value)
    assert spark.read.format("delta").load(g1.table(catalogue.BRONZE_RSVPS)).count() == len(frames), (
        "nothing re-appended"
    )
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", settings.kafka.topic_prefix)
    monkeypatch.setenv("LAKEHOUSE_ROOT", settings.lakehouse_root)
    assert chain_main(["--streams", "rsvps", "--stages", "bronze", "--no-postgres"]) == 2  # before any Spark starts
    assert "meetup-chain: the checkpoint of bronze-rsvps" in capsys.readouterr().err

    g2 = replay(spark, settings, "g2", streams=("rsvps",), timestamp_ms=before, stages=("bronze", "silver", "gold"))

    assert generations.current(settings) == "g2"
    expected = expected_tables(records)
    for table in COLUMNS:
        assert silver_rows(spark, g2, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table
    assert_gold_exact(spark, g2, records)
