"""How the chain stops: what a stop cuts short ends at once, and a cut batch ends its query cleanly.

meetup-demo gives the chain CHAIN_STOP_BUDGET_S between Ctrl-C and a kill. Under load a snapshot round took
minutes and the stop waited for it; and the stream thread of a query whose Python batch the stop cut died of
StackOverflowError in Spark's own check of the traceback.
"""

from __future__ import annotations

import time

from pyspark.sql import functions as F

from common.spark import SparkThread
from tests.helpers import wait_until


def test_a_stop_that_cuts_a_python_batch_is_told_from_a_failure_however_long_the_traceback(spark):
    # What Spark's stream thread gets back when a stop interrupts a foreachBatch function in a Delta MERGE:
    # py4j's report of the Python traceback, with the Java stack of the interrupted call inside (~27 KB in
    # the chain's log). Spark matches it against a regex that recurses once per character.
    jvm = spark.sparkContext._jvm
    frame = "\tat org.apache.spark.sql.delta.commands.MergeIntoCommand.runMerge(MergeIntoCommand.scala:86)\n"
    traceback = (
        'Traceback (most recent call last):\n  File "pipelines/score/job.py", line 172, in _process\n'
        "py4j.protocol.Py4JJavaError: An error occurred while calling o30610.execute.\n"
        ": java.lang.InterruptedException\n" + frame * 600
    )
    assert len(traceback) > 50_000
    cut = jvm.py4j.Py4JException(traceback)
    stream_execution = jvm.org.apache.spark.sql.execution.streaming.runtime.StreamExecution
    assert stream_execution.isInterruptionException(cut, spark.sparkContext._jsc.sc())  # a stop, not an error
    failed = jvm.py4j.Py4JException(traceback.replace("InterruptedException", "IllegalStateException"))
    assert not stream_execution.isInterruptionException(failed, spark.sparkContext._jsc.sc())


class OneLongJob(SparkThread):
    """A background thread whose one job would run for hours on two cores."""

    def __init__(self, spark):
        super().__init__(spark, "test-long-job")
        self.result: object = None
        self.error: Exception | None = None

    def work(self) -> None:
        try:
            self.result = self.spark.range(0, 10**13, numPartitions=8).agg(F.sum(F.sqrt("id"))).collect()
        except Exception as error:  # noqa: BLE001 - what the cancel raised, for the test to read
            self.error = error


def test_a_stop_cancels_the_background_job_running_instead_of_waiting_for_it(spark):
    thread = OneLongJob(spark)
    thread.start()
    tracker = spark.sparkContext.statusTracker()
    assert wait_until(lambda: tracker.getActiveJobsIds(), timeout=120, every=0.2), "its job never started"
    assert thread.is_alive() and thread.result is None
    assert thread.stop(timeout=120)  # the job needs hours: it ended because it was cancelled
    assert thread.result is None
    assert "cancel" in str(thread.error).lower()
    assert not tracker.getActiveJobsIds()  # nothing of it left running


def test_the_first_snapshot_round_comes_soon_after_the_start_and_the_next_after_the_cadence(spark, monkeypatch):
    # a page opened on a fresh chain fills in after the first round: it must not wait a whole cadence (5 min)
    from pipelines.gold import job

    rounds: list[float] = []
    monkeypatch.setattr(job, "fold_counts", lambda spark, layout: None)
    monkeypatch.setattr(job, "rebuild_snapshots", lambda spark, layout, settings: rounds.append(time.monotonic()))
    thread = job.SnapshotSchedule(spark, layout=None, settings=None, every_s=3.0, first_after_s=0.5)
    started = time.monotonic()
    thread.start()
    try:
        assert wait_until(lambda: len(rounds) >= 2, timeout=30, every=0.1), rounds
    finally:
        assert thread.stop(timeout=30)
    assert rounds[0] - started < 3.0  # the first round, without waiting for the cadence
    assert rounds[1] - rounds[0] >= 3.0  # then the cadence between rounds
