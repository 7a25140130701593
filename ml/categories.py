"""Categories of groups, derived from their topics: MLlib k-means on topic sets, named by their topics.

meetup-categories                  # fit on silver groups of the current generation, save a new version
meetup-categories --k 8 10 12 16   # the candidate numbers of categories

RSVPs carry topics, not categories (the old API's categories are gone from the stream). A group is its
set of topics (silver `group_topics`), as a binary bag of words over the topics at least 3 groups share.
K-means with cosine distance clusters the groups; k is chosen among the candidates by the silhouette
(cosine), the stated metric, reported for every k. Each category is named by its three most
characteristic topics (frequent in it and rarer elsewhere). Groups with no shared topic are "other".

The fitted pipeline and the names are saved like the yes/no model (ml/registry.py, `group_categories`),
so gold assigns any group, new ones included, when it ranks category popularity (`category_trends`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.ml import PipelineModel
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import CountVectorizer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import cli, health
from common.cli import CommandError
from common.settings import Settings
from common.spark import build_spark
from lakehouse import catalogue, generations
from lakehouse.layout import Layout
from ml.registry import CATEGORY_MODEL, NoModelError, Registry
from ml.train import table_version

log = logging.getLogger(__name__)

DEFAULT_K = (6, 8, 10, 12, 16)
MIN_GROUPS_PER_TOPIC = 3
OTHER = "other"


def group_topic_sets(group_topics_df: DataFrame) -> DataFrame:
    """silver group_topics (group_id, urlkey) -> (group_id, topics: array of urlkeys)."""
    return group_topics_df.groupBy("group_id").agg(F.array_sort(F.collect_set("urlkey")).alias("topics"))


def with_vectors_present(featurized_df: DataFrame) -> DataFrame:
    """Keep groups with at least one vocabulary topic: cosine distance needs a non-zero vector."""
    return featurized_df.filter(F.size(F.filter(vector_to_array(F.col("topic_vector")), lambda v: v > 0)) > 0)


def fit_categories(topic_sets_df: DataFrame, ks: tuple[int, ...] = DEFAULT_K) -> tuple[PipelineModel, dict[str, Any]]:
    """Fit the vocabulary, then k-means for each k; keep the k of the best silhouette."""
    vocabulary = CountVectorizer(
        inputCol="topics", outputCol="topic_vector", binary=True, minDF=float(MIN_GROUPS_PER_TOPIC)
    ).fit(topic_sets_df)
    vectors = with_vectors_present(vocabulary.transform(topic_sets_df)).persist()
    try:
        evaluator = ClusteringEvaluator(featuresCol="topic_vector", distanceMeasure="cosine")
        silhouettes, fitted = {}, {}
        usable = [k for k in ks if k < vectors.count()]
        for k in usable:
            kmeans = KMeans(
                featuresCol="topic_vector", predictionCol="category_id", k=k, distanceMeasure="cosine", seed=11
            )
            fitted[k] = kmeans.fit(vectors)
            silhouettes[k] = evaluator.setPredictionCol("category_id").evaluate(fitted[k].transform(vectors))
        if not silhouettes:
            raise ValueError(f"too few groups with shared topics ({vectors.count()}) to cluster")
        best = max(silhouettes, key=lambda k: silhouettes[k])
        model = PipelineModel(stages=[vocabulary, fitted[best]])
        summary = {
            "k": best,
            "silhouette_cosine": silhouettes,
            "vocabulary_size": len(vocabulary.vocabulary),
            "groups_clustered": vectors.count(),
        }
        return model, summary
    finally:
        vectors.unpersist()


def category_names(assigned_df: DataFrame, topic_names_df: DataFrame, top: int = 3) -> dict[int, str]:
    """Name each category by its `top` topics ranked by share-in-category x lift over all groups."""
    exploded = assigned_df.select("group_id", "category_id", F.explode("topics").alias("urlkey"))
    groups_total = assigned_df.count()
    per_category = assigned_df.groupBy("category_id").agg(F.count("*").alias("groups"))
    overall = exploded.groupBy("urlkey").agg(F.count("*").alias("all_groups"))
    scored = (
        exploded.groupBy("category_id", "urlkey")
        .agg(F.count("*").alias("in_category"))
        .join(per_category, "category_id")
        .join(overall, "urlkey")
        .withColumn("share", F.col("in_category") / F.col("groups"))
        .withColumn("score", F.col("share") * F.col("share") / (F.col("all_groups") / F.lit(groups_total)))
        .join(topic_names_df, "urlkey", "left")
    )
    names: dict[int, list[str]] = {}
    for row in scored.orderBy("category_id", F.col("score").desc(), "urlkey").collect():
        chosen = names.setdefault(row["category_id"], [])
        if len(chosen) < top:
            chosen.append(row["topic_name"] or row["urlkey"])
    return {category: " / ".join(topics) for category, topics in names.items()}


def assign(model: PipelineModel, names: dict[str, str], topic_sets_df: DataFrame) -> DataFrame:
    """(group_id, topics) -> (group_id, category_id, category): groups without a shared topic are OTHER."""
    featurized = model.stages[0].transform(topic_sets_df)
    clustered = model.stages[1].transform(with_vectors_present(featurized)).select("group_id", "category_id")
    mapping = F.create_map(*(x for k, v in names.items() for x in (F.lit(int(k)), F.lit(v))))
    return (
        topic_sets_df.select("group_id")
        .join(clustered, "group_id", "left")
        .withColumn("category", F.coalesce(mapping[F.col("category_id")], F.lit(OTHER)))
        .withColumn("category_id", F.coalesce(F.col("category_id"), F.lit(-1)))
    )


def train_categories(
    spark: SparkSession, settings: Settings, layout: Layout, ks: tuple[int, ...] = DEFAULT_K
) -> dict[str, Any]:
    started = time.perf_counter()
    paths = {name: layout.table(catalogue.table("silver", name)) for name in ("group_topics", "topics")}
    for path in paths.values():
        if not DeltaTable.isDeltaTable(spark, path):
            raise CommandError(f"no table at {path}: run the chain first")
    versions = {f"silver.{n}": table_version(spark, p) for n, p in paths.items()}

    def read(name: str) -> DataFrame:
        return spark.read.format("delta").option("versionAsOf", versions[f"silver.{name}"]).load(paths[name])

    topic_sets = group_topic_sets(read("group_topics")).persist()
    model, summary = fit_categories(topic_sets, ks)
    clustered = model.transform(with_vectors_present(model.stages[0].transform(topic_sets)).drop("topic_vector"))
    names = category_names(
        clustered.select("group_id", "category_id", "topics"), read("topics").select("urlkey", "topic_name")
    )
    sizes = {r["category_id"]: r["count"] for r in clustered.groupBy("category_id").count().collect()}
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **summary,
        "metric": "silhouette with cosine distance (-1..1; higher: groups closer to their own category)",
        "names": {str(k): v for k, v in sorted(names.items())},
        "sizes": {str(k): v for k, v in sorted(sizes.items())},
        "groups": topic_sets.count(),
        "generation": layout.generation,
        "table_versions": versions,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    topic_sets.unpersist()
    metadata["version"] = Registry(settings, CATEGORY_MODEL).save(model, metadata)
    return metadata


def load_assigner(settings: Settings) -> tuple[str, Callable[[DataFrame], DataFrame]] | None:
    """(version, function topic_sets_df -> assignment), or None when no categories were trained."""
    registry = Registry(settings, CATEGORY_MODEL)
    try:
        version, model = registry.load()
    except NoModelError:
        return None
    names = registry.metadata(version)["names"]
    return version, lambda topic_sets_df: assign(model, names, topic_sets_df)


@cli.command("meetup-categories", generations.GenerationError)
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("meetup-categories", __doc__)
    parser.add_argument("--generation", help="silver tables to cluster (default: the current generation)")
    parser.add_argument("--k", type=int, nargs="+", default=list(DEFAULT_K), help="candidate numbers of categories")
    args = parser.parse_args(argv)
    settings = health.settings_for(["s3"])
    layout = generations.layout(settings, args.generation)
    spark = build_spark(settings, "meetup-categories")
    spark.sparkContext.setLogLevel("WARN")
    metadata = train_categories(spark, settings, layout, tuple(args.k))
    scores = ", ".join(f"k={k}: {s:.3f}" for k, s in metadata["silhouette_cosine"].items())
    clustered = f"{metadata['groups_clustered']} of {metadata['groups']} groups clustered"
    print(f"meetup-categories: {clustered}; silhouette {scores}")
    for category, name in metadata["names"].items():
        print(f"  {category:>3}  {metadata['sizes'][category]:>5} groups  {name}")
    log.info("%s (k=%s) in %s s", metadata["version"], metadata["k"], metadata["train_seconds"])
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
