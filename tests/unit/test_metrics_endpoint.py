"""The Prometheus endpoints: what the producer and the chain expose, read back the way Prometheus reads them."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common import metrics_endpoint
from common.cli import CommandError
from common.settings import Settings
from ingest.producer import Ingest, IngestCollector, IngestOptions
from pipelines import exporter


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Exposition text -> {(sample name, sorted labels): value}, parsed by prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_producers_counters_are_exposed_as_they_stand_at_each_scrape():
    ingest = Ingest(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}), IngestOptions())
    registry = CollectorRegistry()
    registry.register(IngestCollector(ingest))
    ingest.counters.add("received", 7)
    ingest.counters.add("produced", 8)
    ingest.counters.add("delivered", 5)
    ingest.counters.add("reconnects")
    with ingest.counters.lock:
        ingest.counters.errors["_MSG_TIMED_OUT"] = 2
    first = samples(generate_latest(registry).decode())
    assert first[("meetup_ingest_received_total", ())] == 7
    assert first[("meetup_ingest_delivered_total", ())] == 5
    assert first[("meetup_ingest_failed_total", ())] == 0
    assert first[("meetup_ingest_reconnects_total", ())] == 1
    assert first[("meetup_ingest_delivery_errors_total", (("error", "_MSG_TIMED_OUT"),))] == 2
    assert first[("meetup_ingest_unacknowledged", ())] == 3, "produced 8, 5 acknowledged"
    ingest.counters.add("received", 3)
    assert samples(generate_latest(registry).decode())[("meetup_ingest_received_total", ())] == 10, "read live"


def progress(name: str, batch_id: int, rows: int, seconds: float, behind: str | None) -> SimpleNamespace:
    metrics = {"maxOffsetsBehindLatest": behind} if behind is not None else {}
    return SimpleNamespace(
        name=name, id="x", batchId=batch_id, numInputRows=rows, durationMs={"triggerExecution": int(seconds * 1000)},
        timestamp="2026-12-05T10:00:00.000Z", sources=[SimpleNamespace(metrics=metrics)],
    )  # fmt: skip


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_progress_freshness_and_validation_move_the_chains_metrics():
    query = "gold-unit-test"
    before = value("meetup_chain_batches_total", query=query), value("meetup_chain_input_rows_total", query=query)
    exporter.observe_progress(progress(query, 1, 40, 2.5, "12"))
    exporter.observe_progress(progress(query, 2, 60, 0.7, "3"))
    assert value("meetup_chain_batches_total", query=query) - before[0] == 2
    assert value("meetup_chain_input_rows_total", query=query) - before[1] == 100
    assert value("meetup_chain_kafka_offsets_behind", query=query) == 3, "the last batch's lag"
    assert value("meetup_chain_batch_duration_seconds_count", query=query) == 2
    assert value("meetup_chain_batch_duration_seconds_bucket", query=query, le="1.0") == 1
    assert (
        value("meetup_chain_last_batch_timestamp_seconds", query=query)
        == datetime(2026, 12, 5, 10, tzinfo=UTC).timestamp()
    )

    at = datetime(2026, 12, 5, 10, 0, 5, tzinfo=UTC)
    stage = "unit-stage"
    exporter.observe_freshness([(stage, query, 2, 60, 1500, 4200, 6000, at)])
    assert value("meetup_chain_freshness_seconds", stage=stage, quantile="0.5") == 1.5
    assert value("meetup_chain_freshness_seconds", stage=stage, quantile="0.95") == 4.2
    assert value("meetup_chain_freshness_seconds", stage=stage, quantile="1") == 6.0
    assert value("meetup_chain_visible_rows_total", stage=stage) == 60
    assert value("meetup_chain_last_visible_timestamp_seconds", stage=stage) == at.timestamp()

    exporter.observe_validation("unit-stream", 9, 2)
    assert value("meetup_chain_messages_total", stream="unit-stream", outcome="quarantined") == 2
    assert value("meetup_chain_messages_total", stream="unit-stream", outcome="valid") == 9


def test_the_endpoint_serves_the_registry_over_http_and_a_taken_port_is_one_line_or_a_warning(caplog):
    port = free_port()
    url = metrics_endpoint.serve(port, metrics_endpoint.CHAIN_PORT, "test")
    assert url == f"http://127.0.0.1:{port}/metrics"
    exporter.observe_validation("http-stream", 4, 1)
    with urllib.request.urlopen(url, timeout=10) as response:
        scraped = samples(response.read().decode())
    assert scraped[("meetup_chain_messages_total", (("outcome", "valid"), ("stream", "http-stream")))] == 4
    assert ("process_resident_memory_bytes", ()) in scraped, "the process's own metrics come along"

    with pytest.raises(CommandError, match=f"metrics port {port} .*--metrics-port") as refused:
        metrics_endpoint.serve(port, metrics_endpoint.CHAIN_PORT, "test")  # asked for, and taken
    assert refused.value.status == 2 and "\n" not in str(refused.value)
    assert metrics_endpoint.serve(None, port, "test") is None, "the default port taken: go on without"
    assert "running without a metrics endpoint" in caplog.text
    assert metrics_endpoint.serve(0, port, "test") is None, "0 turns it off"


def test_spark_is_asked_to_serve_its_own_metrics_for_prometheus():
    conf = exporter.SPARK_CONF
    assert conf["spark.ui.prometheus.enabled"] == "true"
    assert conf["spark.metrics.conf.*.sink.prometheusServlet.class"].endswith("PrometheusServlet")
    assert conf["spark.metrics.conf.*.sink.prometheusServlet.path"] == "/metrics/prometheus"
    assert conf["spark.sql.streaming.metricsEnabled"] == "true"
