"""Train the yes/no model on the lakehouse and persist it as a new version.

meetup-train                                   # last 25% of RSVPs (by mtime) held out for the test
meetup-train --test-from 2021-01-01            # train before a date, test after it
meetup-train --classifier logistic_regression  # skip the comparison
meetup-train --no-promote                      # save the version, leave CURRENT as it is
meetup-train --evaluate leave-one-capture-out  # judge across eras: train on all captures but one, test on it

Features come from bronze (every message, so history is point-in-time; ml/features.py), labels (the
final answer) from silver `rsvps`. The split is by time: the test RSVPs are the latest. The candidate
classifiers are compared on a validation period (the latest part of the training period); the winner,
by validation log loss, is refitted on the whole training period and judged once on the test period.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import cli, health
from common.cli import CommandError
from common.settings import PROJECT_ROOT, Settings
from common.spark import build_spark, one_row
from lakehouse import catalogue, generations
from lakehouse.layout import Layout
from ml import model as M
from ml.evaluate import leave_one_capture_out
from ml.evaluate import report as evaluation_report
from ml.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TOKEN_FEATURES, rsvp_features, valid_messages
from ml.model import choose_classifier, time_split
from ml.registry import Registry

log = logging.getLogger(__name__)


def table_version(spark: SparkSession, path: str) -> int:
    return int(one_row(DeltaTable.forPath(spark, path).history(1).select("version"))[0])


def labelled_examples(spark: SparkSession, layout: Layout) -> tuple[DataFrame, dict[str, Any]]:
    """One row per RSVP with features and label, and the table versions they were read at."""
    bronze_path, silver_path = layout.table(catalogue.BRONZE_RSVPS), layout.table(catalogue.SILVER_RSVPS)
    for path in (bronze_path, silver_path):
        if not DeltaTable.isDeltaTable(spark, path):
            raise CommandError(f"no table at {path}: run the chain first (make demo or meetup-chain)")
    versions = {"bronze.rsvps": table_version(spark, bronze_path), "silver.rsvps": table_version(spark, silver_path)}
    bronze = spark.read.format("delta").option("versionAsOf", versions["bronze.rsvps"]).load(bronze_path)
    silver = spark.read.format("delta").option("versionAsOf", versions["silver.rsvps"]).load(silver_path)
    return M.with_label(rsvp_features(valid_messages(bronze)), silver), versions


def window(df: DataFrame) -> dict[str, Any]:
    row = one_row(df.agg(F.count("*").alias("rsvps"), F.min("mtime").alias("lo"), F.max("mtime").alias("hi")))

    def iso(ms: int | None) -> str | None:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None

    return {"rsvps": row["rsvps"], "from": iso(row["lo"]), "to": iso(row["hi"])}


def train(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    test_from_ms: int | None = None,
    test_fraction: float = 0.25,
    validation_fraction: float = 0.2,
    classifier: str = "auto",
    promote: bool = True,
) -> dict[str, Any]:
    """Fit, judge and persist a model; returns its metadata (with `version`)."""
    started = time.perf_counter()
    examples, table_versions = labelled_examples(spark, layout)
    examples = examples.persist()
    try:
        train_df, test_df, cut = time_split(examples, test_from_ms=test_from_ms, test_fraction=test_fraction)
        train_df, test_df = train_df.persist(), test_df.persist()
        windows = {"train": window(train_df), "test": window(test_df)}
        log.info(f"{windows['train']['rsvps']} training RSVPs, {windows['test']['rsvps']} test RSVPs (cut at {cut})")
        if not windows["train"]["rsvps"] or not windows["test"]["rsvps"]:
            raise CommandError("the split left no training or no test RSVPs; change --test-from")

        chosen, comparison = choose_classifier(train_df, classifier, validation_fraction)
        t0 = time.perf_counter()
        fitted = M.fit(chosen, train_df)
        fit_seconds = time.perf_counter() - t0
        test_metrics = M.metrics(M.predict(fitted, test_df))
        baselines = M.fit_baselines(train_df)
        baseline_metrics = {b.name: {**b.describe(), **M.metrics(b.apply(test_df))} for b in baselines}
        metadata = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "classifier": chosen,
            "chosen_by": "lowest log loss on the validation period" if comparison else "named on the command line",
            "validation": comparison,
            "metrics": test_metrics,
            "baselines": baseline_metrics,
            "features": {
                "numeric": list(NUMERIC_FEATURES),
                "categorical": list(CATEGORICAL_FEATURES),
                "tokens": list(TOKEN_FEATURES),
            },
            "importances": M.importances(fitted, train_df),
            "training_window": windows["train"],
            "test_window": windows["test"],
            "test_from_ms": cut,
            "generation": layout.generation,
            "table_versions": table_versions,
            "fit_seconds": round(fit_seconds, 1),
            "train_seconds": None,
        }
        metadata["train_seconds"] = round(time.perf_counter() - started, 1)
        version = Registry(settings).save(fitted, metadata, promote=promote)
        metadata["version"] = version
        return metadata
    finally:
        examples.unpersist()


def report(metadata: dict[str, Any]) -> str:
    """The test metrics beside the baselines, as a small table."""
    rows = [("model: " + metadata["classifier"], metadata["metrics"])]
    rows += [
        (f"baseline: {name}" + (f" ({b['rule']})" if b["rule"] else ""), b) for name, b in metadata["baselines"].items()
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"{'':44} {'ROC AUC':>8} {'PR AUC no':>10} {'log loss':>9} {'Brier':>7} {'accuracy':>9}"]
    for name, m in rows:
        lines.append(
            f"{name:44} {fmt(m['roc_auc']):>8} {fmt(m['pr_auc_no']):>10} {fmt(m['log_loss']):>9} "
            f"{fmt(m['brier']):>7} {fmt(m['accuracy']):>9}"
        )
    lines.append("calibration (test): predicted p(yes) bin, rows, mean predicted, observed yes rate")
    for b in metadata["metrics"]["calibration"]:
        lines.append(f"  {b['bin']}  {b['rows']:>6}  {b['predicted']:.3f}  {b['observed']:.3f}")
    return "\n".join(lines)


def evaluate_captures(folder: Path, classifier: str) -> int:
    """meetup-train --evaluate leave-one-capture-out: prints the judge's table; writes nothing."""
    captures = sorted(folder.glob("*.jsonl"))
    if len(captures) < 2:
        raise CommandError(
            f"leave-one-capture-out needs at least two *.jsonl captures in {folder}, found {len(captures)}",
            status=cli.USAGE,
        )
    settings = health.settings_for([])
    spark = build_spark(settings, "meetup-train-evaluate")
    spark.sparkContext.setLogLevel("WARN")
    log.info("leave one capture out: %s", ", ".join(p.name for p in captures))
    print(evaluation_report(leave_one_capture_out(spark, captures, classifier=classifier)))
    spark.stop()
    return 0


@cli.command("meetup-train", generations.GenerationError)
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("meetup-train", __doc__)
    parser.add_argument("--generation", help="tables to train on (default: the current generation)")
    parser.add_argument(
        "--test-from", type=cli.time_ms, metavar="TIME", help=f"RSVPs from then on are the test set: {cli.TIME_HELP}"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.25, help="without --test-from: the latest fraction is the test set"
    )
    parser.add_argument(
        "--classifier", default="auto", choices=["auto", *M.CLASSIFIERS],
        help="auto: fit each on the training period's earlier part, keep the lowest log loss on its latest part",
    )  # fmt: skip
    parser.add_argument("--no-promote", action="store_true", help="save the version without making it current")
    parser.add_argument(
        "--evaluate", choices=["leave-one-capture-out"],
        help="judge instead of training: fit on every capture of --captures but one, test on that one (ml/evaluate.py)",
    )  # fmt: skip
    parser.add_argument(
        "--captures", default=str(PROJECT_ROOT / "data" / "rsvps"), metavar="DIR",
        help="with --evaluate: a folder of JSONL captures (default: the shipped ones)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.evaluate:
        return evaluate_captures(Path(args.captures), args.classifier)
    settings = health.settings_for(["s3"])
    layout = generations.layout(settings, args.generation)
    spark = build_spark(settings, "meetup-train")
    spark.sparkContext.setLogLevel("WARN")
    log.info(f"training on {layout.root}/{layout.generation}")
    metadata = train(
        spark,
        settings,
        layout,
        test_from_ms=args.test_from,
        test_fraction=args.test_fraction,
        classifier=args.classifier,
        promote=not args.no_promote,
    )
    print(report(metadata))
    state = "current" if not args.no_promote else "saved, not promoted"
    where = Registry(settings).path(metadata["version"])
    log.info(f"{metadata['version']} ({state}) in {metadata['train_seconds']} s: {where}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
