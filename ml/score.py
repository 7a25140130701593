"""Batch scoring: a JSONL capture of raw RSVP messages in, one prediction per RSVP out.

meetup-score data/rsvps/2021-09-02_capture.jsonl                     # CSV on stdout, metrics on stderr
meetup-score capture.jsonl --out predictions.jsonl --model-version v1

Each RSVP is scored on its first message in the file, with history from the lines before it (the file
is the log: line order is arrival order), exactly as the chain scores a live RSVP, and calibrated online by
the file's earlier answers (ml/calibration.py; `probability_raw` is the model's own). The file's own final
answers then judge the model: ROC AUC, log loss and Brier score beside the majority baseline, so any
capture can test any version. Lines that silver would quarantine are counted, with their reasons, and
not scored.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import cli, health
from common.spark import build_spark
from ml import calibration as C
from ml import features as X
from ml import model as M
from ml.evaluate import capture_messages, final_answers
from ml.registry import NoModelError, Registry

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("rsvp_id", "probability_yes", "predicted", "model_version", "probability_raw", "calibration_shift")


def score_capture(
    spark: SparkSession, registry: Registry, path: str, version: str | None = None
) -> tuple[DataFrame, dict[str, Any]]:
    """(predictions, summary): predictions has OUTPUT_COLUMNS plus `answer` (the file's final answer).

    probability_yes is calibrated online, as the scoring stream does (ml/calibration.py): the model's own
    probability is probability_raw, shifted in log-odds by calibration_shift, which the capture's earlier
    answers decide block by block.
    """
    version, model = registry.load(version)
    messages, checked = capture_messages(spark, path)
    messages, checked = messages.persist(), checked.persist()  # counted for the summary and scored
    reasons = {
        r["reason"]: r["count"] for r in checked.filter(F.col("reason").isNotNull()).groupBy("reason").count().collect()
    }
    answers = final_answers(messages).withColumnRenamed("response", "answer")
    raw = C.ordinals(M.predict(model, X.rsvp_features(messages))).select(
        "rsvp_id", "ordinal", *X.ARRIVAL, F.col("p_yes").alias("probability_raw"), F.lit(version).alias("model_version")
    )
    calibrated, shifts = C.calibrate(raw.withColumn("logit", C.logit(F.col("probability_raw"))), messages)
    predictions = (
        calibrated.select(
            "rsvp_id",
            F.col("p_calibrated").alias("probability_yes"),
            F.when(F.col("p_calibrated") >= 0.5, "yes").otherwise("no").alias("predicted"),
            "model_version",
            "probability_raw",
            F.col("shift").alias("calibration_shift"),
            *X.ARRIVAL,
        )
        .join(answers, "rsvp_id")
        .orderBy(*X.ARRIVAL)
        .select(*OUTPUT_COLUMNS, "answer")
    )
    summary = {"model_version": version, "lines": checked.count(), "quarantined": reasons, "shifts": C.describe(shifts)}
    return predictions, summary


def evaluate(predictions: DataFrame, training_yes_rate: float | None = None) -> dict[str, Any]:
    """The model's metrics on the file's final answers, beside constant predictions: the majority baseline
    (the training yes rate, from the model's record) and, for reference, the file's own yes rate (a
    constant that knows the answers' share: the best any constant can do here)."""
    labelled = predictions.select(
        (F.col("answer") == "yes").cast("double").alias("label"), F.col("probability_yes").alias("p_yes")
    )
    result = {"model": M.metrics(labelled)}
    if "probability_raw" in predictions.columns:
        raw = predictions.select(
            (F.col("answer") == "yes").cast("double").alias("label"), F.col("probability_raw").alias("p_yes")
        )
        result["model raw"] = M.metrics(raw)
    if training_yes_rate is not None:
        result["majority"] = M.metrics(labelled.withColumn("p_yes", F.lit(training_yes_rate)))
    result["file rate"] = M.metrics(labelled.withColumn("p_yes", F.lit(result["model"]["yes_rate"])))
    return result


@cli.command("meetup-score", NoModelError)
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("meetup-score", __doc__)
    parser.add_argument("capture", help="a JSONL file, one raw message per line")
    parser.add_argument("--out", help="write predictions here (.csv or .jsonl) instead of CSV on stdout")
    parser.add_argument("--model-version", help="e.g. v2 (default: the current version)")
    args = parser.parse_args(argv)
    if not Path(args.capture).is_file():
        print(f"meetup-score: no such file: {args.capture}", file=sys.stderr)
        return 2
    settings = health.settings_for(["s3"])
    spark = build_spark(settings, "meetup-score")
    spark.sparkContext.setLogLevel("WARN")
    capture = str(Path(args.capture).resolve())
    predictions, summary = score_capture(spark, Registry(settings), capture, args.model_version)
    rows: pandas.DataFrame = predictions.toPandas()
    output = rows[list(OUTPUT_COLUMNS)]
    if args.out and args.out.endswith(".jsonl"):
        output.to_json(args.out, orient="records", lines=True)
    else:
        output.to_csv(args.out or sys.stdout, index=False)
    record = Registry(settings).metadata(summary["model_version"])
    scores = evaluate(predictions, record.get("baselines", {}).get("majority", {}).get("default"))
    quarantined = sum(summary["quarantined"].values())
    log.info(
        "%s lines, %s RSVPs scored by %s, %s lines not scored %s", summary["lines"], len(rows),
        summary["model_version"], quarantined, summary["quarantined"] or "",
    )  # fmt: skip
    for name, m in scores.items():
        auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        log.info(
            "%-9s ROC AUC %s  log loss %.3f  Brier %.3f  accuracy %.3f", name, auc, m["log_loss"], m["brier"],
            m["accuracy"],
        )  # fmt: skip
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
