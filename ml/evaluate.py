"""A judge across eras: train on every shipped capture but one, test on that one, for each.

meetup-train --evaluate leave-one-capture-out                  # the captures in data/rsvps
meetup-train --evaluate leave-one-capture-out --captures DIR   # any folder of JSONL captures

Each capture is its own log: its features take their history from its own earlier lines (ml/features.py,
line order is arrival order) and its labels are its own final answers, so a held-out capture is scored
as the live stream would have scored it in its year. The held-out capture is judged by the model as it
comes (raw) and after online calibration (ml/calibration.py: the model's log-odds shifted block by block
by the capture's own answers as they arrive), beside two constants: the training captures' yes rate (the
majority baseline) and the capture's own yes rate (a constant that knows the answers' share).
Nothing is written: no model version, no table.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import validation
from lakehouse.schemas import RSVP_MESSAGE
from ml import calibration as C
from ml import features as X
from ml import model as M

log = logging.getLogger(__name__)

MIN_RSVPS_TO_JUDGE = 100  # a held-out capture smaller than this is scored, but its metrics are not a verdict


def capture_messages(spark: SparkSession, path: str) -> tuple[DataFrame, DataFrame]:
    """(valid messages, every line with its quarantine `reason` or null) of a JSONL capture; line order is
    the order of arrival."""
    raw = X.lines_as_messages(spark.read.text(path))
    checked = validation.with_reason(validation.with_parsed(raw, RSVP_MESSAGE), validation.rsvp_rules())
    return validation.filter_valid(checked).select("msg", *X.ARRIVAL), checked


def final_answers(messages_df: DataFrame) -> DataFrame:
    """(rsvp_id, response): each RSVP's newest answer among these messages."""
    newest = X.newest_states(messages_df)
    return newest.select("rsvp_id", F.when(F.col("yes"), "yes").otherwise("no").alias("response"))


def capture_examples(spark: SparkSession, path: str) -> tuple[DataFrame, DataFrame]:
    """(one labelled row per RSVP with its features and `ordinal`, the capture's valid messages)."""
    messages, _ = capture_messages(spark, path)
    messages = messages.persist()
    examples = C.ordinals(M.with_label(X.rsvp_features(messages), final_answers(messages)))
    return examples, messages


def judged(
    model: Any, examples_df: DataFrame, messages_df: DataFrame, version: str, settings: C.Blocks = C.DEFAULT
) -> tuple[DataFrame, dict[tuple[int, str], dict[str, float]]]:
    """The examples scored by `model` as (label, p_raw, p_yes = calibrated, shift), and the shifts fitted."""
    predicted = M.predict(model, examples_df).select(
        "rsvp_id", "label", "ordinal", *X.ARRIVAL, F.col("p_yes").alias("p_raw"), F.lit(version).alias("model_version")
    )
    with_logit = predicted.withColumn("logit", C.logit(F.col("p_raw")))
    calibrated, shifts = C.calibrate(with_logit, messages_df, settings)
    return calibrated.withColumn("p_yes", F.col("p_calibrated")), shifts


def scores_of(scored_df: DataFrame, training_yes_rate: float) -> dict[str, dict[str, Any]]:
    """ROC AUC, log loss and Brier of the raw and calibrated model and of the two constants."""
    labelled = scored_df.select("label", "p_raw", "p_yes").persist()
    try:
        own_rate = labelled.agg(F.avg("label")).first()[0]  # type: ignore[index]
        variants = {
            "model, raw": labelled.select("label", F.col("p_raw").alias("p_yes")),
            "model, calibrated online": labelled.select("label", "p_yes"),
            "training yes rate": labelled.select("label", F.lit(training_yes_rate).alias("p_yes")),
            "capture's own yes rate": labelled.select("label", F.lit(own_rate).alias("p_yes")),
        }
        return {name: M.metrics(df) for name, df in variants.items()}
    finally:
        labelled.unpersist()


def leave_one_capture_out(
    spark: SparkSession,
    captures: list[Path],
    *,
    classifier: str = "auto",
    settings: C.Blocks = C.DEFAULT,
    features: dict[str, Any] | None = None,
    held_out: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One result per capture: trained on all the others, tested on it (see the module's docstring).

    features: build_pipeline's `numeric` and `bags`, to judge a subset; held_out: only these captures' turns.
    """
    if len(captures) < 2:
        raise ValueError(f"leave-one-capture-out needs at least two captures, got {len(captures)}")
    data = {path.name: capture_examples(spark, str(path)) for path in captures}
    examples = {name: df.persist() for name, (df, _) in data.items()}
    results = []
    try:
        for held in captures:
            if held_out is not None and held.name not in held_out:
                continue
            started = time.perf_counter()
            others = [examples[p.name] for p in captures if p.name != held.name]
            train_df = others[0]
            for df in others[1:]:
                train_df = train_df.unionByName(df)
            train_df = train_df.persist()
            chosen, _ = M.choose_classifier(train_df, classifier, features=features)
            model = M.fit(chosen, train_df, **(features or {}))
            training_yes_rate = train_df.agg(F.avg("label")).first()[0]  # type: ignore[index]
            scored, shifts = judged(model, examples[held.name], data[held.name][1], "held-out", settings)
            scores = scores_of(scored, training_yes_rate)
            results.append(
                {
                    "held_out": held.name,
                    "trained_on": [p.name for p in captures if p.name != held.name],
                    "classifier": chosen,
                    "training_rsvps": train_df.count(),
                    "test_rsvps": scores["model, raw"]["rows"],
                    "test_yes_rate": scores["model, raw"]["yes_rate"],
                    "judged": scores["model, raw"]["rows"] >= MIN_RSVPS_TO_JUDGE,
                    "scores": {
                        name: {k: m[k] for k in ("roc_auc", "log_loss", "brier", "accuracy")}
                        for name, m in scores.items()
                    },
                    "calibration": {
                        "settings": settings.describe(),
                        "shifts": C.describe(shifts),
                        "table": scores["model, calibrated online"]["calibration"],
                    },
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            train_df.unpersist()
            log.info("held out %s: done in %.0f s", held.name, results[-1]["seconds"])
    finally:
        for df in [*examples.values(), *(messages for _, messages in data.values())]:
            df.unpersist()
    return results


def report(results: list[dict[str, Any]]) -> str:
    """The results as a table a person reads: per held-out capture, each scorer's ROC AUC, log loss, Brier,
    and the log loss as a share of the capture's own rate's."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        f"{'held-out capture':26} {'RSVPs':>6} {'yes':>5}  {'scorer':26} {'ROC AUC':>7} {'log loss':>8} "
        f"{'÷ own rate':>10} {'Brier':>6}"
    ]
    for result in results:
        own = result["scores"]["capture's own yes rate"]["log_loss"]
        first = True
        for name, m in result["scores"].items():
            head = (
                f"{result['held_out']:26} {result['test_rsvps']:>6} {result['test_yes_rate']:>5.0%}"
                if first
                else " " * 39
            )
            ratio = m["log_loss"] / own if own else None
            figures = f"{fmt(m['roc_auc']):>7} {fmt(m['log_loss']):>8} {fmt(ratio):>10} {fmt(m['brier']):>6}"
            lines.append(f"{head}  {name:26} {figures}")
            first = False
        if not result["judged"]:
            lines.append(" " * 41 + f"(fewer than {MIN_RSVPS_TO_JUDGE} RSVPs: shown, not a verdict)")
        lines.append(
            " " * 41 + f"trained on {', '.join(result['trained_on'])} ({result['training_rsvps']} RSVPs, "
            f"{result['classifier']}); shifts: "
            + ", ".join(f"{s['shift']:+.2f}" for s in result["calibration"]["shifts"])
        )
    return "\n".join(lines)
