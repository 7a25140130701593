"""The chain under bad input and under kill -9: nothing lost, nothing doubled, every table exact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from itertools import islice

import pytest
from pyspark.sql import functions as F

from ingest import frames as fr
from ingest import generator
from lakehouse import catalogue
from lakehouse.layout import Layout
from tests.expected import COLUMNS, expected_tables
from tests.helpers import capture_frames, consume_with_coordinates, produce, wait_until
from tests.integration.lakehouse import (
    assert_every_table_exact,
    chain_process,
    isolated,
    postgres_rows,
    run_available_now,
    s3_keys,
    silver_rows,
)

pytestmark = pytest.mark.integration


def plainly_valid(frame: bytes) -> bool:
    """The contract of DESIGN.md, checked by hand for the kinds of damage the fault injector does."""
    if len(frame) > 1_000_000:
        return False
    try:
        message = json.loads(frame.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    if not isinstance(message, dict):
        return False
    ints = [message.get("rsvp_id"), message.get("mtime"), message.get("guests")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return False
    return message.get("response") in ("yes", "no") and message["guests"] >= 0


def mutated_frames(count: int) -> list[bytes]:
    faults = fr.Faults(seed=21, malformed=0.3, duplicate=0.03, stale=0.03, extra_field=0.05)
    source = capture_frames() + list(generator.rsvps(seed=21, count=count))
    frames, oversized = [], 0
    for frame in fr.inject_faults(source, faults):
        if len(frame) > 1_000_000:
            oversized += 1
            if oversized > 4:  # a few 2 MB frames prove the point; hundreds would only fill the disk
                continue
        frames.append(frame)
    return frames[:count]


def test_ten_thousand_mutated_frames_are_all_accounted_for(stack, spark, unique):
    settings = isolated(stack, unique)
    frames = mutated_frames(10_000)
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(frames))

    layout = run_available_now(spark, settings, stages=("bronze", "silver"))

    invalid = sum(1 for frame in frames if not plainly_valid(frame))
    bronze = spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS)).count()
    stats = (
        spark.read.format("delta")
        .load(layout.table(catalogue.SILVER_BATCH_STATS))
        .agg(F.sum("rows_in"), F.sum("rows_valid"), F.sum("rows_quarantined"), F.sum("unknown_field_rows"))
        .first()
    )
    quarantine = spark.read.format("delta").load(layout.table(catalogue.SILVER_QUARANTINE))
    reasons = {row.reason for row in quarantine.select("reason").distinct().collect()}

    assert len(frames) == bronze == 10_000, "every frame in bronze"
    assert stats[0] == stats[1] + stats[2] == 10_000, "silver + quarantine = bronze"
    assert quarantine.count() == stats[2] == invalid
    assert reasons >= {"malformed_json", "invalid_utf8", "missing_field", "wrong_type", "oversized"}
    assert stats[3] > 0, "unknown extra fields are counted"
    valid_records = [record for record in records if plainly_valid(record[2])]
    expected = expected_tables(valid_records)
    for table in ("rsvps", "events", "members", "groups"):
        assert silver_rows(spark, layout, table) == expected[table], table


@pytest.mark.slow  # ~4 min; the 20-kill run in test_failure_injection.py is slow too
def test_a_chain_killed_with_sigkill_mid_stream_then_restarted_is_exact(stack, spark, unique):
    settings = isolated(stack, unique)
    frames = capture_frames() + list(islice(generator.rsvps(seed=9, count=6000), 6000))
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(frames))
    layout = Layout.from_settings(settings)
    chain = chain_process(settings, "--interval", "1 second", "--max-offsets-per-trigger", "1500",
                          stderr=subprocess.PIPE)  # fmt: skip
    try:
        # kill -9 mid-stream: once silver has committed its first batch with data, at the next batch any query
        # reports (the hot path's, every second), while silver works on its next one
        deadline = time.monotonic() + 240
        silver_done = False
        for line in chain.stderr:
            if silver_done and re.search(r"(gold|mirror|bronze)-rsvps: batch \d+", line):
                break
            silver_done = silver_done or bool(re.search(r"silver-rsvps: batch \d+: \d+ in", line))
            if time.monotonic() > deadline:
                break
    finally:
        os.killpg(chain.pid, signal.SIGKILL)
        chain.wait()
    assert chain.returncode == -signal.SIGKILL
    done_before_kill = (
        spark.read.format("delta").load(layout.table(catalogue.SILVER_BATCH_STATS)).agg(F.sum("rows_in")).first()[0]
    )
    assert 0 < done_before_kill < len(frames), "the kill landed mid-stream"

    run_available_now(spark, settings)

    assert_every_table_exact(spark, settings, layout, records)  # gold was killed mid-stream too


@pytest.mark.slow  # 45 s; test_mirror.py's outage test covers the same wait in `make test`
def test_a_postgres_outage_during_the_mirror_is_waited_out_and_nothing_is_lost(stack, spark, unique, capfd):
    import threading

    from stack import postgres as postgres_service

    settings = isolated(stack, unique)
    frames = capture_frames()
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(frames))
    layout = Layout.from_settings(settings)
    failures: list[BaseException] = []

    def chain() -> None:
        try:
            run_available_now(spark, settings, stages=("bronze", "silver"))
        except BaseException as error:  # surfaced by the assertion below
            failures.append(error)

    runner = threading.Thread(target=chain)
    runner.start()
    try:
        bronze_path = layout.table(catalogue.BRONZE_RSVPS)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # bronze done: silver (and its mirror) comes next
            try:
                if spark.read.format("delta").load(bronze_path).count() == len(frames):
                    break
            except Exception:  # the table may not exist yet
                pass
            time.sleep(1)
        assert postgres_service.down(stack)
        seen: list[str] = []  # stderr so far: the mirror's retry line says it met the outage

        def outage_met() -> bool:
            seen.append(capfd.readouterr().err)
            return "mirror: PostgreSQL unavailable" in "".join(seen)

        met = wait_until(outage_met, timeout=180, every=1)
    finally:
        postgres_service.up(stack)
        runner.join(300)
    assert met, "silver's mirror never met the outage"
    assert not failures, failures  # ... and waited it out
    expected = expected_tables(records)
    for table in COLUMNS:
        assert postgres_rows(settings, table) == expected[table], table


def test_a_batch_rerun_from_the_offset_log_is_exact_despite_sparks_kafka_metrics_bug(stack, spark, unique, capfd):
    """After a crash in mid-batch, Spark re-runs the batch from its offset log; Spark 4.1.1's Kafka source
    then fails on its metrics (SPARK-55271). The chain restarts the query and nothing is doubled."""
    from common.store import Store

    settings = isolated(stack, unique)
    frames = capture_frames()[:200]
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    layout = run_available_now(spark, settings, stages=("bronze",))
    # A kill between the sink's commit and the checkpoint's: the offsets of batch 0 are logged, its commit not.
    store = Store(settings)
    commit = store._key(layout.generation, "_checkpoints", "bronze-rsvps", "commits", "0")
    commits = s3_keys(settings, f"{layout.generation}/_checkpoints/bronze-rsvps/commits/")
    assert [key for key in commits if not key.endswith("/")] == [commit]  # S3A keeps "directory" markers too
    store.client.delete_object(Bucket=store.bucket, Key=commit)
    more = capture_frames()[200:300]
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), more)

    run_available_now(spark, settings, stages=("bronze",))

    assert "bronze-rsvps hit a known Spark bug" in capfd.readouterr().err, "the bug this test is about was met"
    bronze = spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS))
    assert bronze.count() == len(frames) + len(more)
    assert bronze.select("partition", "offset").distinct().count() == len(frames) + len(more)
