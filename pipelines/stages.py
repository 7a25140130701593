"""The chain's stages as objects, and the options that a run of the chain takes.

Each stage says what it is (its name, its path: hot or slow, the trigger it runs on), which streaming
queries it starts and what they are called, and what must exist before they start. The chain
(`pipelines/chain.py`) composes them; nothing else spells a query's name.

    from pipelines.stages import ChainOptions, STAGES, query_names
    options = ChainOptions(stages=("bronze", "silver"), streams=("rsvps",), available_now=True)
    query_names(options)          # ['bronze-rsvps', 'silver-rsvps']

| stage  | path | trigger (`ChainOptions`) | queries |
|--------|------|--------------------------|---------|
| bronze | hot pool, own cadence | `bronze_interval` | `bronze-<stream>` for each stream |
| silver | slow | `slow_interval` | `silver-<stream>` for each stream (and the mirror when gold does not run) |
| gold   | hot | `interval` | `gold-rsvps`, and `mirror-rsvps` (the PostgreSQL mirror) beside it |
| score  | slow | `slow_interval` | `score-rsvps` |
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from common.settings import STREAMS, Settings
from common.spark import Trigger
from lakehouse.layout import Layout
from pipelines.bronze.job import ensure_bronze_table, start_bronze
from pipelines.cadence import BRONZE_INTERVAL, HOT_INTERVAL, SLOW_INTERVAL, SNAPSHOT_EVERY_S
from pipelines.gold import job as gold_job
from pipelines.gold.transforms import DEFAULT_LATENESS_MS
from pipelines.score import job as score_job
from pipelines.silver import mirror_job
from pipelines.silver.job import start_silver

# The chain's metrics are Delta appends, a commit each, sharing two cores with the stages: the freshness rows
# go every FRESHNESS_EVERY_S (the app's "as of" line reads them), the progress rows and phases every
# METRICS_EVERY_S (see pipelines/chain.py).
METRICS_EVERY_S = 60.0

Path = Literal["hot", "slow"]
Cadence = Literal["interval", "bronze_interval", "slow_interval"]


@dataclass(frozen=True)
class ChainOptions:
    """Everything a run of the chain can be told, with the chain's defaults (`meetup-chain --help`)."""

    stages: tuple[str, ...] = ("bronze", "silver", "gold", "score")
    streams: tuple[str, ...] = STREAMS
    available_now: bool = False
    interval: str = HOT_INTERVAL
    slow_interval: str = SLOW_INTERVAL
    bronze_interval: str = BRONZE_INTERVAL
    mirror_to_postgres: bool = True
    max_offsets_per_trigger: int | None = None
    max_files_per_trigger: int | None = None
    max_bytes_per_trigger: int | None = None
    progress_every: float = 15.0
    metrics_every: float = METRICS_EVERY_S
    lateness_ms: int = DEFAULT_LATENESS_MS
    starting_offsets: dict[str, str] = field(default_factory=dict)
    vacuum_every_s: float | None = None
    snapshot_every_s: float = SNAPSHOT_EVERY_S

    def __post_init__(self) -> None:
        unknown = [name for name in self.stages if name not in BY_NAME]
        if unknown:
            raise ValueError(f"no stage {', '.join(unknown)}; the stages are {', '.join(BY_NAME)}")

    def trigger(self, cadence: Cadence) -> Trigger:
        """A stage's trigger: its cadence's interval, or available-now."""
        return {"availableNow": True} if self.available_now else {"processingTime": getattr(self, cadence)}

    def starting(self, stream: str) -> str:
        return self.starting_offsets.get(stream, "earliest")

    @property
    def mirror_in(self) -> str | None:
        """The stage that mirrors RSVPs into PostgreSQL: gold (the hot path) when it runs, else silver, else
        none."""
        if not self.mirror_to_postgres or "rsvps" not in self.streams:
            return None
        return next((stage for stage in ("gold", "silver") if stage in self.stages), None)


@dataclass(frozen=True)
class Run:
    """What a stage's queries start with."""

    spark: SparkSession
    settings: Settings
    layout: Layout
    options: ChainOptions


@dataclass(frozen=True)
class Query:
    """One streaming query of a stage: its name, and how to start (or restart) it."""

    name: str
    start: Callable[[], StreamingQuery]


class Stage(ABC):
    name: ClassVar[str]
    path: ClassVar[Path]
    cadence: ClassVar[Cadence]

    @abstractmethod
    def query_names(self, options: ChainOptions) -> list[str]:
        """The queries this stage starts under these options (no Spark needed)."""

    @abstractmethod
    def queries(self, run: Run) -> list[Query]:
        """The queries, in the order of query_names, not started yet."""

    def ensure(self, run: Run) -> None:  # noqa: B027 - most stages need nothing before they start
        """What must exist before the queries start (tables that other stages write)."""


class PerStream(Stage):
    """A stage with one query per stream, `<stage>-<stream>`."""

    def query_names(self, options: ChainOptions) -> list[str]:
        return [f"{self.name}-{stream}" for stream in options.streams]

    def queries(self, run: Run) -> list[Query]:
        names = self.query_names(run.options)
        return [
            Query(name, functools.partial(self.start, run, stream))
            for name, stream in zip(names, run.options.streams, strict=True)
        ]

    @abstractmethod
    def start(self, run: Run, stream: str) -> StreamingQuery:
        """Start the stream's query."""


class Bronze(PerStream):
    name = "bronze"
    path = "hot"
    cadence = "bronze_interval"

    def start(self, run: Run, stream: str) -> StreamingQuery:
        o = run.options
        return start_bronze(
            run.spark, run.settings, run.layout, stream, trigger=o.trigger(self.cadence),
            max_offsets_per_trigger=o.max_offsets_per_trigger, starting_offsets=o.starting(stream),
        )  # fmt: skip


class Silver(PerStream):
    name = "silver"
    path = "slow"
    cadence = "slow_interval"

    def ensure(self, run: Run) -> None:
        for stream in run.options.streams:
            ensure_bronze_table(run.spark, run.layout, stream)

    def start(self, run: Run, stream: str) -> StreamingQuery:
        o = run.options
        return start_silver(
            run.spark, run.settings, run.layout, stream, trigger=o.trigger(self.cadence),
            mirror_to_postgres=o.mirror_in == "silver", max_files_per_trigger=o.max_files_per_trigger,
            max_bytes_per_trigger=o.max_bytes_per_trigger,
        )  # fmt: skip


class Gold(Stage):
    """Gold's counts from Kafka, and the PostgreSQL mirror's query beside it: the hot path."""

    name = "gold"
    path = "hot"
    cadence = "interval"

    def query_names(self, options: ChainOptions) -> list[str]:
        if "rsvps" not in options.streams:
            return []
        return [gold_job.QUERY] + ([mirror_job.QUERY] if options.mirror_in == "gold" else [])

    def queries(self, run: Run) -> list[Query]:
        o = run.options
        starts = {
            gold_job.QUERY: lambda: gold_job.start_gold(
                run.spark, run.settings, run.layout, trigger=o.trigger(self.cadence), lateness_ms=o.lateness_ms,
                max_offsets_per_trigger=o.max_offsets_per_trigger, starting_offsets=o.starting("rsvps"),
            ),
            mirror_job.QUERY: lambda: mirror_job.start_mirror(
                run.spark, run.settings, run.layout, trigger=o.trigger(self.cadence),
                max_offsets_per_trigger=o.max_offsets_per_trigger, starting_offsets=o.starting("rsvps"),
            ),
        }  # fmt: skip
        return [Query(name, starts[name]) for name in self.query_names(o)]


class Score(Stage):
    """The yes/no model on every new RSVP (pipelines/score/job.py)."""

    name = "score"
    path = "slow"
    cadence = "slow_interval"

    def query_names(self, options: ChainOptions) -> list[str]:
        return [score_job.QUERY] if "rsvps" in options.streams else []

    def ensure(self, run: Run) -> None:
        if "rsvps" in run.options.streams:
            ensure_bronze_table(run.spark, run.layout, "rsvps")

    def queries(self, run: Run) -> list[Query]:
        start = lambda: score_job.start_scoring(  # noqa: E731
            run.spark, run.settings, run.layout, trigger=run.options.trigger(self.cadence)
        )
        return [Query(name, start) for name in self.query_names(run.options)]


# In the order an available-now run goes through them: gold's snapshots name events from silver, so silver
# goes first, and scoring reads what bronze wrote.
STAGES: tuple[Stage, ...] = (Bronze(), Silver(), Gold(), Score())
BY_NAME = {stage.name: stage for stage in STAGES}
STAGE_NAMES = tuple(BY_NAME)
HOT_QUERY = gold_job.QUERY  # the query whose heartbeat tells the app whether the hot path runs


def selected(options: ChainOptions) -> list[Stage]:
    """The stages a run starts, in STAGES' order."""
    return [stage for stage in STAGES if stage.name in options.stages]


def query_names(options: ChainOptions) -> list[str]:
    """Every streaming query a run with these options starts."""
    return [name for stage in selected(options) for name in stage.query_names(options)]
