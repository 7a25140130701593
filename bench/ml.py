"""Benchmark: the model's training time on the real captures, and scoring rates, batch and streaming.

    make bench-ml                            # or: .venv/bin/python -m bench.ml --size 100000

1. The real captures go through bronze and silver (available-now); `meetup-train`'s code is timed on them
   (train on 2015-2020, test on 2021), and `meetup-categories`' code too.
2. Batch scoring (`meetup-score`'s code) of N generated RSVPs from a JSONL file, beside Spark's own
   parse of the same file (the reference that survives a noisy machine).
3. The scoring stage alone over the same N RSVPs in bronze (features against its state, the model,
   two MERGEs per batch), in batches of 6 bronze files.
Writes bench/results/ml.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.common import isolated, log, write_results
from common.settings import Settings, load_settings
from common.spark import build_spark
from ingest import generator
from lakehouse import catalogue
from lakehouse.layout import Layout
from lakehouse.schemas import RSVP_MESSAGE
from ml.categories import train_categories
from ml.registry import Registry
from ml.score import score_capture
from ml.train import train
from pipelines.bronze.job import start_bronze
from pipelines.chain import run_chain
from pipelines.metrics import ensure_metrics_tables
from pipelines.score.job import ScoreBatch, ensure_scoring_tables
from pipelines.stages import ChainOptions
from stack import kafka as kafka_service
from tests.helpers import capture_frames, produce

TEST_FROM_MS = int(datetime(2021, 1, 1, tzinfo=UTC).timestamp() * 1000)


def captures_in_silver(spark: SparkSession, settings: Settings) -> Layout:
    """The real captures through bronze and silver (available-now), in the settings' own topic and lakehouse:
    what `meetup-train` reads."""
    kafka_service.ensure_topics(settings, ("rsvps",))
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), capture_frames())
    layout = Layout.from_settings(settings)
    run_chain(
        spark,
        settings,
        layout=layout,
        options=ChainOptions(
            stages=("bronze", "silver"),
            streams=("rsvps",),
            available_now=True,
            mirror_to_postgres=False,
            progress_every=3600,
        ),
    )
    return layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="generated RSVPs to score")
    args = parser.parse_args(argv)
    base = load_settings()
    spark = build_spark(base, "bench-ml", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")

    settings = isolated(base, f"benchml{int(time.time())}")
    layout = captures_in_silver(spark, settings)
    started = time.perf_counter()
    metadata = train(spark, settings, layout, test_from_ms=TEST_FROM_MS)
    train_s = time.perf_counter() - started
    log(f"trained {metadata['version']} ({metadata['classifier']}) in {train_s:.0f}s")
    started = time.perf_counter()
    categories = train_categories(spark, settings, layout)
    categories_s = time.perf_counter() - started

    frames = list(generator.rsvps(seed=args.size, count=args.size))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.jsonl"
        path.write_bytes(b"\n".join(frames) + b"\n")
        started = time.perf_counter()
        spark.read.text(str(path)).select(F.from_json("value", RSVP_MESSAGE).alias("m")).agg(
            F.sum("m.guests")
        ).collect()
        parse_s = time.perf_counter() - started
        started = time.perf_counter()
        predictions, _ = score_capture(spark, Registry(settings), str(path))
        scored = predictions.count()
        batch_s = time.perf_counter() - started
    log(f"batch-scored {scored:,} RSVPs in {batch_s:.0f}s")

    stream_settings = isolated(base, f"benchmls{int(time.time())}")
    kafka_service.ensure_topics(stream_settings, ("rsvps",))
    Registry(stream_settings).save(Registry(settings).load()[1], metadata)
    produce(stream_settings.kafka.bootstrap_servers, stream_settings.kafka.topic("rsvps"), frames)
    stream_layout = Layout.from_settings(stream_settings)
    start_bronze(spark, stream_settings, stream_layout, "rsvps", trigger={"availableNow": True},
                 max_offsets_per_trigger=20_000).awaitTermination()  # fmt: skip
    ensure_metrics_tables(spark, stream_layout)
    ensure_scoring_tables(spark, stream_layout)
    batches = []

    def timed(df: DataFrame, batch_id: int) -> None:
        t0 = time.perf_counter()
        ScoreBatch(spark, stream_settings, stream_layout)(df, batch_id)
        batches.append(time.perf_counter() - t0)

    started = time.perf_counter()
    (
        spark.readStream.format("delta").load(stream_layout.table(catalogue.BRONZE_RSVPS))
        .writeStream.foreachBatch(timed)
        .option("checkpointLocation", stream_layout.checkpoint("bench-score"))
        .trigger(availableNow=True)
        .start()
        .awaitTermination()
    )  # fmt: skip
    stream_s = time.perf_counter() - started
    result = {
        "train_rsvps": metadata["training_window"]["rsvps"],
        "train_seconds": round(train_s, 1),
        "final_fit_seconds": metadata["fit_seconds"],
        "classifier": metadata["classifier"],
        "test_metrics": {k: metadata["metrics"][k] for k in ("roc_auc", "pr_auc_no", "log_loss", "brier", "accuracy")},
        "categories_seconds": round(categories_s, 1),
        "categories_k": categories["k"],
        "scored_rsvps": scored,
        "generated_messages": args.size,
        "spark_from_json_per_s": round(args.size / parse_s),
        "batch_scoring_per_s": round(args.size / batch_s),
        "stream_scoring_per_s": round(args.size / stream_s),
        "stream_batches": len(batches),
        "stream_batch_seconds_max": round(max(batches), 1) if batches else None,
    }
    log(str(result))
    lines = [
        "| what | figure |",
        "|---|---:|",
        f"| training on the real captures ({result['train_rsvps']:,} RSVPs, 3 candidates + refit + baselines) "
        f"| {result['train_seconds']} s |",
        f"| final fit ({result['classifier']}) | {result['final_fit_seconds']} s |",
        f"| categories (k-means for 5 values of k) | {result['categories_seconds']} s |",
        f"| Spark's own from_json over {args.size:,} messages (reference) | {result['spark_from_json_per_s']:,} /s |",
        f"| batch scoring (meetup-score) | {result['batch_scoring_per_s']:,} messages/s |",
        f"| scoring stage, catch-up ({result['stream_batches']} batches) "
        f"| {result['stream_scoring_per_s']:,} messages/s |",
    ]
    write_results("ml", result, lines)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
