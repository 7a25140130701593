"""The chain's fixed cost: one `--available-now` run of bronze, silver and gold over a few RSVPs, again and again.

    python -m bench.chain_round                    # 5 rounds of 20 RSVPs each, one warm JVM
    python -m bench.chain_round --rounds 8 --per-round 200 --conf spark.sql.adaptive.enabled=false

Each round produces `--per-round` real RSVPs and runs the chain over what Kafka holds, as a test of the chain
or a replay of a short span does: wall seconds and the CPU seconds of this process and its JVM (and Python
workers), per round. The first round pays the JVM's warm-up and the tables' creation; the rounds after it
are the cost every run pays whatever it carries. That cost is what the test suite pays about a hundred
times (docs/testing.md), and what a live chain pays on each of its batches.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psutil

from bench.common import isolated, log, write_results
from common.settings import load_settings
from common.spark import build_spark
from lakehouse.layout import Layout
from pipelines.chain import run_chain
from pipelines.stages import ChainOptions
from stack import kafka as kafka_service
from tests.helpers import capture_frames, produce

STAGES = ("bronze", "silver", "gold")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and every process under it (the JVM, Python workers)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20, help="real RSVPs produced before each round")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting to try")
    parser.add_argument("--name", default="chain_round")
    args = parser.parse_args(argv)
    conf = dict(item.split("=", 1) for item in args.conf)

    settings = isolated(load_settings(), f"round{int(time.time())}")
    kafka_service.ensure_topics(settings)
    spark = build_spark(settings, "bench-chain-round", extra_conf={"spark.ui.enabled": "false", **conf})
    spark.sparkContext.setLogLevel("ERROR")
    frames = capture_frames()
    layout = Layout.from_settings(settings)
    options = ChainOptions(streams=("rsvps",), stages=STAGES, available_now=True, progress_every=3600)
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        start = number * args.per_round
        produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), frames[start : start + args.per_round])
        cpu, wall = cpu_seconds(), time.perf_counter()
        run_chain(spark, settings, layout=layout, options=options)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        rounds.append({"round": number, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
        log(f"round {number}: {wall:.1f} s wall, {cpu:.1f} CPU-s ({cpu / wall:.2f} cores)")
    spark.stop()

    warm = rounds[1:]
    table = [
        f"Chain rounds ({', '.join(STAGES)}; available-now), {args.per_round} RSVPs each"
        + (f"; {', '.join(args.conf)}" if args.conf else ""),
        "",
        "| round | wall s | CPU s | cores |",
        "|---:|---:|---:|---:|",
        *(f"| {r['round']} | {r['wall_s']} | {r['cpu_s']} | {r['cpu_s'] / r['wall_s']:.2f} |" for r in rounds),
    ]
    if warm:
        wall_s = sorted(r["wall_s"] for r in warm)
        cpu_s = sorted(r["cpu_s"] for r in warm)
        table += ["", f"After the first: wall {wall_s[0]}-{wall_s[-1]} s, CPU {cpu_s[0]}-{cpu_s[-1]} s a round."]
    write_results(args.name, {"per_round": args.per_round, "conf": conf, "rounds": rounds}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
