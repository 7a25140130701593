"""meetup-demo: the whole system on the local stack, in one terminal (`make demo` runs it).

    meetup-demo                         # real captures, rebased to now, looping, 10 x real time
    meetup-demo --speed 1               # real time
    meetup-demo --source generator --rate 50
    meetup-demo --stop                  # stop a demo left running elsewhere

It starts, each as its own process with its log in .stack/demo/:
  replay server  a Meetup-compatible stream on ws://127.0.0.1:8765 (ingest/server.py)
  producer       the stream into Kafka (ingest/producer.py)
  chain          Kafka -> bronze -> silver (-> PostgreSQL) -> gold -> scoring (pipelines/chain.py)
  app            the Streamlit app on http://127.0.0.1:8501 (app/)
and trains a first model (meetup-train, then meetup-categories) once silver holds --train-after RSVPs and
no model exists. Every --status-every seconds it prints what the tables hold. Ctrl-C stops everything
cleanly (the stack stays up); the next run resumes on the same tables and checkpoints.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common import cli, health
from common.settings import PROJECT_ROOT, Settings, find_stack_dir
from lakehouse import catalogue
from ml.registry import Registry
from pipelines.chain import CHAIN_STOP_BUDGET_S
from stack import kafka as kafka_service
from stack.procs import StackError, ensure_port_free, log_tail, port_open, read_pid, spawn, terminate, wait_until

if TYPE_CHECKING:
    from app.reader import Lakehouse

CAPTURES = str(PROJECT_ROOT / "data" / "rsvps" / "*.jsonl")


def log(message: str) -> None:
    print(f"demo: {message}", flush=True)


@dataclass
class Part:
    name: str
    command: list[str]
    what: str
    state: Path
    stop_within: float = 30.0  # seconds between its SIGTERM and a SIGKILL

    @property
    def log_file(self) -> Path:
        return self.state / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.state / f"{self.name}.pid"

    def start(self, env: dict[str, str]) -> None:
        spawn(self.command, log_file=self.log_file, pid_file=self.pid_file, env=env)

    def alive(self) -> bool:
        pid = read_pid(self.pid_file)
        if pid is not None:
            try:  # a child of this process that has exited stays a zombie, and looks alive, until waited for
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return False
            except ChildProcessError:
                pass  # not our child (a demo left running, seen by --stop)
        return pid is not None

    def stop(self) -> bool:
        # SIGTERM to the part itself, not its group: the chain stops its queries through its JVM first
        return terminate(self.pid_file, timeout=self.stop_within, leader_only=True)


def bin_(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


PASSES_PER_RUN = 1000  # loop passes a demo may make before its RSVP ids would meet the next demo's


def next_first_pass(state: Path) -> int:
    """The replay server's first pass for this run (`--first-pass`): each demo over the same stack streams
    RSVPs of its own, so a second demo's Live page and scored feed move on instead of seeing the first
    demo's RSVPs again as old news. The runs are counted in the state folder."""
    counter = state / "runs"
    runs = int(counter.read_text().strip() or 0) if counter.is_file() else 0
    counter.write_text(f"{runs + 1}\n")
    return runs * PASSES_PER_RUN


def start_at(newest_ms: int | None, now_ms: int) -> int | None:
    """When this run's stream starts: now, or just after the newest time the tables have seen if that is later.
    At 10 x real time a demo's stream runs ahead of the clock (an hour of demo is ten hours of stream), and a
    second run starting at "now" would be hours behind the first run's stream: gold would count none of its
    RSVPs, all late."""
    if newest_ms is None or newest_ms < now_ms:
        return None
    return newest_ms + 1000


def newest_stream_time(settings: Settings) -> int | None:
    """The greatest RSVP time gold has seen in the current generation (gold/watermarks), or None."""
    from app.reader import Lakehouse, NoData, ServiceDown

    try:
        marks = Lakehouse(settings).table(catalogue.GOLD_WATERMARKS, ["max_mtime"])
    except (NoData, ServiceDown):
        return None
    return None if marks.empty else int(marks["max_mtime"].max())


def parts(args: argparse.Namespace, first_pass: int = 0, start_at_ms: int | None = None) -> list[Part]:
    if args.source == "captures":
        source = ["--captures", CAPTURES, "--rebase", "--loop", "--new-ids-each-loop", "--pace", "recorded",
                  "--speed", str(args.speed)]  # fmt: skip
        described = f"the real captures, rebased to now, looping with new RSVP ids, {args.speed:g} x real time"
    else:
        source = ["--generate", "--pace", "rate", "--rate", str(args.rate)]
        described = f"the generator, {args.rate:g} RSVPs/s"
    if start_at_ms:
        source += ["--start-at", str(start_at_ms)]
        described += ", after the stream time the tables have reached"
    if first_pass:
        source += ["--first-pass", str(first_pass)]
        described += f" (run {first_pass // PASSES_PER_RUN + 1} on these tables: ids from pass {first_pass})"
    stream, state = f"ws://127.0.0.1:{args.stream_port}", args.state_dir
    return [
        Part("server", [bin_("meetup-replay-server"), "--port", str(args.stream_port), *source],
             f"{stream}: {described}", state),
        Part("producer", [bin_("meetup-ingest"), "--url", stream, "--streams", "rsvps"], "the stream into Kafka",
             state),
        Part("chain", [bin_("meetup-chain"), "--streams", "rsvps", "--interval", args.interval,
                       *shlex.split(args.chain_args)],
             f"bronze, silver (+ PostgreSQL), gold, score; gold and PostgreSQL every {args.interval}", state,
             stop_within=CHAIN_STOP_BUDGET_S),
        Part("app", [bin_("meetup-app"), "--port", str(args.app_port)], f"http://127.0.0.1:{args.app_port}", state),
    ]  # fmt: skip


class Trainer(threading.Thread):
    """Trains a first model (and the group categories) once silver holds enough RSVPs, if none exists."""

    def __init__(self, settings: Settings, threshold: int, stopping: threading.Event, state: Path):
        super().__init__(name="demo-trainer", daemon=True)
        self.settings, self.threshold, self.stopping, self.log_file = settings, threshold, stopping, state / "train.log"
        self.process: subprocess.Popen[bytes] | None = None
        current = Registry(settings).current()  # before the thread starts, so the first report is right
        self.needed = current is None
        self.state = (
            f"no model yet: trains once silver holds {threshold:,} RSVPs" if self.needed else f"model {current} exists"
        )

    def run(self) -> None:
        settings = self.settings
        while self.needed and not self.stopping.wait(10):
            if silver_rsvps(settings) < self.threshold:
                continue
            for step in ("meetup-train", "meetup-categories"):
                self.state = f"running {step} (log {self.log_file})"
                log(self.state)
                with open(self.log_file, "ab") as out:
                    self.process = subprocess.Popen([bin_(step)], stdout=out, stderr=subprocess.STDOUT,
                                                    env=settings.child_env(), start_new_session=True)  # fmt: skip
                    code = self.process.wait()
                if self.stopping.is_set():
                    return
                if code != 0:
                    self.state = f"{step} failed (exit {code}); see {self.log_file}"
                    log(self.state + log_tail(self.log_file))
                    return
            self.state = f"model {Registry(settings).current()} trained; the chain scores with it from its next batch"
            log(self.state)
            return

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)


def silver_rsvps(settings: Settings, lake: Lakehouse | None = None) -> int:
    from app.reader import Lakehouse, NoData, ServiceDown

    try:
        return len((lake or Lakehouse(settings)).table(catalogue.SILVER_RSVPS, ["rsvp_id"]))
    except (NoData, ServiceDown):
        return 0


def status(settings: Settings) -> str:
    from app import queries, reader

    lake = reader.Lakehouse(settings)
    found = []
    readers: tuple[tuple[str, Callable[[], str]], ...] = (
        ("totals", lambda: "yes {yes:,} no {no:,}".format(**queries.totals(lake))),
        ("silver", lambda: f"{silver_rsvps(settings, lake):,} RSVPs"),
        ("scored", lambda: f"{len(lake.table(catalogue.GOLD_SCORED_RSVPS, ['rsvp_id'])):,}"),
        ("quarantined", lambda: f"{len(lake.table(catalogue.SILVER_QUARANTINE, ['offset'])):,}"),
    )
    for label, read in readers:
        try:
            found.append(f"{label} {read()}")
        except (reader.NoData, reader.ServiceDown):
            found.append(f"{label} -")
    return ", ".join(found)


def stop_all(running: list[Part]) -> None:
    # the source first, then the producer, then the chain (it ends between batches), then the app;
    # a second Ctrl-C must not cut this short and leave parts running
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if any(part.alive() for part in running):
        log("stopping (the chain finishes its running micro-batch first; further Ctrl-C is ignored)")
    for part in running:
        if part.alive():
            log(f"stopping {part.name}")
            part.stop()


@cli.command("meetup-demo", StackError)
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("meetup-demo", __doc__)
    parser.add_argument(
        "--source", choices=["captures", "generator"], default="captures",
        help="what the replay server streams: the real captures, or the generator",
    )  # fmt: skip
    parser.add_argument("--speed", type=float, default=10.0, help="times real time, for the captures")
    parser.add_argument("--rate", type=float, default=20.0, help="RSVPs per second, for the generator")
    parser.add_argument(
        "--interval", default="5 seconds",
        help="the chain's hot-path trigger (gold and the PostgreSQL mirror); longer than meetup-chain's 2 s, "
        "since each batch has a fixed cost and the demo shares the machine with the app and a browser",
    )  # fmt: skip
    parser.add_argument(
        "--chain-args", default="", metavar="ARGS",
        help="more meetup-chain options, as one string: --chain-args '--slow-interval \"5 minutes\"'",
    )  # fmt: skip
    parser.add_argument("--stream-port", type=int, default=8765, help="the replay server's port")
    parser.add_argument("--app-port", type=int, default=8501, help="the app's port")
    parser.add_argument("--train-after", type=int, default=1000, help="silver RSVPs before the first training")
    parser.add_argument("--status-every", type=float, default=30.0, help="seconds between status lines")
    parser.add_argument("--no-browser", action="store_true", help="do not open the app in a browser")
    parser.add_argument("--stop", action="store_true", help="stop a demo left running, and exit")
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="logs and pid files (default: the stack folder's demo/)"
    )
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir or find_stack_dir() / "demo"
    args.state_dir.mkdir(parents=True, exist_ok=True)
    plan = parts(args)
    if args.stop:
        stop_all(plan)
        return 0
    settings = health.settings_for(["kafka", "s3", "postgres"])
    kafka_service.ensure_topics(settings, ("rsvps",))
    already = [p.name for p in plan if p.alive()]
    if already:
        print(f"meetup-demo: a demo is already running ({', '.join(already)}); stop it with Ctrl-C in its terminal "
              "or `meetup-demo --stop`", file=sys.stderr)  # fmt: skip
        return 2
    ensure_port_free("127.0.0.1", args.stream_port, service="replay server", setting="--stream-port")
    ensure_port_free("127.0.0.1", args.app_port, service="app", setting="--app-port")
    plan = parts(args, next_first_pass(args.state_dir), start_at(newest_stream_time(settings), int(time.time() * 1000)))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background with it ignored
    trainer = Trainer(settings, args.train_after, stopping, args.state_dir)
    env = settings.child_env()  # every part sees the settings this demo checked
    started: list[Part] = []
    try:
        for part in plan:
            part.start(env)
            started.append(part)
            if part.name == "server":
                wait_until(lambda: port_open("127.0.0.1", args.stream_port), what="the replay server", timeout=60,
                           log_file=part.log_file, alive=part.alive)  # fmt: skip
        app_url = f"http://127.0.0.1:{args.app_port}"
        wait_until(lambda: port_open("127.0.0.1", args.app_port), what="the app", timeout=120,
                   log_file=plan[-1].log_file, alive=plan[-1].alive)  # fmt: skip
        trainer.start()
        log("running (Ctrl-C stops everything; the stack stays up):")
        for part in plan:
            log(f"  {part.name:<9} {part.what}  [log {part.log_file}]")
        log(f"  model     {trainer.state}")
        log(f"open {app_url}  (the first tables appear after the chain's first batches, about a minute)")
        if not args.no_browser and (os.environ.get("DISPLAY") or sys.platform == "darwin"):
            webbrowser.open(app_url)
        next_status = time.monotonic() + args.status_every
        while not stopping.wait(1):
            dead = [p for p in plan if not p.alive()]
            if dead:
                for part in dead:
                    log(f"{part.name} exited{log_tail(part.log_file)}")
                return 1
            if time.monotonic() >= next_status:
                log(status(settings) + f"; model: {trainer.state}")
                next_status = time.monotonic() + args.status_every
        return 0
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 0
    except StackError as error:
        print(f"meetup-demo: {error}", file=sys.stderr)
        return 1
    finally:
        stopping.set()
        trainer.stop()
        stop_all(started)
        log("stopped")


if __name__ == "__main__":
    sys.exit(main())
