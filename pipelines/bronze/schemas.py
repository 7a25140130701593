"""Bronze: the Kafka record as it came, plus when we took it. Nothing parsed, nothing dropped."""

from pyspark.sql import types as T

BRONZE_SCHEMA = T.StructType(
    [
        T.StructField("value", T.BinaryType(), True),
        T.StructField("key", T.StringType(), True),
        T.StructField("topic", T.StringType(), False),
        T.StructField("partition", T.IntegerType(), False),
        T.StructField("offset", T.LongType(), False),
        T.StructField("kafka_timestamp", T.TimestampType(), False),
        T.StructField("ingest_time", T.TimestampType(), False),
        T.StructField("ingest_date", T.DateType(), False),
    ]
)
