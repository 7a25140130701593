"""Bronze job: one streaming query per stream topic, Kafka -> append-only Delta, exactly once.

Exactly once because the Delta sink commits each micro-batch with the query's checkpointed batch id:
a batch replayed after a crash is recognised by Delta and not written twice.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import Settings
from common.spark import Trigger
from lakehouse import catalogue
from lakehouse.delta_io import ensure_tables
from lakehouse.layout import Layout
from pipelines.bronze.schemas import BRONZE_SCHEMA
from pipelines.bronze.transforms import to_bronze


def kafka_source_options(settings: Settings, topic: str, starting_offsets: str = "earliest") -> dict[str, str]:
    options = {
        "kafka.bootstrap.servers": settings.kafka.bootstrap_servers,
        "subscribe": topic,
        "startingOffsets": starting_offsets,
        # Data deleted by retention before we read it is an error to surface, never a silent skip.
        "failOnDataLoss": "true",
    }
    # Security settings for the real deployments (SASL/SSL), translated for the Java client.
    options.update({f"kafka.{key}": value for key, value in settings.kafka.java_config().items()})
    return options


def ensure_bronze_table(spark: SparkSession, layout: Layout, stream: str) -> None:
    """Create the stream's bronze table up front, so silver can start streaming from it before any data."""
    ensure_tables(spark, layout, {catalogue.bronze(stream): BRONZE_SCHEMA}, partition_by=("ingest_date",))


def start_bronze(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    stream: str,
    *,
    trigger: Trigger,
    max_offsets_per_trigger: int | None = None,
    starting_offsets: str = "earliest",
) -> StreamingQuery:
    """starting_offsets applies only to a new checkpoint: a restarted query goes on from its own."""
    path = layout.table(catalogue.table("bronze", stream))
    ensure_bronze_table(spark, layout, stream)
    topic = settings.kafka.topic(stream)
    reader = spark.readStream.format("kafka").options(**kafka_source_options(settings, topic, starting_offsets))
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return (
        to_bronze(reader.load())
        .writeStream.format("delta")
        .queryName(f"bronze-{stream}")
        .outputMode("append")
        .option("checkpointLocation", layout.checkpoint(f"bronze-{stream}"))
        .trigger(**trigger)
        .start(path)
    )


def read_bronze_stream(
    spark: SparkSession,
    layout: Layout,
    stream: str,
    max_files_per_trigger: int | None = None,
    max_bytes_per_trigger: int | None = None,
) -> DataFrame:
    """A bronze table as a streaming source (silver and gold read it), bounded per batch by files or bytes.

    Bytes bound a catching-up batch's memory whatever the files hold; a file count does not, and it also
    caps a live stream's throughput (a bronze commit has one file per Kafka partition, so 3 files a batch
    took one bronze batch per silver batch, and silver fell behind whenever its batch was slower).
    """
    reader = spark.readStream.format("delta")
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", str(max_files_per_trigger))
    if max_bytes_per_trigger:
        reader = reader.option("maxBytesPerTrigger", str(max_bytes_per_trigger))
    return reader.load(layout.table(catalogue.table("bronze", stream)))
