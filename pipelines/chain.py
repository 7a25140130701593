"""The chain: Kafka -> bronze -> silver (-> PostgreSQL), gold and scoring, as one Spark application.

meetup-chain                                   # every stage, continuously (Ctrl-C stops cleanly)
meetup-chain --stages bronze                   # one stage alone
meetup-chain --available-now                   # process what is there, then exit
meetup-submit pipelines/chain.py --stages bronze silver gold score
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from common import cli, health, metrics_endpoint
from common.settings import STREAMS, Settings
from common.spark import SparkThread, build_spark
from lakehouse import generations
from lakehouse.layout import Layout
from pipelines import checkpoints, exporter, heartbeat
from pipelines.cadence import BRONZE_INTERVAL, HOT_INTERVAL, SLOW_INTERVAL, SNAPSHOT_EVERY_S
from pipelines.gold.fold import fold_counts
from pipelines.gold.job import SnapshotSchedule, rebuild_snapshots
from pipelines.gold.transforms import DEFAULT_LATENESS_MS
from pipelines.maintenance import VacuumSchedule
from pipelines.metrics import MetricsListener, ensure_metrics_tables
from pipelines.silver import mirror
from pipelines.stages import METRICS_EVERY_S, STAGE_NAMES, ChainOptions, Run, query_names, selected

log = logging.getLogger("pipelines.chain")  # also when spark-submit runs this file as __main__

# Batch bounds for catching up a backlog (the chain's and the replay's defaults). Silver and gold read bronze
# by bytes, not files: a silver MERGE of 300,000 rows in one batch ran out of execution memory with a 2 GB
# driver (bench.backlog), and 32 MB of bronze Parquet holds about 60,000 RSVPs in the small files a live stream
# writes (500-575 bytes each, measured), more once compacted. The old bound, 3 files, was one
# bronze commit (a file per Kafka partition) whatever it held, so a live silver batch took 2 s of stream
# however long it ran, and fell further behind every batch.
MAX_OFFSETS_PER_TRIGGER = 100_000
MAX_BYTES_PER_TRIGGER = 32 * 2**20
# The slow path's cadence (bronze, silver's Delta tables, scoring, gold's snapshots): pipelines/cadence.py.
# The chain's metrics are Delta appends, a commit each, and they share two cores with the stages: three
# every 10 s made 146 of the 393 commits of a 14-minute run at 20 RSVPs/s (bench.system), more than bronze
# (69) or gold (77); flushed as below, 79 of 345. The freshness rows go every FRESHNESS_EVERY_S (the app's
# "as of" line reads them), the progress rows and phases (the Health page's charts) every METRICS_EVERY_S,
# and everything at a stop.
FRESHNESS_EVERY_S = 10.0


def run_chain(
    spark: SparkSession,
    settings: Settings,
    *,
    layout: Layout,
    options: ChainOptions | None = None,
    stop_event: threading.Event | StopRequest | None = None,
) -> None:
    """Start the stages' queries (pipelines/stages.py) and wait; with available_now, each stage finishes
    before the next starts (gold's snapshots name events from silver, so silver goes first).

    The PostgreSQL mirror of RSVPs is on the hot path: a query of its own beside gold when gold runs
    (silver/mirror_job.py), and silver writes it when silver runs without gold. Either way it is exactly
    once (mirror.py's ledger).
    """
    options = options or ChainOptions()
    if options.mirror_in:
        mirror.apply_ddl(settings)
    checkpoints.check(settings, layout, query_names(options))
    ensure_metrics_tables(spark, layout)
    listener = MetricsListener()
    spark.streams.addListener(listener)
    vacuums = None
    if options.vacuum_every_s and not options.available_now:
        vacuums = VacuumSchedule(spark, layout, options.vacuum_every_s)
        vacuums.start()
    counts_rsvps = "gold" in options.stages and "rsvps" in options.streams
    snapshots = None
    if counts_rsvps and not options.available_now:
        snapshots = SnapshotSchedule(spark, layout, settings, options.snapshot_every_s)
        snapshots.start()
    background: list[SparkThread] = [thread for thread in (snapshots, vacuums) if thread]
    run = Run(spark, settings, layout, options)
    stages = selected(options)
    waves = [[stage] for stage in stages] if options.available_now else [stages]
    try:
        for wave in waves:
            for stage in wave:
                stage.ensure(run)
            queries = _wait(
                [query.start for stage in wave for query in stage.queries(run)],
                stop_event or threading.Event(),
                options.progress_every,
                functools.partial(flush_and_beat, spark, settings, layout, listener),
                lambda name: checkpoints.mark(settings, layout, name),
                metrics_every=options.metrics_every,
                on_stop=functools.partial(request_stops, background),
            )
            listener.backfill(queries)  # batches whose progress event is still on its way
            if options.available_now and wave[0].name == "gold" and counts_rsvps:
                fold_counts(spark, layout)  # the run's count changes, one row per key
                rebuild_snapshots(spark, layout, settings)
    finally:
        for thread in background:  # cut short, not waited for: their rounds are redone on the next run
            if not thread.stop(timeout=BACKGROUND_STOP_S):
                log.warning("%s still running after %.0fs; stopping without it", thread.name, BACKGROUND_STOP_S)
        spark.streams.removeListener(listener)
        listener.flush(spark, layout)
        _beat(settings, layout, [])  # stopped: the app's "as of" says so


def request_stops(threads: list[SparkThread]) -> None:
    """Ask every background thread to stop, cancelling its running job, without waiting for any."""
    for thread in threads:
        thread.request_stop()


def flush_and_beat(
    spark: SparkSession, settings: Settings, layout: Layout, listener: MetricsListener, everything: bool = True
) -> None:
    """The chain's periodic bookkeeping: the freshness rows buffered since the last flush (with `everything`,
    the progress rows and phases too), and the heartbeat."""
    listener.flush(spark, layout, everything=everything)
    _beat(settings, layout, [query.name for query in spark.streams.active if query.name])


def _beat(settings: Settings, layout: Layout, running: list[str]) -> None:
    try:
        heartbeat.beat(settings, layout.generation, running)
    except Exception as error:  # noqa: BLE001 - a missed beat only makes the app say "stalled" sooner
        log.warning("heartbeat not written: %s", error)


class StopRequest:
    """A stop flag that a signal handler may set: taking an Event's lock inside a handler can deadlock."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, *_args: object) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested


# Failures that are Spark's bugs, not ours or the data's: the query is restarted from its checkpoint, which
# is exactly-once, as a supervisor would restart the whole chain. Spark 4.1.1's Kafka source throws this NPE
# when it reports the metrics of a batch it re-ran from its offset log after a crash, so the first batch
# after every kill -9 in mid-batch failed once (SPARK-55271 / SPARK-57438: Some(null) in metrics()).
KNOWN_SPARK_BUGS = ("KafkaMicroBatchStream.metrics",)
MAX_RESTARTS = 5  # per query per run: a bug that keeps coming back ends the chain with its error


def restartable(error: BaseException | None) -> bool:
    """Whether a query's failure is one of KNOWN_SPARK_BUGS (matched on its stack trace)."""
    traces = []
    while error is not None:  # the query's error, then its causes: the JVM stack trace of each
        traces.append(f"{error}\n{getattr(error, '_stackTrace', '')}")
        error = getattr(error, "_cause", None)
    return any(signature in trace for trace in traces for signature in KNOWN_SPARK_BUGS)


def _wait(
    starters: list[Callable[[], StreamingQuery]],
    stop_event: threading.Event | StopRequest,
    progress_every: float,
    flush_metrics: Callable[[bool], object],
    mark_started: Callable[[str], None] = lambda name: None,
    flush_every: float = FRESHNESS_EVERY_S,
    metrics_every: float = METRICS_EVERY_S,
    on_stop: Callable[[], None] = lambda: None,
) -> list[StreamingQuery]:
    """Start the queries, report progress and wait; restart a query hit by one of KNOWN_SPARK_BUGS.
    Returns the queries, stopped (the restarted ones in place of those that failed); `on_stop` is called
    first, so that what it stops ends while the running batches end. `flush_metrics(everything)` runs every
    `flush_every` seconds, with everything=True every `metrics_every` seconds."""
    queries = [start() for start in starters]
    restarts = [0] * len(queries)
    last_report = last_flush = last_full_flush = time.monotonic()
    marked: set[str] = set()

    def check_failures() -> None:
        for i, query in enumerate(queries):
            error = query.exception()
            if error is None:
                continue
            if not restartable(error) or restarts[i] >= MAX_RESTARTS:
                raise error
            restarts[i] += 1
            log.warning(
                "%s hit a known Spark bug (%s); restarting it from its checkpoint (%d/%d)",
                query.name, str(error).splitlines()[0][:160], restarts[i], MAX_RESTARTS,
            )  # fmt: skip
            queries[i] = starters[i]()

    def mark_new() -> None:  # once a query has completed a batch, its checkpoint must not vanish (checkpoints.py)
        for query in queries:
            if query.name not in marked and query.lastProgress is not None:
                mark_started(query.name)
                marked.add(query.name)

    try:
        while not stop_event.is_set():
            mark_new()
            check_failures()
            if not any(query.isActive for query in queries):
                break
            if time.monotonic() - last_flush >= flush_every:
                last_flush = time.monotonic()
                everything = last_flush - last_full_flush >= metrics_every
                if everything:
                    last_full_flush = last_flush
                flush_metrics(everything)
            if time.monotonic() - last_report >= progress_every:
                last_report = time.monotonic()
                for query in queries:
                    progress = query.lastProgress
                    if progress:
                        log.info(
                            "%s: batch %s, %s rows, %.0f rows/s", query.name, progress["batchId"],
                            progress["numInputRows"], progress.get("processedRowsPerSecond", 0),
                        )  # fmt: skip
            time.sleep(0.5)
        for query in queries:
            failure = query.exception()
            if failure is not None:
                raise failure
        mark_new()
    finally:
        on_stop()
        stop_between_batches(queries)
    return queries


# A stop's budget: the running batches end within STOP_WITHIN_S (cut after it); the snapshot and vacuum
# threads are cut at once, alongside, and waited for at most BACKGROUND_STOP_S more; then the last metrics
# are flushed and Spark stops. meetup-demo gives the chain CHAIN_STOP_BUDGET_S before it kills it.
STOP_WITHIN_S = 60.0
BACKGROUND_STOP_S = 20.0
CHAIN_STOP_BUDGET_S = 150.0


def stop_between_batches(queries: list[StreamingQuery], timeout: float = STOP_WITHIN_S) -> None:
    """Stop every query right after its running micro-batch, all at once: the wait is the longest running
    batch's, not the sum of them (a slow-path batch can take minutes under load). A batch still running at
    the deadline is interrupted, which is safe: it is redone on restart."""
    if not queries:
        return
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        list(pool.map(lambda query: _stop_between_batches(query, timeout), queries))


def _stop_between_batches(query: StreamingQuery, timeout: float) -> None:
    """Stop a query right after its running micro-batch completes: stop() itself interrupts a batch.

    (An interrupted batch is still safe, since it is redone on restart, but it fills the log with errors.)
    With a trigger interval shorter than a batch the next batch starts at once, so "idle" may never be
    seen: the end of the running batch (a new lastProgress) is the moment to stop.
    """
    deadline = time.monotonic() + timeout
    running = query.lastProgress["batchId"] if query.lastProgress else None
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        done = query.lastProgress["batchId"] if query.lastProgress else None
        if done != running:
            break
        time.sleep(0.1)
    if query.isActive:
        query.stop()


# Spark's warnings that say nothing wrong, at ERROR: gold frees its locally checkpointed batch data each batch, on
# purpose, and Spark warns about that every time; and gold's state lookup of an RSVP not counted yet (every new
# RSVP) is a WARN line per RSVP from the state server (a 200/s stream wrote 200 lines a second).
QUIET_LOGGERS = (
    "org.apache.spark.rdd.MapPartitionsRDD",
    "org.apache.spark.sql.execution.python.streaming.TransformWithStateInPySparkStateServer",
)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("meetup-chain", __doc__)
    parser.add_argument("--stages", nargs="+", choices=STAGE_NAMES, default=list(STAGE_NAMES), help="the stages to run")
    parser.add_argument("--streams", nargs="+", choices=STREAMS, default=list(STREAMS), help="the streams to read")
    parser.add_argument("--available-now", action="store_true", help="process everything available, then exit")
    parser.add_argument(
        "--interval", default=HOT_INTERVAL, help="the hot path's trigger: gold and the PostgreSQL mirror, from Kafka"
    )
    parser.add_argument("--slow-interval", default=SLOW_INTERVAL, help="silver's Delta tables' and scoring's trigger")
    parser.add_argument("--bronze-interval", default=BRONZE_INTERVAL, help="bronze's trigger (it feeds the slow path)")
    parser.add_argument(
        "--generation", help="tables and checkpoints generation (default: the current one, see meetup-replay --list)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL mirror")
    parser.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        default=MAX_OFFSETS_PER_TRIGGER,
        help="bronze and gold: Kafka records per stream per batch",
    )
    parser.add_argument(
        "--max-bytes-per-trigger",
        type=int,
        default=MAX_BYTES_PER_TRIGGER,
        help="silver: bronze bytes per batch (bounds its MERGEs' and its mirror's memory)",
    )
    parser.add_argument(
        "--max-files-per-trigger",
        type=int,
        default=None,
        help="silver: bronze files per batch, as well (tests use it to cut small batches)",
    )
    parser.add_argument(
        "--lateness-minutes",
        type=float,
        default=DEFAULT_LATENESS_MS / 60_000,
        help="gold: how far behind its partition's newest mtime an RSVP may be before it counts as late",
    )
    parser.add_argument(
        "--metrics-every",
        type=float,
        default=METRICS_EVERY_S,
        metavar="SECONDS",
        help="append the batches' progress and phases to gold/pipeline_metrics and gold/batch_phases this "
        f"often (freshness rows go every {FRESHNESS_EVERY_S:.0f} s)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=float,
        default=SNAPSHOT_EVERY_S,
        metavar="SECONDS",
        help="rebuild gold's snapshot tables (top groups, events, category trends) this often",
    )
    parser.add_argument(
        "--vacuum-every-minutes",
        type=float,
        default=60,
        help="vacuum every table (7-day retention) this often while streaming; 0 turns it off",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help=f"serve the chain's metrics for Prometheus on http://127.0.0.1:PORT/metrics (default "
        f"{metrics_endpoint.CHAIN_PORT}, skipped if taken), and Spark's on its UI port; 0: neither",
    )  # fmt: skip
    return parser


def options_from_args(args: argparse.Namespace) -> ChainOptions:
    """meetup-chain's command line as the chain's options."""
    return ChainOptions(
        stages=tuple(args.stages),
        streams=tuple(args.streams),
        available_now=args.available_now,
        interval=args.interval,
        slow_interval=args.slow_interval,
        bronze_interval=args.bronze_interval,
        mirror_to_postgres=not args.no_postgres,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        max_files_per_trigger=args.max_files_per_trigger,
        max_bytes_per_trigger=args.max_bytes_per_trigger,
        lateness_ms=int(args.lateness_minutes * 60_000),
        vacuum_every_s=args.vacuum_every_minutes * 60 if args.vacuum_every_minutes > 0 else None,
        metrics_every=args.metrics_every,
        snapshot_every_s=args.snapshot_every,
    )


@cli.command("meetup-chain", checkpoints.LostCheckpoint, generations.GenerationError)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = health.settings_for(["kafka", "s3"] + ([] if args.no_postgres else ["postgres"]))
    layout = generations.layout(settings, args.generation)
    options = options_from_args(args)
    queries = query_names(options)
    checkpoints.check(settings, layout, queries)
    # before Spark starts: a port given and taken fails in a second
    metrics_endpoint.serve(args.metrics_port, metrics_endpoint.CHAIN_PORT, "meetup-chain")
    spark = build_spark(settings, "meetup-chain", extra_conf=None if args.metrics_port == 0 else exporter.SPARK_CONF)
    if args.metrics_port != 0 and spark.sparkContext.uiWebUrl:
        ui = spark.sparkContext.uiWebUrl
        log.info("Spark's metrics on %s/metrics/prometheus/ and %s/metrics/executors/prometheus", ui, ui)
    spark.sparkContext.setLogLevel("WARN")  # spark-submit's default INFO buries the chain's own progress
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a local or submitted driver has a JVM gateway"
    for logger in QUIET_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(logger, jvm.org.apache.logging.log4j.Level.ERROR)
    stop_event = StopRequest()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_event.set)
    log.info("%s for %s under %s/%s", ", ".join(args.stages), ", ".join(args.streams), layout.root, layout.generation)
    run_chain(spark, settings, layout=layout, options=options, stop_event=stop_event)
    spark.stop()
    log.info("stopped cleanly" if stop_event.is_set() else "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
