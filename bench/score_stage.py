"""Benchmark: where the scoring stage's live batch goes, phase by phase, once its state is large.

    make bench-score-stage          # or: .venv/bin/python -m bench.score_stage --state 100000 --batches 6

A live scoring batch takes the RSVPs that arrived in the last couple of minutes (about 1,500 in the demo),
against a state that holds every RSVP seen so far and grows by the hour. The phases that read the state
(features, calibration, the MERGEs) may grow with it, and only a large state shows whether they do.

1. N generated RSVPs (--state) go to bronze and through the scoring stage in one batch: the state.
2. Then --batches live batches of --batch-size RSVPs each: produced, taken into bronze, scored. The
   scoring stage's own phase clock (pipelines/phases.py) gives each batch's phases.
3. The table: each phase's median over the live batches, and Spark's `from_json` over the state's bronze
   table beside them (the reference that moves with the machine).

With --beside-hot-path RATE, the live batches are timed while the hot path runs in the same Spark
application, as in the chain: a generator sends RATE RSVPs/s to a topic of its own, and gold and the
PostgreSQL mirror take them every 5 seconds (the demo's interval), in the hot scheduler pool, while the
scoring batches run in the slow one. Alone, a phase's time is its work; beside the hot path, it is its work
plus its waits for cores, which is what the demo's slow path pays.

The model is the current one of the local registry (the demo's, or `make train`'s); with none, it is trained
on the real captures first. Writes bench/results/score_stage.json and .md (or --name). Needs the local stack.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict

from pyspark.sql import DataFrame, SparkSession

from bench.common import from_json_seconds, isolated, log, write_results
from common.settings import Settings, load_settings
from common.spark import build_spark
from ingest import generator
from lakehouse import catalogue
from lakehouse.layout import Layout
from ml.registry import Registry
from pipelines.bronze.job import read_bronze_stream, start_bronze
from pipelines.metrics import ensure_metrics_tables
from pipelines.phases import RECORDER
from pipelines.score.job import QUERY, ScoreBatch, ensure_scoring_tables
from stack import kafka as kafka_service
from tests.helpers import produce


def model_for(spark: SparkSession, base: Settings, settings: Settings) -> None:
    """The local registry's current model, copied into this run's registry (trained on the captures if none)."""
    local = Registry(base)
    if local.current() is None:
        from bench.ml import TEST_FROM_MS, captures_in_silver
        from ml.train import train

        log("no model in the local registry: training one on the real captures")
        capture_settings = isolated(base, f"{settings.kafka.topic_prefix}cap")
        train(spark, capture_settings, captures_in_silver(spark, capture_settings), test_from_ms=TEST_FROM_MS)
        local = Registry(capture_settings)
    version, model = local.load()
    Registry(settings).save(model, local.metadata(version))
    log(f"model {version} of {local.layout.root}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=int, default=100_000, help="RSVP messages in the state before the batches")
    parser.add_argument("--batches", type=int, default=6, help="live batches timed")
    parser.add_argument("--batch-size", type=int, default=1_500, help="messages per live batch")
    parser.add_argument("--name", default="score_stage", help="results file name (bench/results/<name>.*)")
    parser.add_argument("--beside-hot-path", type=float, default=0.0, metavar="RATE",
                        help="time the live batches while gold and the mirror take RATE generator RSVPs/s")  # fmt: skip
    args = parser.parse_args(argv)
    base = load_settings()
    spark = build_spark(base, "bench-score-stage", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    settings = isolated(base, f"benchscore{int(time.time())}")
    kafka_service.ensure_topics(settings, ("rsvps",))
    layout = Layout.from_settings(settings)
    model_for(spark, base, settings)
    ensure_metrics_tables(spark, layout)
    ensure_scoring_tables(spark, layout)
    score = ScoreBatch(spark, settings, layout)
    bronze = layout.table(catalogue.BRONZE_RSVPS)
    frames = generator.rsvps(seed=7, count=args.state + args.batches * args.batch_size)

    def take(count: int) -> float:
        """Produce `count` messages, take them into bronze, score them as the stream does: the scoring's seconds."""
        produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), [next(frames) for _ in range(count)])
        start_bronze(spark, settings, layout, "rsvps", trigger={"availableNow": True}).awaitTermination()
        seconds = []

        def timed(df: DataFrame, batch_id: int) -> None:
            started = time.perf_counter()
            score(df, batch_id)
            seconds.append(time.perf_counter() - started)

        (
            read_bronze_stream(spark, layout, "rsvps")
            .writeStream.queryName("bench-score-stage")
            .foreachBatch(timed)
            .option("checkpointLocation", layout.checkpoint("bench-score-stage"))
            .trigger(availableNow=True)
            .start()
            .awaitTermination()
        )  # fmt: skip
        return sum(seconds)

    log(f"state: {args.state:,} messages through the scoring stage in one batch")
    state_s = take(args.state)
    log(f"state built in {state_s:.0f}s")
    hot = (
        HotPath(spark, base, f"{settings.kafka.topic_prefix}hot", args.beside_hot_path)
        if args.beside_hot_path
        else None
    )
    if hot:
        hot.start()
    RECORDER.drain()
    phases: dict[str, list[float]] = defaultdict(list)
    totals = []
    for n in range(args.batches):
        totals.append(take(args.batch_size))
        for query, _, _, phase, _, seconds, _ in RECORDER.drain():  # BATCH_PHASES rows, the hot path's too
            if query == QUERY:
                phases[phase].append(seconds)
        log(f"live batch {n + 1}/{args.batches}: {totals[-1]:.1f}s")
    if hot:
        hot.stop()
    parse_s = from_json_seconds(spark, bronze)
    medians = {phase: round(statistics.median(seconds), 2) for phase, seconds in phases.items()}
    result = {
        "state_messages": args.state,
        "batch_messages": args.batch_size,
        "batches": args.batches,
        "state_batch_seconds": round(state_s, 1),
        "batch_seconds_median": round(statistics.median(totals), 2),
        "batch_seconds": [round(t, 2) for t in totals],
        "phase_seconds_median": medians,
        "phase_seconds": {p: [round(s, 2) for s in v] for p, v in phases.items()},
        "from_json_seconds_all_bronze": round(parse_s, 2),
        "beside_hot_path_rsvps_per_s": args.beside_hot_path,
        "hot_path_rsvps_sent": hot.sent if hot else 0,
    }
    log(str(result))
    lines = [
        f"Scoring stage, live batches of {args.batch_size:,} messages after a state of {args.state:,} "
        f"(median of {args.batches}; `from_json` over all {args.state + args.batches * args.batch_size:,} "
        f"bronze messages: {parse_s:.2f} s)"
        + (f", beside the hot path at {args.beside_hot_path:g} RSVPs/s" if hot else ", alone"),
        "",
        "| phase | median seconds |",
        "|---|---:|",
        *(f"| {phase} | {seconds:.2f} |" for phase, seconds in medians.items()),
        f"| **batch** | **{result['batch_seconds_median']:.2f}** |",
    ]
    write_results(args.name, result, lines)
    spark.stop()
    return 0


class HotPath:
    """Gold and the PostgreSQL mirror on a generator's stream of their own, in this Spark application (the
    chain's hot pool), with its own topic, lakehouse prefix and PostgreSQL schema."""

    WARM_UP_S = 60.0  # the first batches catch up on what was sent before the queries started

    def __init__(self, spark: SparkSession, base: Settings, name: str, rate: float):
        self.spark, self.rate, self.sent = spark, rate, 0
        self.settings = isolated(base, name)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        kafka_service.ensure_topics(self.settings, ("rsvps",))
        self.threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._run, daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        log(f"hot path: gold and the mirror at {self.rate:g} RSVPs/s; {self.WARM_UP_S:.0f} s of warm-up")
        time.sleep(self.WARM_UP_S)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=300)
        log(f"hot path: stopped after {self.sent:,} RSVPs")

    def _send(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.settings.kafka.bootstrap_servers, "linger.ms": 20})
        topic = self.settings.kafka.topic("rsvps")
        started = time.monotonic()
        for frame in generator.rsvps(seed=11):
            if self.stopping.is_set():
                break
            wait = started + self.sent / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            producer.produce(topic, frame)
            producer.poll(0)
            self.sent += 1
        producer.flush(30)

    def _run(self) -> None:
        from pipelines.chain import run_chain
        from pipelines.stages import ChainOptions

        layout = Layout.from_settings(self.settings)
        # no metrics flush while the batches are timed: it would take the scoring phases the bench reads
        run_chain(
            self.spark,
            self.settings,
            layout=layout,
            stop_event=self.stopping,
            options=ChainOptions(
                stages=("gold",), streams=("rsvps",), interval="5 seconds", progress_every=3600, metrics_every=1e9
            ),
        )


if __name__ == "__main__":
    raise SystemExit(main())
