"""A Meetup-compatible stream server: replays captures byte-for-byte, or streams the generator.

    meetup-replay-server --captures data/rsvps/*.jsonl --pace recorded --speed 10 --rebase --loop
    meetup-replay-server --generate --count 1000000 --pace max

Speaks the retired Meetup stream protocol on one port, for `/2/rsvps`, `/2/event_comments` and `/2/photos`,
over the three transports Meetup served (see docs/ingest.md, "The stream protocol"):
- HTTP streaming: `GET` answers with a response that never ends (chunked transfer encoding), one message
  per chunk, each a JSON object and a newline;  `curl -sN http://127.0.0.1:8765/2/rsvps`
- websockets: the same paths, one JSON text frame per message;
- long polling: `?callback=NAME` answers at once with `NAME([...])`, the messages due so far after
  `since_mtime`; the client polls again with the greatest mtime it got.
Parameters: `since_mtime=MS` (resume: what has a stream clock of at least MS; greater than MS when polling),
`since_count=N` (the first N messages at once, then paced), `event_id=ID` (one event's messages). A bad
parameter gets HTTP 400 and a one-line reason; at most 10 connections per client address (429 beyond).

Every transport sends the same deterministic sequence (frames.py: captures or generator, then the fault
knobs), paced the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import logging
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import WSMsgType, web

from common import cli
from ingest import frames as fr
from ingest.protocol import PATH_STREAMS, STREAM_PATHS, extract_event

log = logging.getLogger(__name__)

FrameSource = Callable[[], Iterator[bytes]]
DEFAULT_MAX_GAP_S = 10.0
MAX_CONNECTIONS_PER_ADDRESS = 10
KEEPALIVE_S = 10.0  # HTTP streaming: a bare newline after this much silence, so a client can tell a dead peer
LONG_POLL_WAIT_S = 20.0  # long polling: how long a poll with nothing due waits for the next message
LONG_POLL_MAX = 1000  # long polling: messages per answer (a poll never splits one stream-clock instant)
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


@dataclass(frozen=True)
class Pace:
    mode: str = "max"  # max | rate | recorded
    rate: float = 100.0  # frames per second, for mode "rate"
    speed: float = 1.0  # times real time, for mode "recorded"


@dataclass
class ServerStats:
    connections: int = 0
    frames_sent: int = 0
    refused: int = 0


class BadRequest(ValueError):
    """A parameter the protocol does not allow; the message is the one-line reason sent with HTTP 400."""


@dataclass(frozen=True)
class StreamParams:
    since_mtime: int | None = None
    since_count: int | None = None
    event_id: str | None = None
    callback: str | None = None


def parse_params(query: Mapping[str, str]) -> StreamParams:
    """The protocol's parameters from a request's query (a mapping of name -> value); BadRequest if invalid."""

    def integer(name: str) -> int | None:
        value = query.get(name)
        if value is None:
            return None
        if not re.fullmatch(r"-?\d+", value):
            raise BadRequest(f"{name} must be an integer, got {value!r}")
        return int(value)

    since_mtime, since_count = integer("since_mtime"), integer("since_count")
    if since_mtime is not None and since_count is not None:
        raise BadRequest("since_count and since_mtime cannot be used together")
    if since_count is not None and since_count < 0:
        raise BadRequest(f"since_count must be 0 or more, got {since_count}")
    event_id = query.get("event_id")
    if event_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", event_id):
        raise BadRequest(f"event_id must be letters and digits, got {event_id!r}")
    callback = query.get("callback")
    if callback is not None and not _CALLBACK.fullmatch(callback):
        raise BadRequest(f"callback must be a JavaScript function name, got {callback!r}")
    return StreamParams(since_mtime, since_count, event_id, callback)


class _Out:
    """One streaming connection's wire: how a message, a keep-alive, the end and the faults look on it.
    The connection faults act on the transport underneath: an abrupt drop, and a stall (no more reading,
    so over websockets no more pongs either: a dead peer)."""

    keepalive_s: float | None = None

    def __init__(self, request: web.Request):
        self.request = request

    async def send(self, frame: bytes) -> None: ...
    async def keepalive(self) -> None: ...
    async def end(self, stopping: bool) -> None: ...

    def drop(self, frame: bytes) -> None:
        self.abort()  # abrupt: no close, as a dropped network would

    def abort(self) -> None:
        if (transport := self.request.transport) is not None:  # None: the connection is already gone
            transport.abort()

    def stall(self) -> None:
        if (transport := self.request.transport) is not None:
            transport.pause_reading()


class _HttpOut(_Out):
    keepalive_s = KEEPALIVE_S

    def __init__(self, request: web.Request, response: web.StreamResponse):
        super().__init__(request)
        self.response = response

    async def send(self, frame: bytes) -> None:
        await self.response.write(frame + b"\n")  # one chunk

    async def keepalive(self) -> None:
        await self.response.write(b"\n")

    async def end(self, stopping: bool) -> None:
        await self.response.write_eof()  # the last (empty) chunk: a normal end, also when stopping

    def drop(self, frame: bytes) -> None:
        half = frame[: len(frame) // 2]  # mid-chunk, as a dropped network would leave it
        if (transport := self.request.transport) is not None:
            transport.write(b"%x\r\n" % (len(frame) + 1) + half)
        self.abort()


class _WebSocketOut(_Out):
    def __init__(self, request: web.Request, ws: web.WebSocketResponse):
        super().__init__(request)
        self.ws = ws

    async def send(self, frame: bytes) -> None:
        await self.ws.send_frame(frame, WSMsgType.TEXT)  # as received, even when not UTF-8 (a malformed frame)

    async def end(self, stopping: bool) -> None:
        await self.ws.close(
            code=1001 if stopping else 1000, message=b"server stopping" if stopping else b"end of stream"
        )


class ReplayServer:
    """Serves each configured stream; every connection gets the full deterministic sequence."""

    def __init__(self, sources: dict[str, FrameSource], *, pace: Pace | None = None, faults: fr.Faults | None = None):
        self.sources = sources
        self.pace = pace or Pace()
        self.faults = faults or fr.Faults()
        self.stats = ServerStats()
        self._open: Counter[str] = Counter()  # open connections per client address
        self._started = time.monotonic()  # long polling's timeline starts with the server
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    def sequence(self, stream: str, params: StreamParams) -> Iterator[tuple[int, bytes]]:
        """(stream clock, frame) in order: the source, its faults, then the request's event and resume point."""
        frames = fr.inject_faults(self.sources[stream](), self.faults)
        if params.event_id is not None:  # before the clock: a client resumes from the mtimes it was sent
            frames = (frame for frame in frames if extract_event(frame) == params.event_id)
        clocked = fr.with_clock(frames)
        return clocked if params.since_mtime is None else fr.resume_from(clocked, params.since_mtime)

    # -- HTTP ---------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        stream = PATH_STREAMS.get(request.path)
        if stream is None:
            return _text(404, f"unknown stream {request.path}; try {', '.join(STREAM_PATHS.values())}")
        if stream not in self.sources:
            return _text(404, f"this server has no source for {request.path}")
        try:
            params = parse_params(request.query)
        except BadRequest as error:
            return _text(400, str(error))
        address = request.remote or "?"
        if self._open[address] >= MAX_CONNECTIONS_PER_ADDRESS:
            self.stats.refused += 1
            return _text(429, f"at most {MAX_CONNECTIONS_PER_ADDRESS} connections per client address")
        self._open[address] += 1
        self.stats.connections += 1
        try:
            if params.callback is not None:
                return await self._long_poll(stream, params, params.callback)
            ws = web.WebSocketResponse(
                heartbeat=None if self.faults.stall_after else 20.0, compress=False, max_msg_size=0
            )
            if ws.can_prepare(request).ok:
                await ws.prepare(request)
                reader = asyncio.ensure_future(_drain(ws))  # answers the client's pings, sees its close
                try:
                    await self._pump(_WebSocketOut(request, ws), stream, params)
                finally:
                    reader.cancel()
                return ws
            response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8", **NO_CACHE})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await self._pump(_HttpOut(request, response), stream, params)
            return response
        except ConnectionResetError:  # the client went away; nothing to answer
            return web.Response(status=499)
        finally:
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]

    async def _pump(self, out: _Out, stream: str, params: StreamParams) -> None:
        """The sequence onto one streaming connection, paced, with the connection faults."""
        burst = params.since_count or 0  # since_count: the first N at once, the pace starts after them
        sent = 0
        started, first_clock = time.monotonic(), 0  # the pace's origin, set again where the burst ends
        for clock, frame in self.sequence(stream, params):
            if self.faults.disconnect_every and sent >= self.faults.disconnect_every:
                out.drop(frame)
                return
            if self.faults.stall_after and sent >= self.faults.stall_after:
                out.stall()
                await self._stopping(3600)  # until the server stops
                out.abort()
                return
            if sent == burst:
                started, first_clock = time.monotonic(), clock
            delay = 0.0 if sent < burst else self._delay(sent - burst, clock - first_clock, started)
            while delay > 0:  # a recorded gap may last hours: a stop must not wait for it
                if await self._stopping(min(delay, out.keepalive_s or delay)):
                    await out.end(stopping=True)
                    return
                delay = self._delay(sent - burst, clock - first_clock, started)
                if delay > 0:
                    await out.keepalive()
            await out.send(frame)
            sent += 1
            self.stats.frames_sent += 1
            if sent % 512 == 0:
                await asyncio.sleep(0)  # let pings and other connections through at full speed
        await out.end(stopping=False)

    async def _long_poll(self, stream: str, params: StreamParams, callback: str) -> web.Response:
        """`NAME([...])`: the messages after since_mtime that are due by now on the server's timeline (all of
        them at pace max; at most LONG_POLL_MAX, ending at a stream-clock boundary so that the next poll,
        since the greatest mtime received, continues exactly there). With nothing due, waits for the next."""
        after = params.since_mtime  # a poll takes what is strictly later than the greatest mtime the client has
        taken: list[bytes] = []
        deadline = time.monotonic() + LONG_POLL_WAIT_S
        first_clock = last_clock = None
        for index, (clock, frame) in enumerate(self.sequence(stream, StreamParams(event_id=params.event_id))):
            first_clock = clock if first_clock is None else first_clock
            if after is not None and clock <= after:
                continue
            if not (taken and clock == last_clock):  # an instant already begun is always answered whole
                if len(taken) >= LONG_POLL_MAX:
                    break
                wait = self._started + self._offset(index, clock - first_clock) - time.monotonic()
                if wait > 0 and (taken or time.monotonic() + wait > deadline or await self._stopping(wait)):
                    break  # what is due is answered now; the rest is for the next poll
            taken.append(frame)
            last_clock = clock
        self.stats.frames_sent += len(taken)
        body = callback.encode() + b"([" + b",".join(taken) + b"])"
        return web.Response(body=body, headers={"Content-Type": "application/javascript; charset=utf-8", **NO_CACHE})

    def _offset(self, index: int, clock_elapsed_ms: int) -> float:
        """Seconds from the start of a paced sequence to its message `index`."""
        if self.pace.mode == "rate":
            return index / self.pace.rate
        if self.pace.mode == "recorded":
            return clock_elapsed_ms / 1000 / self.pace.speed
        return 0.0

    def _delay(self, sent: int, clock_elapsed_ms: int, started: float) -> float:
        return started + self._offset(sent, clock_elapsed_ms) - time.monotonic()

    async def _stopping(self, timeout: float) -> bool:
        """Waits up to timeout; True when the server is stopping."""
        if self._stop is None:
            raise RuntimeError("the server is not serving (serve() sets up its stop)")
        stop = self._stop[1]
        await asyncio.wait([stop], timeout=timeout)
        return stop.done()

    async def serve(self, host: str, port: int, *, ready: Callable[[int], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        self._stop = (loop, stop)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=2)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        try:
            bound = int(runner.addresses[0][1])
            if ready is not None:
                ready(bound)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, _resolve, stop)
                except (RuntimeError, ValueError):
                    pass  # not the main thread (tests run the server in a thread)
            await stop
        finally:
            await runner.cleanup()

    def shutdown(self) -> None:
        """Stop `serve` from another thread (again: nothing)."""
        if self._stop is None:
            return
        loop, stop = self._stop
        try:
            loop.call_soon_threadsafe(_resolve, stop)
        except RuntimeError:  # the loop has already ended: it stopped
            pass


def _resolve(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _ in ws:  # the client sends nothing but pings (answered here) and its close
        pass


def _text(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=NO_CACHE)


def capture_source(
    paths: list[Path],
    *,
    rebase: bool,
    loop: bool,
    max_gap_s: float | None = None,
    new_ids_each_loop: bool = False,
    first_pass: int = 0,
    start_at_ms: int | None = None,
) -> FrameSource:
    """The captures end to end. Rebased, pauses in them longer than max_gap_s (10 s by default) are cut short,
    so the stream never goes quiet for days."""
    captures = [fr.read_capture([path]) for path in paths]
    if max_gap_s is None and rebase:
        max_gap_s = DEFAULT_MAX_GAP_S
    max_gap_ms = None if max_gap_s is None else int(max_gap_s * 1000)
    # fixed at start, so reconnects see the same times
    rebase_to = (start_at_ms or int(time.time() * 1000)) if rebase else None
    return lambda: fr.replay(
        captures, rebase_to_ms=rebase_to, loop=loop, max_gap_ms=max_gap_ms, new_ids_each_loop=new_ids_each_loop,
        first_pass=first_pass,
    )  # fmt: skip


FAULT_HELP = {
    "duplicate": "are sent twice",
    "stale": "are followed by an earlier frame sent again (an older mtime)",
    "malformed": "are replaced by a broken variant",
    "extra-field": "carry an unknown top-level field",
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("meetup-replay-server", __doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="the port to listen on")
    source = parser.add_argument_group("source")
    source.add_argument("--captures", nargs="*", default=[], help="JSONL capture files (globs allowed) for /2/rsvps")
    source.add_argument("--generate", action="store_true", help="serve all three streams from the generator")
    source.add_argument("--count", type=int, default=0, help="generated RSVPs per connection (0: endless)")
    source.add_argument("--seed", type=int, default=1, help="the generator's seed (the same seed, the same stream)")
    source.add_argument("--rebase", action="store_true", help="shift times so the first capture starts now")
    source.add_argument(
        "--start-at", type=int, default=None, metavar="EPOCH_MS",
        help="the stream's first time instead of now (--rebase, and the generator): meetup-demo passes the newest "
        "time its tables have seen, so a second run is not late against the first run's stream",
    )  # fmt: skip
    source.add_argument(
        "--max-gap", type=float, default=None, metavar="SECONDS",
        help=f"cut pauses in the captures to this (default with --rebase: {DEFAULT_MAX_GAP_S:g} s; without: none)",
    )  # fmt: skip
    source.add_argument("--loop", action="store_true", help="replay captures forever (times keep moving on)")
    source.add_argument(
        "--new-ids-each-loop", action="store_true",
        help="with --loop: each pass's RSVPs are new ones, by new members to new events of new groups "
        "(rsvp_id, member_id, group_id + pass x 10^10, event_id + '~pass'), not newer versions",
    )  # fmt: skip
    source.add_argument(
        "--first-pass", type=int, default=0, metavar="N",
        help="number passes from N: the captures' RSVPs, members and groups move by N x 10^10 and their events "
        "take '~N' (the generator's rsvp_ids move too), so a later run over the same tables streams new RSVPs "
        "rather than the last run's again (meetup-demo counts its runs)",
    )  # fmt: skip
    pace = parser.add_argument_group("pace")
    pace.add_argument(
        "--pace", choices=["max", "rate", "recorded"], default="recorded",
        help="max: as fast as the client reads; rate: --rate frames/s; recorded: the captures' own timing",
    )  # fmt: skip
    pace.add_argument("--rate", type=float, default=20.0, help="frames/s for --pace rate")
    pace.add_argument("--speed", type=float, default=1.0, help="times real time for --pace recorded")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--fault-seed", type=int, default=0, help="the seed of the faults' random choices")
    for name, what in FAULT_HELP.items():
        text = f"this share of frames {what}"
        faults.add_argument(f"--fault-{name}", type=float, default=0.0, metavar="RATE", help=text)
    faults.add_argument(
        "--disconnect-every", type=int, default=0, metavar="N", help="close each connection after N frames (0: never)"
    )
    faults.add_argument(
        "--stall-after", type=int, default=0, metavar="N",
        help="after N frames, keep the connection open but send nothing (0: never)",
    )  # fmt: skip
    return parser


def sources_from_args(args: argparse.Namespace) -> dict[str, FrameSource]:
    sources: dict[str, FrameSource] = {}
    if args.generate:
        from ingest.generator import generator_sources

        generated = generator_sources(seed=args.seed, count=args.count or None, start_ms=args.start_at)
        if args.first_pass:
            rsvps, offset = generated["rsvps"], args.first_pass * fr.ID_STRIDE
            generated["rsvps"] = lambda: (fr.new_rsvp_ids(frame, offset) for frame in rsvps())
        sources.update(generated)
    if args.captures:
        paths = sorted({Path(p) for pattern in args.captures for p in glob.glob(pattern)})
        if not paths:
            raise cli.CommandError(f"no capture matches {args.captures}", status=cli.USAGE)
        sources["rsvps"] = capture_source(
            paths, rebase=args.rebase, loop=args.loop, max_gap_s=args.max_gap, new_ids_each_loop=args.new_ids_each_loop,
            first_pass=args.first_pass, start_at_ms=args.start_at,
        )  # fmt: skip
    if not sources:
        raise cli.CommandError("give --captures FILE... and/or --generate", status=cli.USAGE)
    return sources


@cli.command("meetup-replay-server")
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
        urls = ", ".join(f"http://{args.host}:{port}{STREAM_PATHS[s]}" for s in sources)
        log.info(
            "serving %s (HTTP streaming, websockets at ws://, long polling with ?callback=; pace %s)", urls, args.pace
        )

    try:
        asyncio.run(server.serve(args.host, args.port, ready=ready))
    except OSError as error:
        raise cli.CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    log.info("stopped after %s frames", server.stats.frames_sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
