"""The one SparkSession factory: Delta, Kafka, S3A and JDBC from jars resolved ahead of time.

`make jars` puts every jar Spark needs beyond pyspark's own into `.stack/jars/spark`; this factory
hands them to the JVM at launch, so no job downloads anything at start-up. Under `spark-submit`
the master, deploy mode and `--jars` given on the command line win (see `common.submit`).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pyspark.sql import DataFrame, Row, SparkSession

from common.settings import Settings

T = TypeVar("T")
# A streaming query's trigger, as DataStreamWriter.trigger's keyword: {"processingTime": "2 seconds"} or
# {"availableNow": True}.
Trigger = dict[str, Any]


class MissingJarsError(RuntimeError):
    """The pre-resolved jars are absent: `make jars` has not run."""


def spark_jars(jars_dir: Path) -> list[Path]:
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(jar.name.startswith("delta-spark_") for jar in jars):
        raise MissingJarsError(
            f"no Delta jar in {jars_dir} (SPARK_JARS_DIR); run `make jars` to resolve the Spark jars"
        )
    return jars


def under_spark_submit() -> bool:
    """True when spark-submit launched this Python process (it hands over its JVM gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


# The chain's queries share two cores. Its hot stages (Kafka -> bronze, gold and the PostgreSQL mirror) run
# in a pool that gets three task slots for every one of the slow stages' (silver's Delta tables, scoring,
# the snapshot tables), so a slow MERGE does not hold the hot path's next batch behind it.
HOT_POOL, SLOW_POOL = "hot", "slow"
POOL_WEIGHTS = {HOT_POOL: 3, SLOW_POOL: 1}


@functools.cache
def fair_scheduler_file() -> str:
    """An allocation file with the two pools (FAIR inside each), written once per process."""
    pools = "".join(
        f'<pool name="{name}"><schedulingMode>FAIR</schedulingMode><weight>{weight}</weight>'
        f"<minShare>0</minShare></pool>"
        for name, weight in POOL_WEIGHTS.items()
    )
    handle, path = tempfile.mkstemp(prefix="meetup-fairscheduler-", suffix=".xml")
    with os.fdopen(handle, "w") as out:
        out.write(f'<?xml version="1.0"?><allocations>{pools}</allocations>')
    return path


def use_pool(spark: SparkSession, pool: str) -> None:
    """Run the calling thread's Spark jobs in `pool`. Each thread sets its own: a foreachBatch function
    runs in a thread of its own, and threads it starts do not inherit the setting."""
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool)


class SparkThread(threading.Thread):
    """A daemon thread of background Spark work (the chain's snapshot rounds and vacuums) that a stop cuts
    short: its jobs run in a job group of its own, and `stop` cancels the job running instead of waiting for
    it. Under load a snapshot round took 97-224 s, and the chain's stop waited for it past meetup-demo's
    budget. The work must be safe to cut between any two jobs, as Delta commits are: a cut round leaves each
    table as its last commit left it, and the next run does the round again.

    Subclasses put their loop in `work`, and leave it when `stopped` is set or when a job fails after it."""

    def __init__(self, spark: SparkSession, name: str, pool: str | None = None):
        super().__init__(name=name, daemon=True)
        self.spark, self.pool = spark, pool
        self.stopped = threading.Event()
        self.job_group = f"{name}-{uuid.uuid4().hex[:8]}"

    def run(self) -> None:
        self.spark.sparkContext.setJobGroup(self.job_group, self.name)  # this thread's jobs, for cancelJobGroup
        if self.pool:
            use_pool(self.spark, self.pool)
        self.work()

    def work(self) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask the thread to stop and cancel its running job, without waiting (see `stop`)."""
        self.stopped.set()
        if self.is_alive():
            self.spark.sparkContext.cancelJobGroup(self.job_group)

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the thread: cancel its jobs until it has left its loop; False if it is still running after
        `timeout` seconds (a driver-side step, such as a Delta commit, is never cut)."""
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            self.request_stop()  # again and again: a cut step may be followed by another job
            self.join(timeout=0.5)
        self.stopped.set()  # also for a thread that has not started
        return not self.is_alive()


def in_pool(spark: SparkSession, pool: str, fn: Callable[..., T]) -> Callable[..., T]:
    """fn, run in `pool` from whatever thread calls it (for the MERGE threads a batch starts)."""

    def run(*args: Any, **kwargs: Any) -> T:
        use_pool(spark, pool)
        return fn(*args, **kwargs)

    return run


def s3a_credentials(settings: Settings) -> dict[str, str]:
    """S3A's keys from the settings; none when the settings have none, so that S3A's provider chain
    (environment, profile, instance role) finds them. Spark redacts these keys in its UI and logs
    (spark.redaction.regex matches secret, token and access.key)."""
    s3 = settings.s3
    key, secret = s3.access_key_id, s3.secret_access_key
    if not key or not secret:
        return {}
    conf = {"spark.hadoop.fs.s3a.access.key": key, "spark.hadoop.fs.s3a.secret.key": secret}
    if s3.session_token:
        conf["spark.hadoop.fs.s3a.session.token"] = s3.session_token
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
        )
    return conf


def one_row(df: DataFrame) -> Row:
    """The one row of an aggregate without grouping: `df.first()`, which cannot be None there."""
    row = df.first()
    if row is None:
        raise RuntimeError("an aggregate without grouping returned no row")
    return row


def lakehouse_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for Delta and S3A; S3A's credentials from the settings, else the AWS provider chain."""
    s3 = settings.s3
    return {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        # Delta rebuilds table state with this many tasks (default 50): far too many for small tables.
        "spark.databricks.delta.snapshotPartitions": str(settings.spark.shuffle_partitions),
        # Streams write small files every batch: each writer compacts them once a table has 50
        # (see pipelines/maintenance.py). Every new table gets the table property that turns it on, and a
        # table whose writers must not compact (gold's counts) says so in lakehouse/catalogue.py: the
        # session-wide `autoCompact.enabled` would override every table's property.
        "spark.databricks.delta.properties.defaults.autoOptimize.autoCompact": "true",
        "spark.databricks.delta.autoCompact.minNumFiles": "50",
        "spark.hadoop.fs.s3a.endpoint": s3.endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": s3.region,
        "spark.hadoop.fs.s3a.path.style.access": str(s3.path_style).lower(),
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(s3.secure).lower(),
        # Fail within seconds, naming the endpoint, instead of retrying for minutes when S3 is down.
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
        "spark.hadoop.fs.s3a.connection.establish.timeout": "15s",
        "spark.hadoop.fs.s3a.connection.timeout": "30s",
        **s3a_credentials(settings),
        # Delta reads its log through typed Datasets, whose (de)serializers are always compiled; the default
        # cache of 100 compiled classes is too small for the chain's many plans, so they were compiled again.
        "spark.sql.codegen.cache.maxEntries": "4000",
        # The optimizer's constraint propagation (inferring filters from every alias and predicate) took 5-7 s
        # of driver CPU on each plan of the model's features (ml/features.py: many columns derived from
        # others), every scoring batch and every training; without it 0.2-0.3 s. It only adds inferred
        # filters (IsNotNull and the like), which these small scans do not need (docs/benchmarks.md).
        "spark.sql.constraintPropagation.enabled": "false",
        # Gold keeps its state in the query's state store (pipelines/gold/state.py): RocksDB, whose commits
        # upload only the batch's changes (a changelog), not a snapshot of the whole state every batch.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": fair_scheduler_file(),
        **({} if settings.spark.codegen else CODEGEN_OFF),
    }


# Measured in the running chain (JFR, 20 RSVPs/s): half of its CPU went to generating and compiling Java
# code for each small batch's plans, which a few hundred rows never pay back. Interpreted evaluation is the
# default; SPARK_CODEGEN=true turns code generation back on (large batch jobs may prefer it).
CODEGEN_OFF = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}


# The driver's threads get a 64 MB stack (the JVM's default is 1 MB). When a stop interrupts a Python
# foreachBatch, Spark tells a stop from a failure by matching the Python traceback against a regex that
# recurses once per character (StreamExecution.PROXY_ERROR, `(.|\r\n|\r|\n)*`, since SPARK-48717). An
# interrupted Delta MERGE's traceback is ~27 KB; a 1 MB stack overflows past ~3 KB, and the query's thread
# died of StackOverflowError in the middle of the chain's stop. 64 MB matches 250 KB; a stack is reserved,
# not used, until a thread goes that deep.
DRIVER_JAVA_OPTIONS = "-Xss64m"


def build_spark(
    settings: Settings,
    app_name: str,
    *,
    master: str | None = None,
    extra_conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Get or create the SparkSession for `app_name` with the lakehouse wired in."""
    # Gold's state runs Python workers (pandas): the interpreter running the chain, whose environment has them.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    conf = lakehouse_conf(settings)
    if not under_spark_submit():
        # Outside spark-submit this process launches the JVM, so it decides master, memory and jars.
        conf.update(
            {
                "spark.master": master or settings.spark.master,
                "spark.driver.memory": settings.spark.driver_memory,
                "spark.driver.extraJavaOptions": DRIVER_JAVA_OPTIONS,
                "spark.jars": ",".join(str(jar) for jar in spark_jars(settings.spark.jars_dir)),
                "spark.ui.enabled": str(settings.spark.ui_enabled).lower(),
                "spark.ui.showConsoleProgress": "false",
            }
        )
        if conf["spark.master"].startswith("local"):
            # Keep a local driver on loopback, whatever the machine's hostname resolves to.
            conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
