"""Pure transforms from Spark's Kafka source rows to bronze rows."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def to_bronze(kafka_df: DataFrame) -> DataFrame:
    """Kafka source rows -> bronze rows. The date partition follows the Kafka timestamp, so a replay
    of the same offsets lands every record in the same partition it had the first time."""
    return kafka_df.select(
        F.col("value"),
        F.col("key").cast("string").alias("key"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.current_timestamp().alias("ingest_time"),
        F.to_date(F.col("timestamp")).alias("ingest_date"),
    )
