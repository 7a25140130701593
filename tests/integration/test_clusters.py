"""The chain on real distributed engines: a Spark standalone cluster and a three-broker Kafka cluster.

Both clusters are started here by the stack's own code (`stack/spark_standalone.py`, `stack/kafka.py`) on
ports of their own, beside the local stack whose S3 and PostgreSQL they share. Every test ends by
comparing every table with an independent computation from the Kafka records.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from common.settings import PROJECT_ROOT, Settings
from ingest import generator
from ingest.producer import Backoff, Ingest, IngestOptions
from ingest.server import Pace, ReplayServer
from lakehouse.layout import Layout
from stack import kafka as kafka_service
from stack import spark_standalone
from tests.helpers import capture_frames, consume_messages, consume_with_coordinates, produce, serving_in_a_thread
from tests.integration.lakehouse import (
    assert_every_table_exact,
    chain_process,
    isolated,
    own_stack_dir,
    process_env,
    run_available_now,
)
from tests.integration.test_failure_injection import rows_in
from tests.integration.test_ingest import assert_exactly_once_in_order

pytestmark = pytest.mark.integration

SPARK_MASTER = "spark://127.0.0.1:17077"
KAFKA_BROKERS = "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
KAFKA_CONTROLLER_PORT = 19093


@pytest.fixture(scope="module")
def spark_cluster(stack, tmp_path_factory) -> Settings:
    """A standalone master and two one-core workers, as `SPARK_MASTER=spark://… make stack-up` starts them."""
    settings = replace(
        stack,
        stack_dir=own_stack_dir(stack, tmp_path_factory, "spark-cluster"),
        spark=replace(stack.spark, master=SPARK_MASTER, master_webui_port=18080),
    )
    print(spark_standalone.up(settings))
    yield settings
    spark_standalone.down(settings)


@pytest.fixture(scope="module")
def kafka_cluster(stack, tmp_path_factory) -> Settings:
    """Three KRaft brokers on loopback (replication 3, min.insync.replicas 2), as the stack starts them."""
    settings = replace(
        stack,
        stack_dir=own_stack_dir(stack, tmp_path_factory, "kafka-cluster"),
        kafka=replace(
            stack.kafka,
            bootstrap_servers=KAFKA_BROKERS,
            replication_factor=3,
            controller_port=KAFKA_CONTROLLER_PORT,
        ),
    )
    print(kafka_service.up(settings))
    yield settings
    kafka_service.down(settings)


def submit(cluster: Settings, settings: Settings, *chain_args: str, log: Path) -> subprocess.Popen:
    """`meetup-submit --master spark://… pipelines/chain.py …` on `settings`' topics, tables and schema."""
    env = {
        **process_env(settings),
        "SPARK_MASTER": cluster.spark.master,
        "SPARK_DRIVER_MEMORY": "1g",
        "SPARK_EXECUTOR_MEMORY": "1g",
    }
    command = [str(Path(sys.executable).parent / "meetup-submit"), "pipelines/chain.py", "--streams", "rsvps"]
    with log.open("a") as output:
        return subprocess.Popen(
            [*command, *chain_args], cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def finish(process: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert returncode == 0, f"the submitted chain exited with {returncode}; last lines:\n{log.read_text()[-3000:]}"


def test_the_chain_on_the_standalone_cluster_writes_every_table_exactly(spark, stack, spark_cluster, unique, tmp_path):
    """`meetup-submit --master spark://…`: the chain's driver and its two executors are processes of their own,
    and what it writes equals the independent computation, as a local run's tables do (test_silver.py,
    test_gold.py). A few hundred real messages: what is tested is the distribution, not the volume."""
    settings = isolated(stack, unique)
    frames = capture_frames()[:300]
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(frames))
    log = tmp_path / "submit.log"
    finish(submit(spark_cluster, settings, "--stages", "bronze", "silver", "gold", "--available-now", log=log), log)

    assert re.search(r"INFO meetup-chain pipelines\.chain: done$", log.read_text(), re.M)
    apps = spark_standalone.master_state(spark_cluster)["completedapps"]
    assert any(app["name"] == "meetup-chain" for app in apps), "the chain ran on the standalone master"
    assert_every_table_exact(spark, settings, Layout.from_settings(settings), records)


@pytest.mark.slow
def test_a_worker_killed_during_a_run_is_survived_and_every_table_stays_exact(
    spark, stack, spark_cluster, unique, tmp_path
):
    settings = isolated(stack, unique)
    frames = capture_frames() + list(generator.rsvps(seed=9, count=20_000))
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(frames))
    layout = Layout.from_settings(settings)
    log = tmp_path / "submit.log"
    bounds = ("--max-offsets-per-trigger", "8000", "--max-files-per-trigger", "1")
    chain = submit(spark_cluster, settings, "--stages", "bronze", "silver", "gold", "--available-now", *bounds, log=log)
    try:
        deadline = time.monotonic() + 600
        while rows_in(spark, layout) == 0 and time.monotonic() < deadline and chain.poll() is None:
            time.sleep(2)  # until silver has committed a batch: the loss lands mid-run
        assert 0 < rows_in(spark, layout) < len(frames), "the worker must die while the backlog is processed"
        assert spark_standalone.kill_worker(spark_cluster, 1)
        print(f"worker 1 killed with silver at {rows_in(spark, layout):,} of {len(frames):,} rows")
        finish(chain, log)
    finally:
        if chain.poll() is None:
            os.killpg(chain.pid, signal.SIGKILL)
        spark_standalone.up(spark_cluster)  # the worker back, for whatever runs next

    assert re.search(r"INFO meetup-chain pipelines\.chain: done$", log.read_text(), re.M)
    assert_every_table_exact(spark, settings, layout, records)


@pytest.mark.slow
def test_a_broker_killed_during_ingest_and_streaming_loses_no_acknowledged_message(
    spark, stack, kafka_cluster, unique, tmp_path
):
    settings = isolated(kafka_cluster, unique)  # topics with replication 3 on the three brokers
    sent = capture_frames() + list(generator.rsvps(seed=3, count=16_000))
    server = ReplayServer({"rsvps": lambda: iter(sent)}, pace=Pace("rate", rate=800))
    log = tmp_path / "chain.log"
    with log.open("a") as stderr:
        chain = chain_process(
            settings, "--stages", "bronze", "silver", "gold", "--interval", "2 seconds", stderr=stderr
        )
    try:
        with serving_in_a_thread(server) as url:
            options = IngestOptions(base_url=url, exit_at_end=True, progress_every=60, backoff=Backoff(0.05, 0.5))
            ingest = Ingest(settings, options)
            runner = threading.Thread(target=ingest.run)
            runner.start()
            try:
                while ingest.counters.snapshot()["received"] < 5_000 and runner.is_alive():
                    time.sleep(0.05)
                assert kafka_service.kill_node(settings, 2), "broker 2 was not running"
                print(f"broker 2 killed after {ingest.counters.snapshot()['received']:,} frames received")
            finally:
                runner.join(300)
        stats = ingest.counters.snapshot()
        assert stats["failed"] == 0 and stats["delivered"] == len(sent), stats  # every frame acknowledged
        kafka_service.up(settings)  # the broker back, catching up
        time.sleep(20)
        assert chain.poll() is None, f"the chain died with the broker; see {log}:\n{log.read_text()[-3000:]}"
    finally:
        if chain.poll() is None:
            os.killpg(chain.pid, signal.SIGTERM)
            chain.wait(timeout=180)

    messages = consume_messages(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(sent))
    assert_exactly_once_in_order(messages, sent)  # each acknowledged frame in Kafka once, in order per key
    records = [(m.partition(), m.offset(), m.value()) for m in messages]
    run_available_now(spark, settings)  # the rest of the stream, as the restarted chain would take it
    assert_every_table_exact(spark, settings, Layout.from_settings(settings), records)
