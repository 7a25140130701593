"""How often each part of the running chain works: one place for the chain, the app's messages and the tests.

The hot path (gold and the PostgreSQL mirror, read straight from Kafka) triggers every `--interval` (seconds).
Everything else follows on a slower cadence, because on two cores every batch's fixed cost is CPU that the
hot path waits for (the chain uses ~1.8 of the 2 cores whatever the cadence):
- bronze (the raw archive) feeds only silver and scoring, so it commits once a minute;
- silver's Delta tables and scoring (their MERGEs) run every SLOW_INTERVAL;
- gold's snapshot tables (top groups, events, category trends) are rebuilt SNAPSHOT_EVERY_S after the last
  round ended.
Measured (bench.system, 12 minutes at 20 RSVPs/s, back to back, 2026-12-06; per-batch p95 over the last four
minutes, median): bronze every 10 s, the slow path every 60 s and snapshots every 120 s gave PostgreSQL 18.6 s
and gold 43 s, silver 122 s and scoring 104 s; with bronze every 60 s, snapshots every 300 s and the slow path
every 2 minutes, PostgreSQL 9.2 s and gold 27 s, silver 208 s and scoring 196 s; every 5 minutes, PostgreSQL
7.7 s and gold 24 s, silver and scoring ~390 s. Two minutes takes most of the hot path's gain for half the
slow path's cost (README, "Benchmarks").
"""

from __future__ import annotations

SLOW_INTERVAL = "2 minutes"
BRONZE_INTERVAL = "60 seconds"
SNAPSHOT_EVERY_S = 300.0
# as the app's messages say them
SLOW_INTERVAL_WORDS = f"every {SLOW_INTERVAL}"
SNAPSHOT_EVERY_WORDS = f"every {SNAPSHOT_EVERY_S / 60:g} minutes"
