"""Kafka with SASL: one set of KAFKA_CLIENT_* settings logs the producer and Spark's Kafka source in.

The stack's broker (`stack/kafka.py`) requires SASL/PLAIN when the client settings say SASL_PLAINTEXT with
a PLAIN user, so this runs against a real broker that refuses anyone else, on ports of its own.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from common import health
from ingest.producer import Backoff, Ingest, IngestOptions
from ingest.server import Pace, ReplayServer
from lakehouse import catalogue
from lakehouse.layout import Layout
from pipelines.bronze.job import start_bronze
from stack import kafka as kafka_service
from tests.helpers import capture_frames, serving_in_a_thread
from tests.integration.lakehouse import own_stack_dir

pytestmark = pytest.mark.integration

FRAMES = capture_frames()[:600]


@pytest.fixture(scope="module")
def sasl_kafka(stack, tmp_path_factory):
    login = {"sasl.username": "meetup", "sasl.password": secrets.token_hex(12)}  # generated, never in the repo
    settings = replace(
        stack,
        stack_dir=own_stack_dir(stack, tmp_path_factory, "sasl-kafka"),
        kafka=replace(
            stack.kafka,
            bootstrap_servers="127.0.0.1:19192",
            controller_port=19193,
            client_config={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", **login},
        ),
    )
    print(kafka_service.up(settings))
    yield settings
    kafka_service.down(settings)


def with_password(settings, password: str):
    return replace(
        settings,
        kafka=replace(settings.kafka, client_config={**settings.kafka.client_config, "sasl.password": password}),
    )


def test_the_producer_and_sparks_kafka_source_log_in_with_sasl_and_a_wrong_password_is_refused(
    spark, sasl_kafka, unique
):
    settings = replace(
        sasl_kafka, kafka=replace(sasl_kafka.kafka, topic_prefix=unique), lakehouse_root=sasl_kafka.path(unique)
    )
    kafka_service.ensure_topics(settings, ("rsvps",))

    server = ReplayServer({"rsvps": lambda: iter(FRAMES)}, pace=Pace("max"))
    with serving_in_a_thread(server) as url:
        ingest = Ingest(
            settings, IngestOptions(base_url=url, exit_at_end=True, progress_every=60, backoff=Backoff(0.05, 0.5))
        )
        assert ingest.run() == 0
    assert ingest.counters.snapshot()["delivered"] == len(FRAMES)

    layout = Layout.from_settings(settings)  # Spark's Java client, with the translated options
    start_bronze(spark, settings, layout, "rsvps", trigger={"availableNow": True}).awaitTermination()
    bronze = spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS))
    assert sorted(bytes(row.value) for row in bronze.select("value").collect()) == sorted(FRAMES)

    with pytest.raises(health.ServiceUnavailable):  # the broker really checks the password
        health.check_kafka(with_password(settings, "wrong"), timeout=5)
    without_login = replace(settings, kafka=replace(settings.kafka, client_config={}))
    with pytest.raises(health.ServiceUnavailable):
        health.check_kafka(without_login, timeout=5)
