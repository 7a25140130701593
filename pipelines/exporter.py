"""The chain's own metrics for Prometheus, beside Spark's (docs/operations.md, "Metrics for Prometheus").

`meetup-chain` serves these on http://127.0.0.1:9102/metrics (`--metrics-port`; 0: off), from the same
events that fill `gold/pipeline_metrics` and `gold/freshness`:

- per query (`query` label: `gold-rsvps`, `silver-rsvps`, ...), from each batch's progress event:
  `meetup_chain_batches_total`, `meetup_chain_input_rows_total`, `meetup_chain_batch_duration_seconds`
  (a histogram), `meetup_chain_last_batch_timestamp_seconds` and, for queries reading Kafka,
  `meetup_chain_kafka_offsets_behind` (the most offsets any partition is behind the latest: the lag);
- per stage (`stage`: `postgres`, `gold`, `silver`, `score`), from each batch's freshness:
  `meetup_chain_freshness_seconds{quantile="0.5"|"0.95"|"1"}` of its last batch (Kafka append to visible),
  `meetup_chain_visible_rows_total` and `meetup_chain_last_visible_timestamp_seconds`;
- per stream, from silver's batches: `meetup_chain_messages_total{outcome="valid"|"quarantined"}`.

Spark serves its own metrics on its UI port (`SPARK_CONF`): the driver's, the executors', and each
streaming query's (`spark.sql.streaming.metricsEnabled`) on `/metrics/prometheus/`, and executor summaries
on `/metrics/executors/prometheus`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pyspark.sql.streaming.listener import StreamingQueryProgress

SPARK_CONF = {
    "spark.ui.prometheus.enabled": "true",
    "spark.metrics.conf.*.sink.prometheusServlet.class": "org.apache.spark.metrics.sink.PrometheusServlet",
    "spark.metrics.conf.*.sink.prometheusServlet.path": "/metrics/prometheus",
    "spark.sql.streaming.metricsEnabled": "true",
    # metric names carry the namespace: the application's name, stable across runs (the default, its id, is not)
    "spark.metrics.namespace": "meetup_chain",
}

BATCHES = Counter("meetup_chain_batches", "micro-batches completed", ["query"])
INPUT_ROWS = Counter("meetup_chain_input_rows", "rows read by the query's batches", ["query"])
BATCH_SECONDS = Histogram(
    "meetup_chain_batch_duration_seconds",
    "a micro-batch's whole duration (Spark's triggerExecution)",
    ["query"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
LAST_BATCH = Gauge("meetup_chain_last_batch_timestamp_seconds", "when the query's last batch started", ["query"])
OFFSETS_BEHIND = Gauge(
    "meetup_chain_kafka_offsets_behind", "Kafka offsets the query's source is behind the latest (max over partitions)",
    ["query"],
)  # fmt: skip
FRESHNESS = Gauge(
    "meetup_chain_freshness_seconds",
    "Kafka append -> visible, over the stage's last batch (quantile 1 = its oldest row)",
    ["stage", "quantile"],
)
VISIBLE_ROWS = Counter("meetup_chain_visible_rows", "rows made visible by the stage", ["stage"])
LAST_VISIBLE = Gauge("meetup_chain_last_visible_timestamp_seconds", "when the stage last made rows visible", ["stage"])
MESSAGES = Counter("meetup_chain_messages", "messages validated by silver, by outcome", ["stream", "outcome"])


def observe_progress(progress: StreamingQueryProgress) -> None:
    """One StreamingQueryProgress (the listener's event) into the per-query metrics."""
    query = progress.name or str(progress.id)
    BATCHES.labels(query).inc()
    INPUT_ROWS.labels(query).inc(int(progress.numInputRows))
    duration_ms = (progress.durationMs or {}).get("triggerExecution")
    if duration_ms is not None:
        BATCH_SECONDS.labels(query).observe(duration_ms / 1000)
    started = datetime.fromisoformat(progress.timestamp.replace("Z", "+00:00"))
    LAST_BATCH.labels(query).set(started.timestamp())
    for source in progress.sources:
        behind = (source.metrics or {}).get("maxOffsetsBehindLatest")
        if behind is not None:
            OFFSETS_BEHIND.labels(query).set(float(behind))


def observe_freshness(rows: list[tuple[Any, ...]]) -> None:
    """FRESHNESS rows (stage, query, batch_id, rows, p50_ms, p95_ms, max_ms, visible_at) of one batch."""
    for stage, _query, _batch, count, p50_ms, p95_ms, max_ms, visible_at in rows:
        for quantile, ms in (("0.5", p50_ms), ("0.95", p95_ms), ("1", max_ms)):
            FRESHNESS.labels(stage, quantile).set(ms / 1000)
        VISIBLE_ROWS.labels(stage).inc(count)
        LAST_VISIBLE.labels(stage).set(visible_at.timestamp())


def observe_validation(stream: str, valid: int, quarantined: int) -> None:
    """One silver batch's outcome: how many messages were valid and how many went to quarantine."""
    MESSAGES.labels(stream, "valid").inc(valid)
    MESSAGES.labels(stream, "quarantined").inc(quarantined)
