"""Helpers for tests that run the chain: isolated settings, available-now runs, table contents."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psycopg2
from psycopg2 import sql
from pyspark.sql import functions as F

from common.settings import PROJECT_ROOT, Settings
from lakehouse import catalogue
from lakehouse.aggregates import BY_NAME
from lakehouse.layout import Layout
from pipelines.chain import run_chain
from pipelines.gold.transforms import count_view
from pipelines.stages import ChainOptions
from stack import kafka as kafka_service
from tests.expected import COLUMNS, expected_tables

MS_COLUMNS = {"mtime_ms": "mtime", "time_ms": "time"}


def isolated(stack: Settings, name: str) -> Settings:
    """Settings whose topics, lakehouse prefix and PostgreSQL schema belong to this test alone."""
    settings = replace(
        stack,
        kafka=replace(stack.kafka, topic_prefix=name),
        postgres=replace(stack.postgres, schema=name),
        lakehouse_root=stack.path(name),
    )
    kafka_service.ensure_topics(settings)
    return settings


def silver_rows(spark, layout: Layout, table: str) -> set[tuple]:
    columns = [F.unix_millis(MS_COLUMNS[c]).alias(c) if c in MS_COLUMNS else F.col(c) for c in COLUMNS[table]]
    return {
        tuple(row)
        for row in spark.read.format("delta")
        .load(layout.table(catalogue.table("silver", table)))
        .select(*columns)
        .collect()
    }


def gold_table(spark, layout: Layout, name: str):
    """A gold table; a count aggregate (e.g. `groups_by_minute`) is its rows of the long `counts` table."""
    if name in BY_NAME:
        return count_view(spark.read.format("delta").load(layout.table(catalogue.GOLD_COUNTS)), name)
    return spark.read.format("delta").load(layout.table(catalogue.table("gold", name)))


def postgres_rows(settings: Settings, table: str) -> set[tuple]:
    columns = [
        sql.SQL("(extract(epoch FROM {}) * 1000)::bigint").format(sql.Identifier(MS_COLUMNS[c]))
        if c in MS_COLUMNS
        else sql.Identifier(c)
        for c in COLUMNS[table]
    ]
    conn = psycopg2.connect(settings.postgres.dsn(), password=settings.postgres.password_for())
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(columns), sql.Identifier(settings.postgres.schema, table)
                )
            )
            return set(cur.fetchall())
    finally:
        conn.close()


def own_stack_dir(stack: Settings, tmp_path_factory, name: str) -> Path:
    """A stack directory for a service the test starts itself (its state, logs, pid files), on the jars
    the local stack already resolved."""
    stack_dir = tmp_path_factory.mktemp(name)
    (stack_dir / "jars").symlink_to(stack.stack_dir / "jars")
    return stack_dir


def process_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process (the chain, the demo) these isolated settings."""
    return settings.child_env(SPARK_MASTER="local[2]", SPARK_SHUFFLE_PARTITIONS="2", SPARK_UI_ENABLED="false")


# The slow path's cadence in the tests that run the chain as a process: shorter than the chain's defaults
# (pipelines/cadence.py, minutes), so that silver commits within a test's deadlines; a test's own args win.
TEST_CADENCE = ("--slow-interval", "60 seconds", "--bronze-interval", "10 seconds", "--snapshot-every", "120")


def chain_process(settings: Settings, *args: str, stderr=None) -> subprocess.Popen:
    """`meetup-chain` as its own process (its own JVM) on these settings, in a new session for killpg."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.chain", "--streams", "rsvps", *TEST_CADENCE, *args],
        cwd=PROJECT_ROOT, env=process_env(settings), stdout=subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL,
        text=True, start_new_session=True,
    )  # fmt: skip


def assert_every_table_exact(spark, settings: Settings, layout: Layout, records) -> None:
    """Silver in Delta and in PostgreSQL, bronze (each Kafka record once) and gold, against an independent
    computation from the records and their Kafka coordinates."""
    from tests.integration.test_gold import assert_gold_exact

    expected = expected_tables(records)
    for table in COLUMNS:
        assert silver_rows(spark, layout, table) == expected[table], table
        assert postgres_rows(settings, table) == expected[table], table
    bronze = spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS))
    assert bronze.count() == bronze.select("partition", "offset").distinct().count() == len(records)
    assert_gold_exact(spark, layout, records)


WITHOUT_SCORING = ("bronze", "silver", "gold")


def run_available_now(spark, settings: Settings, **options) -> Layout:
    """The chain over what Kafka holds, then back. Without the scoring stage unless `stages` names it:
    only the tests of scoring need it (and the shared real-captures run, which tests every query)."""
    options.setdefault("stages", WITHOUT_SCORING)
    layout = Layout.from_settings(settings)
    run_chain(
        spark,
        settings,
        layout=layout,
        options=ChainOptions(streams=("rsvps",), available_now=True, progress_every=3600, **options),
    )
    return layout


def s3_keys(settings: Settings, relative_prefix: str) -> list[str]:
    """Object keys under the lakehouse root + relative_prefix (the objects themselves, not Delta's view)."""
    from urllib.parse import urlparse

    from common import health

    root = urlparse(settings.lakehouse_root)
    prefix = f"{root.path.strip('/')}/{relative_prefix}"
    paginator = health.s3_client(settings).get_paginator("list_objects_v2")
    return [
        obj["Key"] for page in paginator.paginate(Bucket=root.netloc, Prefix=prefix) for obj in page.get("Contents", [])
    ]
