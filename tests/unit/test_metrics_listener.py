"""The metrics listener waits for each query's last progress event, which Spark delivers asynchronously."""

import threading
from types import SimpleNamespace

from pipelines.metrics import MetricsListener


def progress(run_id: str, batch_id: int, rows: int = 10) -> SimpleNamespace:
    return SimpleNamespace(
        name="score-rsvps",
        runId=run_id,
        batchId=batch_id,
        timestamp="2026-11-29T18:00:00.000Z",
        numInputRows=rows,
        inputRowsPerSecond=1.0,
        processedRowsPerSecond=2.0,
        durationMs={"triggerExecution": 5, "addBatch": 3},
        sources=[],
    )


def query(run_id: str, last_batch: int | None) -> SimpleNamespace:
    return SimpleNamespace(runId=run_id, lastProgress=None if last_batch is None else {"batchId": last_batch})


def test_waiting_returns_once_the_last_batchs_event_arrives_late():
    listener = MetricsListener()
    listener.onQueryProgress(SimpleNamespace(progress=progress("run-1", 0)))
    late = threading.Timer(0.3, lambda: listener.onQueryProgress(SimpleNamespace(progress=progress("run-1", 1))))
    late.start()
    assert listener.await_last_progress([query("run-1", 1), query("run-2", None)], timeout=10)
    assert sorted(row[2] for row in listener._rows) == [0, 1]  # the late batch's row is there to flush


def test_waiting_gives_up_when_an_event_never_comes():
    listener = MetricsListener()
    listener.onQueryProgress(SimpleNamespace(progress=progress("run-1", 0)))
    assert not listener.await_last_progress([query("run-1", 1)], timeout=0.3)
    assert listener.await_last_progress([query("run-1", 0)], timeout=0.3)
