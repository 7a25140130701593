"""Reprocess history: replay Kafka offsets through the same chain into a new generation, then switch.

meetup-replay --to g2                              # from offset 0 of every partition
meetup-replay --to g2 --from-timestamp 2026-11-29T06:00:00Z
meetup-replay --to g2 --from-offsets '{"0": 1200, "1": 0, "2": 977}'
meetup-replay --list                               # the generations, and which one readers use
meetup-replay --switch g1                          # point readers back (atomic)
meetup-replay --drop g1                            # delete a generation readers no longer use

A replay runs bronze, silver (with its PostgreSQL mirror) and gold with available-now triggers into
<root>/<new generation>/, with fresh checkpoints, while the current generation keeps serving readers;
when it has caught up it switches readers to the new generation in one atomic write. The old one stays
until dropped. Offsets that Kafka's retention has already deleted are refused with what is still there,
never skipped: a replay that silently starts later would rewrite history with a hole in it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, TopicPartition

from common import cli, health
from common.settings import STREAMS, Settings
from lakehouse import generations
from lakehouse.layout import Layout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("pipelines.replay")  # also when spark-submit runs this file as __main__


class RetentionGap(RuntimeError):
    """The requested offsets are older than what Kafka still holds."""


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    low: int  # first offset Kafka still holds (retention moves it up)
    high: int  # next offset to be written
    low_timestamp_ms: int | None  # append time of the record at `low`, when there is one


def _probe(settings: Settings) -> Consumer:
    """A consumer that only looks: assigned partitions, no group offsets committed."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "meetup-replay-probe",
            "enable.auto.commit": False,
            **settings.kafka.client_config,
        }
    )


def partition_ranges(settings: Settings, topic: str) -> list[PartitionRange]:
    consumer = _probe(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise RetentionGap(f"topic {topic} does not exist on {settings.kafka.bootstrap_servers}")
        ranges = []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            low_ts = None
            if high > low:
                consumer.assign([TopicPartition(topic, partition, low)])
                message = consumer.poll(10)
                if message is not None and message.error() is None:
                    low_ts = message.timestamp()[1]
            ranges.append(PartitionRange(partition, low, high, low_ts))
        return ranges
    finally:
        consumer.close()


def starting_offsets(
    settings: Settings,
    topic: str,
    *,
    offsets: dict[int, int] | None = None,
    timestamp_ms: int | None = None,
) -> dict[int, int]:
    """The first offset to replay per partition, checked against retention.

    offsets: explicit per partition (missing partitions start at 0); timestamp_ms: the first record
    appended at or after that time; neither: offset 0 everywhere.
    """
    ranges = partition_ranges(settings, topic)
    wanted: dict[int, int] = {}
    gaps = []
    for r in ranges:
        if timestamp_ms is not None:
            if r.low > 0 and (r.low_timestamp_ms is None or r.low_timestamp_ms > timestamp_ms):
                gaps.append((r, f"records from {timestamp_ms} ms on"))
                continue
            wanted[r.partition] = _offset_for_time(settings, topic, r.partition, timestamp_ms, r.high)
        else:
            start = (offsets or {}).get(r.partition, 0)
            if start < r.low:
                gaps.append((r, f"offset {start}"))
                continue
            wanted[r.partition] = min(start, r.high)
    if gaps:
        lines = [
            f"  partition {r.partition}: asked for {asked}, but retention has deleted everything before offset "
            f"{r.low}; still available: offsets {r.low}..{r.high - 1}{_since(r.low_timestamp_ms)}"
            for r, asked in gaps
        ]
        raise RetentionGap(
            f"cannot replay {topic}: the requested history is past Kafka's retention\n"
            + "\n".join(lines)
            + "\nReplay from what is still there (--from-offsets with the offsets above), or from bronze, "
            "which keeps every record Kafka ever gave it."
        )
    return wanted


def _since(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return ""
    return f" (appended from {datetime.fromtimestamp(timestamp_ms / 1000, UTC):%Y-%m-%d %H:%M:%S} UTC)"


def _offset_for_time(settings: Settings, topic: str, partition: int, timestamp_ms: int, high: int) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "meetup-replay-probe",
            **settings.kafka.client_config,
        }
    )
    try:
        (found,) = consumer.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=10)
        return found.offset if found.offset >= 0 else high  # -1: nothing at or after that time
    finally:
        consumer.close()


def spark_starting_offsets(topic: str, wanted: dict[int, int]) -> str:
    """Spark's Kafka source `startingOffsets` JSON."""
    return json.dumps({topic: {str(p): o for p, o in sorted(wanted.items())}})


def replay(
    spark: SparkSession,
    settings: Settings,
    target: str,
    *,
    streams: tuple[str, ...] = STREAMS,
    offsets: dict[int, int] | None = None,
    timestamp_ms: int | None = None,
    switch: bool = True,
    mirror_to_postgres: bool = True,
    **chain_options: Any,
) -> Layout:
    """Replay into generation `target` and (by default) switch readers to it. Returns its layout."""
    from pipelines.chain import run_chain
    from pipelines.stages import ChainOptions

    generations.check_name(target)
    if target in generations.existing(settings):
        raise generations.GenerationError(
            f"generation {target!r} already exists: replay into a new name, or drop it first (--drop {target})"
        )
    per_stream = {
        stream: spark_starting_offsets(
            settings.kafka.topic(stream),
            starting_offsets(settings, settings.kafka.topic(stream), offsets=offsets, timestamp_ms=timestamp_ms),
        )
        for stream in streams
    }
    layout = Layout.from_settings(settings, target)
    log.info("replaying %s into %s/%s", ", ".join(streams), layout.root, target)
    options = ChainOptions(
        streams=streams,
        available_now=True,
        starting_offsets=per_stream,
        mirror_to_postgres=mirror_to_postgres,
        **chain_options,
    )
    run_chain(spark, settings, layout=layout, options=options)
    if switch:
        previous = generations.switch(settings, target)
        log.info(
            "readers now use %s (was %s); drop the old one with `meetup-replay --drop %s` once it is no longer needed",
            target, previous, previous,
        )  # fmt: skip
    return layout


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("meetup-replay", __doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--to", metavar="GENERATION", help="replay into this new generation")
    action.add_argument("--list", action="store_true", help="list the generations")
    action.add_argument("--switch", metavar="GENERATION", help="point readers at this generation")
    action.add_argument("--drop", metavar="GENERATION", help="delete a generation readers do not use")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-offsets",
        metavar="JSON",
        type=cli.partition_offsets,
        help='where to start, per partition, e.g. \'{"0": 1200, "1": 0}\' (without it or --from-timestamp: 0 '
        "everywhere)",
    )
    start.add_argument("--from-timestamp", metavar="TIME", type=cli.time_ms, help=f"where to start: {cli.TIME_HELP}")
    parser.add_argument("--streams", nargs="+", choices=STREAMS, default=list(STREAMS), help="the streams to replay")
    parser.add_argument("--no-switch", action="store_true", help="replay only; switch later with --switch")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL mirror")
    return parser


@cli.command("meetup-replay", RetentionGap, generations.GenerationError, health.ServiceUnavailable)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = health.settings_for(["s3"])
    if args.list:
        now = generations.current(settings)
        for name in generations.existing(settings):
            print(f"{'*' if name == now else ' '} {name}")
        return 0
    if args.switch:
        previous = generations.switch(settings, args.switch)
        print(f"meetup-replay: readers now use {args.switch} (was {previous})")
        return 0
    if args.drop:
        print(f"meetup-replay: dropped {args.drop} ({generations.drop(settings, args.drop)} objects)")
        return 0
    health.preflight(settings, ["kafka"] + ([] if args.no_postgres else ["postgres"]))  # S3 answered above
    offsets, timestamp_ms = args.from_offsets, args.from_timestamp
    for stream in args.streams:  # refuse before Spark starts
        starting_offsets(settings, settings.kafka.topic(stream), offsets=offsets, timestamp_ms=timestamp_ms)
    from common.spark import build_spark
    from pipelines.chain import MAX_BYTES_PER_TRIGGER, MAX_OFFSETS_PER_TRIGGER

    spark = build_spark(settings, "meetup-replay")
    spark.sparkContext.setLogLevel("WARN")
    replay(
        spark,
        settings,
        args.to,
        streams=tuple(args.streams),
        offsets=offsets,
        timestamp_ms=timestamp_ms,
        switch=not args.no_switch,
        mirror_to_postgres=not args.no_postgres,
        max_offsets_per_trigger=MAX_OFFSETS_PER_TRIGGER,  # a whole history in one batch would not fit
        max_bytes_per_trigger=MAX_BYTES_PER_TRIGGER,
    )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
