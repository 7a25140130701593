"""The metrics listener takes each batch once, whether its progress event arrives in time or not."""

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


def query(run_id: str, batches: list[int]) -> SimpleNamespace:
    return SimpleNamespace(recentProgress=[progress(run_id, batch) for batch in batches])


def test_a_batch_whose_event_is_late_is_taken_from_the_query_once_and_its_late_event_dropped():
    listener = MetricsListener()
    listener.onQueryProgress(SimpleNamespace(progress=progress("run-1", 0)))
    assert listener.backfill([query("run-1", [0, 1]), query("run-2", [])]) == 1  # batch 1's event is late
    listener.onQueryProgress(SimpleNamespace(progress=progress("run-1", 1)))  # ... and arrives now
    assert sorted((row[1], row[2]) for row in listener._rows) == [("run-1", 0), ("run-1", 1)]


def test_a_restarted_query_is_a_new_run_whose_batches_count_on_their_own():
    listener = MetricsListener()
    listener.onQueryProgress(SimpleNamespace(progress=progress("run-1", 4)))
    assert listener.backfill([query("run-2", [4, 5])]) == 2
    assert len(listener._rows) == 3
