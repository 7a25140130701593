"""The yes/no classifier: the MLlib pipeline, its candidates, and how a model and its baselines are judged.

The label is the RSVP's final answer (1.0 = yes); the features are those of its first message
(ml/features.py). Every metric is reported beside two baselines fitted on the same training rows:
- majority: every RSVP gets the training yes rate;
- one rule (OneR): the single bucketed feature whose per-bucket yes rates fit the training rows best.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Estimator, Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import (
    Classifier,
    GBTClassifier,
    LogisticRegression,
    RandomForestClassifier,
)
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import CountVectorizer, CountVectorizerModel, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common.spark import one_row
from ml.features import NUMERIC_FEATURES, TOKEN_FEATURES

log = logging.getLogger(__name__)

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] for the log loss
CALIBRATION_BINS = 10
CURVE_STEPS = 50


# the bags of words: their input column -> the pipeline's vector, and what an importance calls a slot of it.
# The model uses ml.features.TOKEN_FEATURES: the words of the names did not help across eras
# (bench/ml_features.py).
BAGS = {"topics": "topic_vector", "name_words": "name_vector"}
SLOT_NAMES = {"topic_vector": "topic", "name_vector": "word"}
MIN_DF = 20.0  # a bag keeps the words (topics) at least this many training RSVPs share

CLASSIFIERS = ("logistic_regression", "gradient_boosted_trees", "random_forest")


def classifier(name: str) -> Classifier[Any]:
    """One of the candidates compared on the validation period (see ml/train.py).

    All are strongly regularised: trained on the 2015 capture and tested on 2021, weaker settings
    (regParam 0.01, trees of depth 4 x 60, topics seen 5 times) fitted 2015 closely and lost to the
    one-rule baseline on log loss. The logistic regression is a lasso (L1): most of the country and
    topic slots get a zero weight, which an L2 penalty (0.1 or 0.3) left in and paid for in log loss.
    """
    if name == "logistic_regression":
        return LogisticRegression(maxIter=200, regParam=0.02, elasticNetParam=1.0)
    if name == "gradient_boosted_trees":
        return GBTClassifier(maxIter=30, maxDepth=3, minInstancesPerNode=20, seed=7)
    if name == "random_forest":
        return RandomForestClassifier(numTrees=100, maxDepth=6, minInstancesPerNode=10, seed=7)
    raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")


def build_pipeline(
    classifier: Classifier[Any], numeric: tuple[str, ...] = NUMERIC_FEATURES, bags: tuple[str, ...] = TOKEN_FEATURES
) -> Pipeline:
    """Country one-hot (unseen countries share one slot), topics (and, when asked, the names' words) as binary
    bags of words (each word kept when at least MIN_DF training RSVPs share it), then the classifier.
    `numeric` and `bags` choose a subset of the features, to judge what each adds (bench/ml_features.py)."""
    stages: list[Estimator[Any] | Transformer] = [
        StringIndexer(inputCol="country", outputCol="country_index", handleInvalid="keep"),
        OneHotEncoder(inputCol="country_index", outputCol="country_vector", handleInvalid="keep"),
        *(CountVectorizer(inputCol=bag, outputCol=BAGS[bag], binary=True, minDF=MIN_DF, vocabSize=400) for bag in bags),
        VectorAssembler(
            inputCols=[*numeric, "country_vector", *(BAGS[bag] for bag in bags)],
            outputCol="features",
            handleInvalid="keep",
        ),  # fmt: skip
        classifier.setFeaturesCol("features").setLabelCol("label"),
    ]
    return Pipeline(stages=stages)


def fit(
    name: str, train_df: DataFrame, numeric: tuple[str, ...] = NUMERIC_FEATURES, bags: tuple[str, ...] = TOKEN_FEATURES
) -> PipelineModel:
    """The pipeline with classifier `name`, fitted on train_df. A bag none of whose words MIN_DF training RSVPs
    share is left out: MLlib refuses an empty vocabulary, and a small lakehouse (or a few synthetic RSVPs)
    may have no common word in its names."""
    kept = tuple(bag for bag in bags if has_common_word(train_df, bag))
    return build_pipeline(classifier(name), numeric, kept).fit(train_df)


def has_common_word(df: DataFrame, bag: str) -> bool:
    words = df.select(F.explode(F.array_distinct(bag)).alias("word")).groupBy("word").count()
    return not words.filter(F.col("count") >= MIN_DF).isEmpty()


def with_label(features_df: DataFrame, final_answers_df: DataFrame) -> DataFrame:
    """Joins each RSVP's final answer (rsvp_id, response) as `label`: 1.0 for yes, 0.0 for no."""
    answers = final_answers_df.select("rsvp_id", (F.col("response") == "yes").cast("double").alias("label"))
    return features_df.join(answers, "rsvp_id")


def probability_yes(predictions_df: DataFrame) -> Column:
    return vector_to_array(predictions_df["probability"])[1]


def predict(model: PipelineModel, features_df: DataFrame) -> DataFrame:
    """Adds `p_yes` and `predicted` ("yes" / "no") to the feature rows."""
    scored = model.transform(features_df)
    return scored.withColumn("p_yes", probability_yes(scored)).withColumn(
        "predicted", F.when(F.col("p_yes") >= 0.5, "yes").otherwise("no")
    )


def time_split(df: DataFrame, *, test_from_ms: int | None, test_fraction: float) -> tuple[DataFrame, DataFrame, int]:
    """(earlier, later, cut): later = the RSVPs whose first message has mtime >= cut."""
    cut = test_from_ms
    if cut is None:
        cut = int(df.approxQuantile("mtime", [1 - test_fraction], 0.0005)[0])
    return df.filter(F.col("mtime") < cut), df.filter(F.col("mtime") >= cut), cut


def choose_classifier(
    train_df: DataFrame,
    classifier: str = "auto",
    validation_fraction: float = 0.2,
    features: dict[str, Any] | None = None,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the classifier to fit, the candidates' validation scores). "auto": each candidate is fitted on the
    training period's earlier part and the lowest log loss on its latest `validation_fraction` wins."""
    if classifier != "auto":
        return classifier, {}
    comparison: dict[str, dict[str, Any]] = {}
    fit_df, validation_df, _ = time_split(train_df, test_from_ms=None, test_fraction=validation_fraction)
    for name in CLASSIFIERS:
        t0 = time.perf_counter()
        fitted = fit(name, fit_df, **(features or {}))
        scores = metrics(predict(fitted, validation_df))
        comparison[name] = {k: scores[k] for k in ("roc_auc", "pr_auc_no", "log_loss", "brier")}
        comparison[name]["fit_seconds"] = round(time.perf_counter() - t0, 1)
        log.info(f"validation {name}: ROC AUC {scores['roc_auc']:.3f}, log loss {scores['log_loss']:.3f}")
    return min(comparison, key=lambda n: comparison[n]["log_loss"]), comparison


# ---- metrics ---------------------------------------------------------------------------------------


def metrics(scored_df: DataFrame) -> dict[str, Any]:
    """ROC AUC, PR AUC for the "no" class, log loss, Brier score, accuracy and a calibration table.

    scored_df: (label, p_yes). Curves (ROC, PR for "no") are kept as points for charts.
    """
    df = scored_df.select("label", F.least(F.greatest("p_yes", F.lit(EPS)), F.lit(1 - EPS)).alias("p")).persist()
    try:
        totals = one_row(
            df.agg(
                F.count("*").alias("n"),
                F.avg("label").alias("yes_rate"),
                F.avg(-(F.col("label") * F.log("p") + (1 - F.col("label")) * F.log(1 - F.col("p")))).alias("log_loss"),
                F.avg((F.col("p") - F.col("label")) ** 2).alias("brier"),
                F.avg(((F.col("p") >= 0.5).cast("double") == F.col("label")).cast("double")).alias("accuracy"),
            )
        )
        both_classes = 0 < totals["yes_rate"] < 1
        roc = BinaryClassificationEvaluator(rawPredictionCol="p", labelCol="label", metricName="areaUnderROC")
        pr_no = BinaryClassificationEvaluator(rawPredictionCol="p_no", labelCol="is_no", metricName="areaUnderPR")
        as_no = df.select((1 - F.col("label")).alias("is_no"), (1 - F.col("p")).alias("p_no"))
        result = {
            "rows": totals["n"],
            "yes_rate": totals["yes_rate"],
            "roc_auc": roc.evaluate(df) if both_classes else None,
            "pr_auc_no": pr_no.evaluate(as_no) if both_classes else None,
            "no_rate": 1 - totals["yes_rate"],  # PR AUC of a random ranking, for comparison
            "log_loss": totals["log_loss"],
            "brier": totals["brier"],
            "accuracy": totals["accuracy"],
            "calibration": calibration(df),
        }
        result.update(curves(df))
        return result
    finally:
        df.unpersist()


def calibration(df: DataFrame) -> list[dict[str, Any]]:
    """Ten bins of predicted p(yes): rows, mean prediction, observed yes rate."""
    bins = df.groupBy(F.least(F.floor(F.col("p") * CALIBRATION_BINS), F.lit(CALIBRATION_BINS - 1)).alias("bin")).agg(
        F.count("*").alias("rows"), F.avg("p").alias("predicted"), F.avg("label").alias("observed")
    )
    return [
        {
            "bin": f"{r['bin'] / CALIBRATION_BINS:.1f}-{(r['bin'] + 1) / CALIBRATION_BINS:.1f}",
            "rows": r["rows"],
            "predicted": r["predicted"],
            "observed": r["observed"],
        }
        for r in sorted(bins.collect(), key=lambda r: r["bin"])
    ]


def curves(df: DataFrame) -> dict[str, Any]:
    """ROC points (fpr, tpr) and PR points for "no" (recall, precision) at CURVE_STEPS thresholds."""
    counts = df.groupBy(F.round("p", 3).alias("p"), "label").count().collect()
    positives = sum(r["count"] for r in counts if r["label"] == 1.0)
    negatives = sum(r["count"] for r in counts if r["label"] == 0.0)
    roc, pr_no = [], []
    for step in range(CURVE_STEPS + 1):
        threshold = step / CURVE_STEPS
        tp = sum(r["count"] for r in counts if r["label"] == 1.0 and r["p"] >= threshold)
        fp = sum(r["count"] for r in counts if r["label"] == 0.0 and r["p"] >= threshold)
        roc.append(
            {
                "threshold": threshold,
                "fpr": fp / negatives if negatives else 0.0,
                "tpr": tp / positives if positives else 0.0,
            }
        )
        # "no" is predicted when p(yes) < threshold
        no_hits = negatives - fp
        no_called = no_hits + positives - tp
        pr_no.append(
            {
                "threshold": threshold,
                "recall": no_hits / negatives if negatives else 0.0,
                "precision": no_hits / no_called if no_called else 1.0,
            }
        )
    return {"roc_curve": roc, "pr_curve_no": pr_no}


# ---- baselines -------------------------------------------------------------------------------------


def rule_buckets() -> dict[str, Column]:
    """Single features bucketed for the one-rule baseline."""
    lead = F.col("lead_log_hours")
    return {
        "lead_time": F.when(F.col("lead_unknown") == 1, "unknown")
        .when(lead < 0, "past")
        .when(lead < math.log1p(3), "<3h")
        .when(lead < math.log1p(24), "<1d")
        .when(lead < math.log1p(168), "<7d")
        .otherwise(">=7d"),
        "member_history": F.when(F.col("member_no") > 0, "said no before")
        .when(F.col("member_yes") > 0, "only yes before")
        .otherwise("first seen"),
        "event_history": F.when(F.col("event_no") > F.col("event_yes"), "mostly no")
        .when(F.col("event_yes") > 0, "mostly yes")
        .otherwise("first seen"),
        "has_guests": F.col("has_guests").cast("string"),
        "country": F.coalesce(F.col("country"), F.lit("?")),
        "online": F.col("online").cast("string"),
    }


@dataclass
class Baseline:
    name: str
    rule: str | None
    rates: dict[str, float]
    default: float

    def apply(self, features_df: DataFrame) -> DataFrame:
        """Adds `p_yes` by this baseline."""
        if self.rule is None:
            return features_df.withColumn("p_yes", F.lit(self.default))
        mapping = F.create_map(*(x for k, v in self.rates.items() for x in (F.lit(k), F.lit(v))))
        return features_df.withColumn("p_yes", F.coalesce(mapping[rule_buckets()[self.rule]], F.lit(self.default)))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "rates": self.rates, "default": self.default}


def fit_baselines(train_df: DataFrame) -> list[Baseline]:
    """The majority baseline and the best one-rule baseline (lowest training log loss), from training rows."""
    train_df = train_df.persist()
    try:
        yes_rate = one_row(train_df.agg(F.avg("label")))[0]
        best: tuple[float, Baseline] | None = None
        for name, bucket in rule_buckets().items():
            grouped = train_df.groupBy(bucket.alias("b")).agg(F.count("*").alias("n"), F.sum("label").alias("yes"))
            # smoothed toward the overall rate, so a bucket of one RSVP does not predict 0 or 1
            rates = {r["b"]: (r["yes"] + 2 * yes_rate) / (r["n"] + 2) for r in grouped.collect()}
            candidate = Baseline("one rule", name, rates, yes_rate)
            loss = metrics(candidate.apply(train_df))["log_loss"]
            if best is None or loss < best[0]:
                best = (loss, candidate)
        assert best is not None, "rule_buckets() names at least one rule"
        return [Baseline("majority", None, {}, yes_rate), best[1]]
    finally:
        train_df.unpersist()


def importances(model: PipelineModel, sample_df: DataFrame) -> list[dict[str, Any]]:
    """Feature importances (trees) or absolute coefficients (logistic regression), named, largest first.

    Names come from the assembled vector's metadata, read off a transform of sample_df (a few rows).
    """
    attributes = model.transform(sample_df.limit(1)).schema["features"].metadata["ml_attr"]["attrs"]
    names = {a["idx"]: a["name"] for group in attributes.values() for a in group}
    vocabularies = {
        stage.getOutputCol(): stage.vocabulary for stage in model.stages if isinstance(stage, CountVectorizerModel)
    }
    for index, name in names.items():  # a bag of words names its slots by number only
        vector, _, slot = name.rpartition("_")
        if vector in vocabularies and slot.isdigit():
            names[index] = f"{SLOT_NAMES.get(vector, vector)}={vocabularies[vector][int(slot)]}"
    classifier: Any = model.stages[-1]  # a fitted model: trees have featureImportances, regressions coefficients
    if hasattr(classifier, "featureImportances"):
        weights, kind = classifier.featureImportances.toArray(), "importance"
    else:
        weights, kind = [abs(w) for w in classifier.coefficients.toArray()], "abs_coefficient"
    ranked = sorted(((names.get(i, f"#{i}"), float(w)) for i, w in enumerate(weights)), key=lambda kv: -kv[1])
    return [{"feature": name, kind: weight} for name, weight in ranked if weight > 0][:30]
