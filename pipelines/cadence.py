"""How often each part of the running chain works: one place for the chain, the app's messages and the tests.

The hot path (gold and the PostgreSQL mirror, read straight from Kafka) triggers every `--interval` (seconds).
Everything else follows on a slower cadence, because on two cores every batch's fixed cost is CPU that the
hot path waits for (the chain uses ~1.8 of the 2 cores whatever the cadence):
- bronze (the raw archive) feeds only silver and scoring, so it commits once a minute;
- silver's Delta tables and scoring (their MERGEs) run every SLOW_INTERVAL;
- gold's snapshot tables (top groups, events, category trends) are rebuilt SNAPSHOT_EVERY_S after the last
  round ended, the first round FIRST_SNAPSHOT_AFTER_S after the start.
At 20 RSVPs/s on two cores, the slow path every 2 minutes instead of 60 s halved the hot path's typical
freshness (PostgreSQL ~18 -> ~9 s, gold ~43 -> ~27 s) for silver and the scored feed about 3.5 minutes
behind instead of 2; the runs, and what bronze's and the snapshots' cadence changed, are in
docs/benchmarks-history.md ("The slow path less often").
"""

from __future__ import annotations

# the freshness stages (gold/freshness) of each path: the app draws them apart, as their scales differ ~20x
HOT_STAGES = ("postgres", "gold")
SLOW_STAGES = ("silver", "score")
HOT_INTERVAL = "2 seconds"  # meetup-chain --interval: gold and the PostgreSQL mirror
SLOW_INTERVAL = "2 minutes"
BRONZE_INTERVAL = "60 seconds"
SNAPSHOT_EVERY_S = 300.0
FIRST_SNAPSHOT_AFTER_S = 60.0  # the first round, once the hot path has a minute of counts
# as the app's messages say them
SLOW_INTERVAL_WORDS = f"every {SLOW_INTERVAL}"
SNAPSHOT_EVERY_WORDS = f"every {SNAPSHOT_EVERY_S / 60:g} minutes"
FIRST_SNAPSHOT_WORDS = f"{FIRST_SNAPSHOT_AFTER_S:.0f} s after the chain starts"
