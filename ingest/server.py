"""A Meetup-compatible stream server: replays captures byte-for-byte, or streams the generator.

    meetup-replay-server --captures data/rsvps/*.jsonl --pace recorded --speed 10 --rebase --loop
    meetup-replay-server --generate --count 1000000 --pace max

Speaks the retired Meetup stream protocol: `ws://HOST:PORT/2/rsvps` (and `/2/event_comments`,
`/2/photos`), one JSON text frame per record and nothing else, `?since_mtime=<epoch ms>` to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ingest import frames as fr
from ingest.protocol import PATH_STREAMS, STREAM_PATHS

FrameSource = Callable[[], Iterator[bytes]]
DEFAULT_MAX_GAP_S = 10.0


@dataclass(frozen=True)
class Pace:
    mode: str = "max"  # max | rate | recorded
    rate: float = 100.0  # frames per second, for mode "rate"
    speed: float = 1.0  # times real time, for mode "recorded"


@dataclass
class ServerStats:
    connections: int = 0
    frames_sent: int = 0


class ReplayServer:
    """Serves each configured stream; every connection gets the full deterministic sequence."""

    def __init__(self, sources: dict[str, FrameSource], *, pace: Pace | None = None, faults: fr.Faults | None = None):
        self.sources = sources
        self.pace = pace or Pace()
        self.faults = faults or fr.Faults()
        self.stats = ServerStats()
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None

    def sequence(self, stream: str, since_mtime: int | None) -> Iterator[tuple[int, bytes]]:
        frames = fr.inject_faults(self.sources[stream](), self.faults)
        return fr.resume_from(fr.with_clock(frames), since_mtime)

    def process_request(self, connection: ServerConnection, request):
        path = urlparse(request.path).path
        stream = PATH_STREAMS.get(path)
        if stream is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"unknown stream {path}; try {', '.join(STREAM_PATHS.values())}\n"
            )
        if stream not in self.sources:
            return connection.respond(HTTPStatus.NOT_FOUND, f"this server has no source for {path}\n")
        since = parse_qs(urlparse(request.path).query).get("since_mtime", [None])[0]
        if since is not None and not since.lstrip("-").isdigit():
            return connection.respond(HTTPStatus.BAD_REQUEST, "since_mtime must be epoch milliseconds\n")
        return None

    async def handler(self, connection: ServerConnection) -> None:
        url = urlparse(connection.request.path)
        stream = PATH_STREAMS[url.path]
        since = parse_qs(url.query).get("since_mtime", [None])[0]
        self.stats.connections += 1
        sent = 0
        started, first_clock = time.monotonic(), None
        try:
            for clock, frame in self.sequence(stream, int(since) if since is not None else None):
                if self.faults.disconnect_every and sent >= self.faults.disconnect_every:
                    connection.transport.abort()  # abrupt: no close frame, as a dropped network would
                    return
                if self.faults.stall_after and sent >= self.faults.stall_after:
                    connection.transport.pause_reading()  # no more pongs either: a dead peer
                    await asyncio.wait([self._stop[1]], timeout=3600)  # until the server stops
                    connection.transport.abort()
                    return
                if first_clock is None:
                    first_clock = clock
                delay = self._delay(sent, clock - first_clock, started)
                if delay > 0:
                    # a recorded gap may last hours: a stop must not wait for it
                    await asyncio.wait([self._stop[1]], timeout=delay)
                    if self._stop[1].done():
                        await connection.close(1001, "server stopping")
                        return
                await connection.send(frame, text=True)
                sent += 1
                self.stats.frames_sent += 1
                if sent % 512 == 0:
                    await asyncio.sleep(0)  # let pings and other connections through at full speed
            await connection.close(1000, "end of stream")
        except ConnectionClosed:
            return

    def _delay(self, sent: int, clock_elapsed_ms: int, started: float) -> float:
        if self.pace.mode == "rate":
            return started + sent / self.pace.rate - time.monotonic()
        if self.pace.mode == "recorded":
            return started + clock_elapsed_ms / 1000 / self.pace.speed - time.monotonic()
        return 0.0

    async def serve(self, host: str, port: int, *, ready: Callable[[int], None] | None = None) -> None:
        async with serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            max_size=None,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
        ) as server:
            bound = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready(bound)
            stop = asyncio.get_running_loop().create_future()
            self._stop = (asyncio.get_running_loop(), stop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
                except (RuntimeError, ValueError):
                    pass  # not the main thread (tests run the server in a thread)
            await stop

    def shutdown(self) -> None:
        """Stop `serve` from another thread."""
        loop, stop = self._stop
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))


def capture_source(
    paths: list[Path], *, rebase: bool, loop: bool, max_gap_s: float | None = None, new_ids_each_loop: bool = False
) -> FrameSource:
    """The captures end to end. Rebased, pauses in them longer than max_gap_s (10 s by default) are cut short,
    so the stream never goes quiet for days."""
    captures = [fr.read_capture([path]) for path in paths]
    if max_gap_s is None and rebase:
        max_gap_s = DEFAULT_MAX_GAP_S
    max_gap_ms = None if max_gap_s is None else int(max_gap_s * 1000)
    rebase_to = int(time.time() * 1000) if rebase else None  # fixed at start: reconnects see the same times
    return lambda: fr.replay(
        captures, rebase_to_ms=rebase_to, loop=loop, max_gap_ms=max_gap_ms, new_ids_each_loop=new_ids_each_loop
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meetup-replay-server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    source = parser.add_argument_group("source")
    source.add_argument("--captures", nargs="*", default=[], help="JSONL capture files (globs allowed) for /2/rsvps")
    source.add_argument("--generate", action="store_true", help="serve all three streams from the generator")
    source.add_argument("--count", type=int, default=0, help="generated RSVPs per connection (0: endless)")
    source.add_argument("--seed", type=int, default=1)
    source.add_argument("--rebase", action="store_true", help="shift times so the first capture starts now")
    source.add_argument(
        "--max-gap", type=float, default=None, metavar="SECONDS",
        help=f"cut pauses in the captures to this (default with --rebase: {DEFAULT_MAX_GAP_S:g} s; without: none)",
    )  # fmt: skip
    source.add_argument("--loop", action="store_true", help="replay captures forever (times keep moving on)")
    source.add_argument(
        "--new-ids-each-loop", action="store_true",
        help="with --loop: each pass's RSVPs are new ones (rsvp_id + pass x 10^10), not newer versions",
    )  # fmt: skip
    pace = parser.add_argument_group("pace")
    pace.add_argument("--pace", choices=["max", "rate", "recorded"], default="recorded")
    pace.add_argument("--rate", type=float, default=20.0, help="frames/s for --pace rate")
    pace.add_argument("--speed", type=float, default=1.0, help="times real time for --pace recorded")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--fault-seed", type=int, default=0)
    for name in ("duplicate", "stale", "malformed", "extra-field"):
        faults.add_argument(f"--fault-{name}", type=float, default=0.0, metavar="RATE")
    faults.add_argument("--disconnect-every", type=int, default=0, metavar="N")
    faults.add_argument("--stall-after", type=int, default=0, metavar="N")
    return parser


def sources_from_args(args: argparse.Namespace) -> dict[str, FrameSource]:
    sources: dict[str, FrameSource] = {}
    if args.generate:
        from ingest.generator import generator_sources

        sources.update(generator_sources(seed=args.seed, count=args.count or None))
    if args.captures:
        paths = sorted({Path(p) for pattern in args.captures for p in glob.glob(pattern)})
        if not paths:
            raise SystemExit(f"meetup-replay-server: no capture matches {args.captures}")
        sources["rsvps"] = capture_source(
            paths, rebase=args.rebase, loop=args.loop, max_gap_s=args.max_gap, new_ids_each_loop=args.new_ids_each_loop
        )
    if not sources:
        raise SystemExit("meetup-replay-server: give --captures FILE... and/or --generate")
    return sources


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sources = sources_from_args(args)
    server = ReplayServer(
        sources,
        pace=Pace(args.pace, rate=args.rate, speed=args.speed),
        faults=fr.Faults(
            seed=args.fault_seed,
            duplicate=args.fault_duplicate,
            stale=args.fault_stale,
            malformed=args.fault_malformed,
            extra_field=args.fault_extra_field,
            disconnect_every=args.disconnect_every,
            stall_after=args.stall_after,
        ),
    )

    def ready(port: int) -> None:
        urls = ", ".join(f"ws://{args.host}:{port}{STREAM_PATHS[s]}" for s in sources)
        print(f"meetup-replay-server: serving {urls} (pace {args.pace})", file=sys.stderr, flush=True)

    try:
        asyncio.run(server.serve(args.host, args.port, ready=ready))
    except OSError as error:
        print(f"meetup-replay-server: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"meetup-replay-server: stopped after {server.stats.frames_sent} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
