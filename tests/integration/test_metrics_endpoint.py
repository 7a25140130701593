"""The chain's Prometheus metrics agree with what it records in the lakehouse, batch for batch."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import functions as F

from common import metrics_endpoint
from lakehouse import catalogue
from tests.helpers import capture_frames, produce, wait_until
from tests.integration.lakehouse import isolated, run_available_now

pytestmark = pytest.mark.integration

QUERIES = ("bronze-rsvps", "silver-rsvps", "gold-rsvps", "mirror-rsvps")
STAGES = ("silver", "postgres", "gold")
BROKEN = [b"{not json", b'{"rsvp_id": "not a number"}', b"\xff\xfe", b"[]"]


def snapshot() -> dict[tuple, float]:
    found = {}
    for query in QUERIES:
        for name in ("meetup_chain_batches_total", "meetup_chain_input_rows_total"):
            found[(name, query)] = REGISTRY.get_sample_value(name, {"query": query}) or 0.0
    for stage in STAGES:
        found[("meetup_chain_visible_rows_total", stage)] = (
            REGISTRY.get_sample_value("meetup_chain_visible_rows_total", {"stage": stage}) or 0.0
        )
    for outcome in ("valid", "quarantined"):
        found[("meetup_chain_messages_total", outcome)] = (
            REGISTRY.get_sample_value("meetup_chain_messages_total", {"stream": "rsvps", "outcome": outcome}) or 0.0
        )
    return found


def test_the_chains_metrics_count_what_its_tables_record_and_are_served_over_http(stack, spark, unique):
    settings = isolated(stack, unique)
    frames = capture_frames()[:400] + BROKEN
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames)
    before = snapshot()

    layout = run_available_now(spark, settings, stages=("bronze", "silver", "gold"))

    table = lambda name: spark.read.format("delta").load(layout.table(catalogue.table(*name.split("/"))))  # noqa: E731
    expected = {}
    for row in table("gold/pipeline_metrics").groupBy("query").agg(F.count("*"), F.sum("input_rows")).collect():
        expected[("meetup_chain_batches_total", row[0])] = row[1]
        expected[("meetup_chain_input_rows_total", row[0])] = row[2]
    for row in table("gold/freshness").groupBy("stage").agg(F.sum("rows")).collect():
        expected[("meetup_chain_visible_rows_total", row[0])] = row[1]
    stats = table("silver/batch_stats").agg(F.sum("rows_valid"), F.sum("rows_quarantined")).first()
    expected[("meetup_chain_messages_total", "valid")] = stats[0]
    expected[("meetup_chain_messages_total", "quarantined")] = stats[1]
    assert set(QUERIES) <= {key[1] for key in expected}, "every query of the run recorded its batches"
    assert stats[1] == len(BROKEN) and expected[("meetup_chain_input_rows_total", "bronze-rsvps")] == len(frames)

    moved = lambda: {key: snapshot()[key] - before[key] for key in expected}  # noqa: E731
    wait_until(lambda: moved() == expected, timeout=30, every=0.5)
    assert moved() == expected, "each batch counted once in Prometheus, as in gold/pipeline_metrics"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = metrics_endpoint.serve(port, metrics_endpoint.CHAIN_PORT, "test")
    with urllib.request.urlopen(url, timeout=10) as response:
        names = {sample.name for family in text_string_to_metric_families(response.read().decode())
                 for sample in family.samples}  # fmt: skip
    assert {
        "meetup_chain_batches_total", "meetup_chain_batch_duration_seconds_bucket", "meetup_chain_kafka_offsets_behind",
        "meetup_chain_freshness_seconds", "meetup_chain_last_visible_timestamp_seconds", "meetup_chain_messages_total",
    } <= names  # fmt: skip
    for stage in STAGES:
        assert REGISTRY.get_sample_value("meetup_chain_freshness_seconds", {"stage": stage, "quantile": "0.95"}) >= 0
