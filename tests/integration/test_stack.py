"""The foundation against the real services: Kafka -> Spark -> Delta on S3A, PostgreSQL over JDBC."""

from __future__ import annotations

import hashlib
from datetime import datetime

import psycopg2
import pytest
from chispa import assert_df_equality
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from pyspark.sql import functions as F

from common import health
from common.settings import Settings

pytestmark = pytest.mark.integration


def _create_topic(settings: Settings, name: str, partitions: int = 3) -> None:
    admin = health.kafka_admin(settings)
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=15)


def test_spark_reads_exactly_what_was_produced_to_kafka(stack, spark, unique):
    topic = f"{unique}.kafka"
    _create_topic(stack, topic)
    sent = {f"key-{i % 7}".encode(): [] for i in range(7)}
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers, "enable.idempotence": True})
    for i in range(200):
        key = f"key-{i % 7}".encode()
        value = f'{{"n":{i},"s":"caf\\u00e9 \\/ {i}"}}'.encode()
        producer.produce(topic, key=key, value=value)
        sent[key].append(value)
    assert producer.flush(15) == 0

    rows = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", stack.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select("key", "value", "partition", "offset")
        .collect()
    )

    received: dict[bytes, list[tuple[int, int, bytes]]] = {}
    for row in rows:
        received.setdefault(bytes(row.key), []).append((row.partition, row.offset, bytes(row.value)))
    assert set(received) == set(sent)
    for key, versions in received.items():
        assert len({partition for partition, _, _ in versions}) == 1, "one key must stay in one partition"
        assert [value for _, _, value in sorted(versions)] == sent[key], "per-key order and bytes preserved"


def test_kafka_dataframe_round_trips_through_delta_on_s3a(stack, spark, unique):
    topic = f"{unique}.delta"
    _create_topic(stack, topic, partitions=2)
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers})
    for i in range(50):
        producer.produce(topic, key=str(i).encode(), value=("é" * i).encode())
    assert producer.flush(15) == 0
    kafka_df = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", stack.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .withColumn("ingest_date", F.to_date("timestamp"))
    )
    path = stack.path("foundation", unique)
    assert path.startswith("s3a://")

    kafka_df.write.format("delta").partitionBy("ingest_date").save(path)
    back_df = spark.read.format("delta").load(path)

    assert back_df.count() == 50
    assert_df_equality(back_df.select(kafka_df.columns), kafka_df, ignore_row_order=True, ignore_nullable=True)
    listed = health.s3_client(stack).list_objects_v2(Bucket=stack.bucket, Prefix=path.split("/", 3)[3])
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any("/_delta_log/00000000000000000000.json" in key for key in keys)
    assert any(key.endswith(".parquet") for key in keys)


def test_s3a_multipart_upload_rename_list_and_delete_work_on_the_object_store(stack, spark, unique):
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    conf = jvm.org.apache.hadoop.conf.Configuration(conf)
    # A private FileSystem instance with the smallest part size S3 allows, so 12 MB needs 3 parts.
    conf.set("fs.s3a.impl.disable.cache", "true")
    conf.set("fs.s3a.multipart.size", "5M")
    conf.set("fs.s3a.multipart.threshold", "5M")
    base = stack.path("foundation", unique, "fs")
    source = jvm.org.apache.hadoop.fs.Path(f"{base}/big.bin")
    fs = source.getFileSystem(conf)

    payload = bytes(range(256)) * (12 * 1024 * 1024 // 256)
    stream = fs.create(source, True)
    stream.write(bytearray(payload))
    stream.close()

    s3 = health.s3_client(stack)
    source_key = f"{base.split('/', 3)[3]}/big.bin"
    head = s3.head_object(Bucket=stack.bucket, Key=source_key)
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"').endswith("-3"), f"expected a 3-part multipart ETag, got {head['ETag']}"

    target = jvm.org.apache.hadoop.fs.Path(f"{base}/renamed.bin")
    assert fs.rename(source, target)
    assert not fs.exists(source)
    listed = [status.getPath().getName() for status in fs.listStatus(jvm.org.apache.hadoop.fs.Path(base))]
    assert listed == ["renamed.bin"]
    body = s3.get_object(Bucket=stack.bucket, Key=source_key.replace("big.bin", "renamed.bin"))["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()

    assert fs.delete(jvm.org.apache.hadoop.fs.Path(base), True)
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=base.split("/", 3)[3]).get("KeyCount", 0) == 0
    fs.close()


def _jdbc(stack: Settings, *, reader: bool = False) -> dict[str, str]:
    pg = stack.postgres
    return {
        "url": pg.jdbc_url,
        "user": pg.reader_user if reader else pg.user,
        "password": pg.password_for(reader=reader),
        "driver": "org.postgresql.Driver",
    }


def test_postgres_table_round_trips_over_jdbc(stack, spark, unique):
    # JDBC reads every column back as nullable, so the expected schema says so too.
    schema = "rsvp_id long, response string, mtime timestamp"
    expected_df = spark.createDataFrame(
        [
            (1, "yes", datetime(2021, 9, 2, 12, 26, 1, 250000)),
            (2, "no", datetime(1970, 1, 1)),
            (3, None, None),
        ],
        schema,
    )
    options = _jdbc(stack)

    expected_df.write.format("jdbc").options(**options, dbtable=f"meetup.{unique}").save()
    back_df = spark.read.format("jdbc").options(**options, dbtable=f"meetup.{unique}").load()

    # JDBC attaches column metadata (scale, signedness) that is not part of the data.
    assert_df_equality(back_df, expected_df, ignore_row_order=True, ignore_metadata=True)


def test_read_only_role_can_read_but_not_write(stack, spark, unique):
    pg = stack.postgres
    writer = psycopg2.connect(pg.dsn(), password=pg.password_for())
    with writer, writer.cursor() as cur:
        cur.execute(f"CREATE TABLE meetup.{unique} (id bigint PRIMARY KEY)")
        cur.execute(f"INSERT INTO meetup.{unique} VALUES (1), (2)")
    writer.close()

    reader = psycopg2.connect(pg.dsn(reader=True), password=pg.password_for(reader=True))
    try:
        with reader.cursor() as cur:
            cur.execute(f"SELECT id FROM meetup.{unique} ORDER BY id")
            assert cur.fetchall() == [(1,), (2,)]
        reader.rollback()
        for statement in (
            f"INSERT INTO meetup.{unique} VALUES (3)",
            f"DELETE FROM meetup.{unique}",
            f"CREATE TABLE meetup.{unique}_x (id int)",
        ):
            with pytest.raises(psycopg2.Error) as raised, reader.cursor() as cur:
                cur.execute(statement)
            assert raised.value.pgcode in ("25006", "42501"), statement  # read-only txn / no privilege
            reader.rollback()
        with reader.cursor() as cur:
            cur.execute("SET default_transaction_read_only = off")
        reader.commit()
        with pytest.raises(psycopg2.Error) as raised, reader.cursor() as cur:
            cur.execute(f"INSERT INTO meetup.{unique} VALUES (3)")
        assert raised.value.pgcode == "42501", "even out of read-only mode the role has no INSERT privilege"
    finally:
        reader.close()

    df = spark.createDataFrame([(9,)], "id long")
    with pytest.raises(Exception, match="permission denied|read-only"):
        df.write.format("jdbc").options(**_jdbc(stack, reader=True), dbtable=f"meetup.{unique}").mode("append").save()
