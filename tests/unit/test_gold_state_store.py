"""Gold's state store layouts on a real (local) Spark: a generation whose checkpoint keeps one map entry per RSVP
(the layout before the buckets, pipelines/gold/state.py) continues on buckets and decides exactly as if it had
always had them. Local files only; no service."""

from __future__ import annotations

from bench.decide_state import decisions_query, fact_batches, fact_schema, per_rsvp_processor
from pipelines.gold.state import GoldState
from pipelines.gold.transforms import DEFAULT_LATENESS_MS

BATCHES = list(fact_batches(rows=300, batches=3, seed=11))


def run(spark, root, processors) -> list[tuple]:
    """One batch of BATCHES per processor, each an availableNow run on one checkpoint -> every decision."""
    schema = fact_schema()
    decided: list[tuple] = []

    def sink(df, batch_id):
        rows = df.select("kind", "version_partition", "version_offset", "rsvp_id", "response", "version_mtime")
        decided.extend(tuple(row) for row in rows.collect())

    for number, (facts, processor) in enumerate(zip(BATCHES, processors, strict=True)):
        spark.createDataFrame(facts, schema).write.parquet(f"{root}/in/batch={number}")
        query = (
            decisions_query(spark, f"{root}/in", processor)
            .writeStream.foreachBatch(sink)
            .option("checkpointLocation", f"{root}/checkpoint")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
    return sorted(decided, key=lambda row: tuple((v is None, v) for v in row))


def state_rows(spark, root, name: str):
    return spark.read.format("statestore").option("stateVarName", name).load(f"{root}/checkpoint")


def test_a_checkpoint_with_one_entry_per_rsvp_continues_on_buckets_and_decides_the_same(spark, tmp_path):
    old, new = (lambda: per_rsvp_processor(DEFAULT_LATENESS_MS)), (lambda: GoldState(DEFAULT_LATENESS_MS))
    always_new = run(spark, tmp_path / "new", [new() for _ in BATCHES])
    upgraded = run(spark, tmp_path / "upgraded", [old(), new(), new()])
    assert upgraded == always_new
    assert {kind for kind, *_ in upgraded} >= {"counted", "replaced", "ignored", "mark"}

    assert state_rows(spark, tmp_path / "upgraded", "counted").count() == 0, "the per-RSVP map was emptied"
    buckets = state_rows(spark, tmp_path / "upgraded", "counted_buckets")
    entries = buckets.selectExpr("explode(user_map_value.entries) AS e").select("e.rsvp_id", "e.version_offset")
    held = [(row.rsvp_id, row.version_offset) for row in entries.collect()]
    counted = sorted((offset, rsvp_id) for kind, _, offset, rsvp_id, *_ in always_new if kind == "counted")
    counted_last = {rsvp_id: offset for offset, rsvp_id in counted}  # offsets grow: the last one wins
    assert len(held) == len(dict(held)), "each RSVP is in one bucket, once"
    assert dict(held) == counted_last, "each RSVP's bucket holds the version counted last"
