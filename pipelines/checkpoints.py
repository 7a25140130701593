"""A checkpoint must not vanish under the tables its query wrote.

Every query of the chain is idempotent *given its checkpoint*: bronze appends each Kafka offset once, and
silver's mirror ledger and gold's Delta transactions skip batch ids they have seen. A query that lost its
checkpoint would start again at batch 0 from the earliest offset: bronze would append everything twice,
and gold and PostgreSQL would skip new data as "already applied". So once a query has completed a batch,
a marker `<generation>/_queries/<query>` is written beside (not inside) the checkpoints, and the chain
refuses to start a query whose marker is there but whose checkpoint is not. The way back is a replay
into a new generation (`meetup-replay --to gN`), which rebuilds every table from Kafka exactly.
"""

from __future__ import annotations

from common.settings import Settings
from common.store import Store
from lakehouse.layout import Layout

MARKERS = "_queries"


class LostCheckpoint(RuntimeError):
    """A query's checkpoint is gone, but the query has written to this generation before."""


def _marker(layout: Layout, query: str) -> str:
    return f"{layout.generation}/{MARKERS}/{query}"


def offsets_log(layout: Layout, query: str) -> str:
    """A query's offset log (one object per batch id), relative to the lakehouse root, as Store names it."""
    return f"{layout.generation}/_checkpoints/{query}/offsets"


def check(settings: Settings, layout: Layout, queries: list[str]) -> None:
    """Raise LostCheckpoint naming every query whose marker exists without its checkpoint."""
    store = Store(settings)
    lost = [q for q in queries if store.exists(_marker(layout, q)) and not store.exists(offsets_log(layout, q) + "/")]
    if lost:
        raise LostCheckpoint(
            f"the checkpoint of {', '.join(lost)} under {layout.checkpoint('')} is gone, but "
            f"{'that query has' if len(lost) == 1 else 'those queries have'} written to generation "
            f"{layout.generation} before; starting again would append bronze twice and skip batches as done. "
            f"Rebuild into a new generation instead: meetup-replay --to <new name> (e.g. "
            f"--from-timestamp 2026-01-01T00:00:00Z to start later), then meetup-replay --drop {layout.generation}"
        )


def mark(settings: Settings, layout: Layout, query: str) -> None:
    """Record that `query` has completed a batch in this generation (idempotent)."""
    Store(settings).write(_marker(layout, query), b"")
