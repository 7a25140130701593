"""Where a micro-batch's time goes: each stage times the phases of its batches (parse, each write, the
mirror, state reads, commits), and the chain keeps them in `gold/batch_phases` beside `pipeline_metrics`.

    clock = PhaseClock("silver-rsvps", batch_id)
    with clock.phase("parse"):
        ...
    with clock.phase("merge"):
        ...
    clock.close()          # the batch's rows go to RECORDER; the chain appends them with its metrics

Phases are timed on the batch's own thread and follow each other, so a batch's phases add up to its
time in foreachBatch; work that runs in parallel inside one phase (the MERGE threads) is one phase.
Like `pipeline_metrics` these rows are measurements, not data: a batch re-run after a crash records
its phases again (under the same batch id, with a later `started_at`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import types as T

BATCH_PHASES = T.StructType(
    [
        T.StructField("query", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("seq", T.IntegerType(), False),  # the phase's place in its batch
        T.StructField("phase", T.StringType(), False),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("seconds", T.DoubleType(), False),
        T.StructField("rows", T.LongType(), True),  # the batch's input rows, on every phase of it
    ]
)


class PhaseRecorder:
    """A thread-safe buffer of rows (phases, freshness) from every query of the process; the chain drains it."""

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def drain(self) -> list[tuple[Any, ...]]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows


# One per process, as a metrics registry is: every stage's batches report here, and the chain's metrics
# flush writes what it holds. Tests may give a PhaseClock a recorder of their own.
RECORDER = PhaseRecorder()


class PhaseClock:
    """Times the phases of one micro-batch of one query."""

    def __init__(self, query: str, batch_id: int, recorder: PhaseRecorder | None = None) -> None:
        self.query = query
        self.batch_id = batch_id
        self.recorder = recorder if recorder is not None else RECORDER
        self.rows: int | None = None
        self._phases: list[tuple[str, datetime, float]] = []
        self._closed = False

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase `name`; a phase that raises is still recorded (its time was spent)."""
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            yield
        finally:
            self._phases.append((name, started_at, time.perf_counter() - started))

    def seconds(self) -> dict[str, float]:
        """Seconds per phase name so far (a name used twice is summed)."""
        totals: dict[str, float] = {}
        for name, _, seconds in self._phases:
            totals[name] = totals.get(name, 0.0) + seconds
        return totals

    def summary(self) -> str:
        """`parse 0.4s, merge 2.1s, ...` for the batch's log line."""
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.seconds().items())

    def close(self) -> None:
        """Hand the batch's phases to the recorder (once)."""
        if self._closed:
            return
        self._closed = True
        self.recorder.add(
            [
                (self.query, int(self.batch_id), seq, name, started_at, float(seconds), self.rows)
                for seq, (name, started_at, seconds) in enumerate(self._phases)
            ]
        )
