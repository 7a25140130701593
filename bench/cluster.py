"""Benchmark: the whole chain on a Spark standalone cluster beside local mode, on the same machine.

    make bench-cluster                       # or: .venv/bin/python -m bench.cluster --size 100000

N generated RSVPs are produced to a fresh topic of the local stack's Kafka. The same chain (bronze,
silver with the PostgreSQL mirror, gold; availableNow, the default batch bounds) then runs over them
twice, each time into a lakehouse prefix and a PostgreSQL schema of its own:
1. local mode: `meetup-chain` with SPARK_MASTER=local[2] (the driver runs every task, 2 cores);
2. the cluster: `meetup-submit` to a standalone master with two 1-core workers this benchmark starts
   (`stack/spark_standalone.py`, on ports of its own), the driver beside them.
For each: wall time from launch to exit (JVM start-up included), RSVPs/s, the time per stage from
gold/pipeline_metrics, and the peak resident memory of every process involved (driver, and for the
cluster the master, the workers and their executors). Both runs share one machine with the stack, so
the ratio cluster / local is the figure to read. Writes bench/results/cluster.json and .md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.common import isolated, log, write_results
from bench.system import tree_rss
from common.settings import PROJECT_ROOT, Settings, load_settings
from common.spark import build_spark
from ingest import generator
from lakehouse import catalogue
from lakehouse.layout import Layout
from stack import kafka as kafka_service
from stack import procs, spark_standalone
from tests.helpers import produce
from tests.integration.lakehouse import process_env

STAGES = ("bronze", "silver", "gold")


class PeakRss:
    """Samples the summed RSS of some process trees (`pids()`: their roots, now) every second; `peak` is the
    largest sum seen."""

    def __init__(self, pids: Callable[[], list[int | None]]) -> None:
        self.pids, self.peak, self._stop = pids, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, sum(tree_rss(pid) for pid in self.pids() if pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def environment(settings: Settings, master: str) -> dict[str, str]:
    return {
        **process_env(settings),
        "SPARK_MASTER": master,
        "SPARK_DRIVER_MEMORY": "2g",
        "SPARK_EXECUTOR_MEMORY": "1500m",
    }


def run(
    settings: Settings, command: list[str], master: str, cluster: Settings | None, log_file: Path
) -> dict[str, Any]:
    """Launch the chain, wait for it, return its wall time and peak memory."""
    started = time.perf_counter()
    with log_file.open("w") as output:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=environment(settings, master), stdout=output, stderr=subprocess.STDOUT
        )

    def pids() -> list[int | None]:
        cluster_pids = [procs.read_pid(pid_file) for pid_file in spark_standalone.pid_files(cluster)] if cluster else []
        return [process.pid, *cluster_pids]

    memory = PeakRss(pids)
    returncode = process.wait()
    peak = memory.stop()
    wall = time.perf_counter() - started
    if returncode != 0:
        raise SystemExit(f"bench: the chain exited with {returncode}; see {log_file}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 2**20)}


def stage_seconds(spark: SparkSession, settings: Settings) -> dict[str, float]:
    metrics = spark.read.format("delta").load(Layout.from_settings(settings).table(catalogue.GOLD_PIPELINE_METRICS))
    rows = metrics.groupBy("query").agg((F.sum("batch_ms") / 1000).alias("s"), F.count("*").alias("batches"))
    return {row.query.removesuffix("-rsvps"): round(row.s, 1) for row in rows.collect()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--master-port", type=int, default=27077)
    args = parser.parse_args(argv)
    base = load_settings()
    name = f"benchcl{int(time.time())}"
    topic_settings = isolated(base, name)
    kafka_service.ensure_topics(topic_settings, ("rsvps",))
    log(f"producing {args.size:,} generated RSVPs to {topic_settings.kafka.topic('rsvps')}")
    produce(
        base.kafka.bootstrap_servers,
        topic_settings.kafka.topic("rsvps"),
        list(generator.rsvps(seed=args.size, count=args.size)),
    )
    local = replace(topic_settings, lakehouse_root=topic_settings.lakehouse_root + "-local")
    on_cluster = replace(
        topic_settings,
        lakehouse_root=topic_settings.lakehouse_root + "-cluster",
        postgres=replace(topic_settings.postgres, schema=name + "c"),
    )
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    chain_args = ["--streams", "rsvps", "--stages", *STAGES, "--available-now"]
    cluster = replace(
        base,
        stack_dir=work,
        spark=replace(
            base.spark,
            master=f"spark://127.0.0.1:{args.master_port}",
            master_webui_port=args.master_port + 1000,
            workers=2,
            worker_cores=1,
            worker_memory="2g",
        ),
    )
    results = {"rsvps": args.size}
    log("local mode: meetup-chain on local[2]")
    results["local"] = run(
        local, [sys.executable, "-m", "pipelines.chain", *chain_args], "local[2]", None, work / "local.log"
    )
    log(f"local mode: {results['local']}")
    log(spark_standalone.up(cluster))
    try:
        submit = str(Path(sys.executable).parent / "meetup-submit")
        results["cluster"] = run(
            on_cluster, [submit, "pipelines/chain.py", *chain_args], cluster.spark.master, cluster, work / "cluster.log"
        )
    finally:
        spark_standalone.down(cluster)
    log(f"cluster: {results['cluster']}")
    spark = build_spark(base, "bench-cluster", master="local[1]", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    for mode, settings in (("local", local), ("cluster", on_cluster)):
        results[mode]["rsvps_per_s"] = round(args.size / results[mode]["wall_s"])
        results[mode]["stage_s"] = stage_seconds(spark, settings)
    spark.stop()
    results["cluster_over_local"] = round(results["cluster"]["rsvps_per_s"] / results["local"]["rsvps_per_s"], 2)
    lines = [
        "| mode | RSVPs | wall s | RSVPs/s | bronze s | silver + PG s | gold s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, label in (("local", "local[2], one JVM"), ("cluster", "standalone, 2 workers x 1 core")):
        r = results[mode]
        stages = r["stage_s"]
        lines.append(
            f"| {label} | {args.size:,} | {r['wall_s']} | {r['rsvps_per_s']:,} | {stages.get('bronze')} "
            f"| {stages.get('silver')} | {stages.get('gold')} | {r['peak_rss_mb']:,} |"
        )
    lines.append(f"\ncluster / local throughput: {results['cluster_over_local']}")
    write_results("cluster", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
