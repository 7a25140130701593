"""The chain's bookkeeping cadence: freshness rows often, the progress rows and phases less often."""

from __future__ import annotations

from pipelines.chain import StopRequest, _wait


class IdleQuery:
    """What `_wait` reads of a running streaming query that has no batch in flight."""

    name = "idle"
    isActive = True
    lastProgress = None
    status = {"isTriggerActive": False}

    def exception(self) -> None:
        return None

    def stop(self) -> None:
        self.isActive = False


def flushes(metrics_every: float, count: int = 4) -> list[bool]:
    """The `everything` flag of the first `count` flushes of a chain flushing every pass."""
    stop, seen = StopRequest(), []

    def flush(everything: bool) -> None:
        seen.append(everything)
        if len(seen) == count:
            stop.set()

    _wait([IdleQuery], stop, progress_every=3600, flush_metrics=flush, flush_every=0, metrics_every=metrics_every)
    return seen


def test_the_progress_rows_and_phases_wait_for_their_own_cadence():
    assert flushes(metrics_every=3600) == [False] * 4  # freshness rows only, every pass


def test_with_no_wait_every_flush_appends_everything():
    assert flushes(metrics_every=0) == [True] * 4
