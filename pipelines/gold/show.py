"""Print the gold tables of the current generation in the terminal (the app shows them in a browser).

meetup-gold                          # totals, newest minutes per region, top groups, topic trends, late rows
meetup-gold --table upcoming_events --rows 10
"""

from __future__ import annotations

import sys

from pyspark.sql import functions as F

from common import cli
from lakehouse import catalogue, generations
from lakehouse.aggregates import BY_NAME
from pipelines.gold.transforms import count_view

VIEWS = {
    "rsvp_totals": lambda df: df,
    "rsvps_by_region_minute": lambda df: df.orderBy(F.desc("minute"), F.desc("yes")),
    "top_groups_5min": lambda df: df.orderBy(F.desc("yes")),
    "topic_trends": lambda df: df.orderBy(F.desc("hour"), "rank"),
    "upcoming_events": lambda df: df.orderBy(F.desc("yes_last_hour")),
    "late_rsvps": lambda df: df.orderBy(F.desc("recorded_at")),
    "freshness": lambda df: df.orderBy(F.desc("visible_at")),
}


@cli.command("meetup-gold", generations.GenerationError)
def main(argv: list[str] | None = None) -> int:
    from delta.tables import DeltaTable

    from common import health
    from common.spark import build_spark

    parser = cli.parser("meetup-gold", __doc__)
    parser.add_argument(
        "--table", choices=sorted(VIEWS), action="append", help="a table to show (repeat it; default: all of them)"
    )
    parser.add_argument("--rows", type=int, default=8, help="rows to show per table")
    parser.add_argument("--generation", help="the generation to read (default: the one readers use)")
    args = parser.parse_args(argv)
    settings = health.settings_for(["s3"])
    spark = build_spark(settings, "meetup-gold", master="local[1]")
    spark.sparkContext.setLogLevel("ERROR")
    layout = generations.layout(settings, args.generation)
    for name in args.table or list(VIEWS):
        counted = name in BY_NAME  # a count aggregate: its rows of the long counts table
        path = layout.table(catalogue.GOLD_COUNTS if counted else catalogue.gold(name))
        print(f"== {name} ({path})")
        if not DeltaTable.isDeltaTable(spark, path):
            print("   (not written yet: is the chain running?)")
            continue
        df = spark.read.format("delta").load(path)
        VIEWS[name](count_view(df, name) if counted else df).show(args.rows, truncate=40)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
