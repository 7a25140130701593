"""Follow Meetup-protocol streams into Kafka: each message exactly as received, keyed by record id.

    meetup-ingest --url http://127.0.0.1:8765 --streams rsvps event_comments photos   # HTTP streaming
    meetup-ingest --url ws://127.0.0.1:8765                                           # websockets

The URL's scheme picks the transport: `http://` and `https://` read Meetup's HTTP stream (one message per
line of a response that never ends), `ws://` and `wss://` its websocket (one message per text frame).
Each stream runs in its own thread with its own connection; one idempotent producer (acks=all,
compressed) serves them all. A dead connection (websockets: no frame and no pong within the ping timeout;
HTTP: no byte, message or keep-alive line, for the idle timeout) or a dropped one is re-opened with
exponential backoff and full jitter, resuming with `since_mtime`; messages the server sends again at the
resume point are recognised and not produced twice.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import websocket
from confluent_kafka import KafkaError, Message, Producer

from common import cli, health, metrics_endpoint
from common.settings import DEFAULT_INGEST_URL, STREAMS, Settings
from ingest.protocol import STREAM_PATHS, extract_key, extract_mtime

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

# Bigger than any sane RSVP, smaller than the topic's max.message.bytes (set by the stack).
MAX_FRAME_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(maximum, initial * 2**n))."""

    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.maximum, self.initial * 2 ** min(attempt, 30)))


@dataclass(frozen=True)
class IngestOptions:
    base_url: str = DEFAULT_INGEST_URL
    streams: tuple[str, ...] = ("rsvps",)
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 20.0  # HTTP: no byte for this long is a dead peer (the server sends keep-alives)
    backoff: Backoff = Backoff()
    exit_at_end: bool = False  # stop following a stream when the server closes it normally
    progress_every: float = 5.0
    flush_timeout: float = 60.0


def producer_config(settings: Settings) -> dict[str, str | int | bool]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "message.max.bytes": MAX_FRAME_BYTES + 65536,
        # Bounded buffering while the broker is away: beyond this, produce() blocks the websocket.
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 256 * 1024,
        "message.timeout.ms": 300_000,
        **settings.kafka.client_config,
    }


class ResumePoint:
    """What a reconnect needs: the stream clock (greatest mtime seen) and the frames received at it.

    The server re-sends, from `since_mtime`, every frame whose clock is at least that; the first few
    of those are the ones we already have, in the same order, and are skipped by their digest.
    """

    MAX_AT_CLOCK = 10_000

    def __init__(self) -> None:
        self.clock: int | None = None
        self._at_clock: list[bytes] = []
        self._to_skip: deque[bytes] = deque()

    @staticmethod
    def _digest(frame: bytes) -> bytes:
        return hashlib.blake2b(frame, digest_size=12).digest()

    def query(self) -> str:
        return "" if self.clock is None else "?" + urlencode({"since_mtime": self.clock})

    def reconnecting(self) -> None:
        self._to_skip = deque(self._at_clock)

    def is_resent(self, frame: bytes) -> bool:
        """True for a frame already received before the reconnect (and then forgets it)."""
        if self._to_skip:
            if self._to_skip[0] == self._digest(frame):
                self._to_skip.popleft()
                return True
            self._to_skip.clear()  # the server's resend differs from ours: take everything from here
        return False

    def received(self, frame: bytes) -> None:
        mtime = extract_mtime(frame)
        if mtime is not None and (self.clock is None or mtime > self.clock):
            self.clock = mtime
            self._at_clock = []
        if len(self._at_clock) < self.MAX_AT_CLOCK:
            self._at_clock.append(self._digest(frame))


class StreamRefused(Exception):
    """The server answered, but not with a stream (an HTTP status other than 200); the message says why."""


class HttpStream:
    """One HTTP streaming response (chunked): each message is a line; a blank line is a keep-alive."""

    def __init__(self, url: str, options: IngestOptions):
        parts = urlsplit(url)
        if not parts.hostname:
            raise StreamRefused(f"{url!r} names no host")
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.idle_timeout = options.idle_timeout
        self.conn = connection(parts.hostname, parts.port, timeout=options.connect_timeout)
        self.conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                          headers={"Accept": "application/json", "User-Agent": "meetup-ingest"})  # fmt: skip
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            reason = self.response.read(500).decode(errors="replace").strip()
            self.conn.close()
            raise StreamRefused(f"HTTP {self.response.status} {reason}")
        self.conn.sock.settimeout(options.idle_timeout)

    def frames(self, stop_event: threading.Event) -> Iterator[bytes]:
        """Messages until the response ends normally; TimeoutError on a dead peer, IncompleteRead when the
        connection drops (a message cut off by a drop is never yielded: only whole lines are)."""
        pending = b""
        while not stop_event.is_set():
            try:
                data = self.response.read1(65536)
            except TimeoutError:
                raise TimeoutError(f"no byte for {self.idle_timeout:.0f}s") from None
            if not data:
                if pending and not stop_event.is_set():
                    raise http.client.IncompleteRead(pending)
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                line = line.removesuffix(b"\r")
                if line:
                    yield line

    def close(self) -> None:
        if self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
            except OSError:
                pass
        self.conn.close()


class WebSocketStream:
    """One websocket connection: each text (or binary) frame is a message; pings keep a quiet link alive."""

    def __init__(self, url: str, options: IngestOptions):
        self.options = options
        self.ws = websocket.create_connection(
            url, timeout=options.connect_timeout, skip_utf8_validation=True, enable_multithread=True
        )

    def frames(self, stop_event: threading.Event) -> Iterator[bytes]:
        """Data frames until the server closes normally; raises TimeoutError on a dead peer."""
        ws = self.ws
        ws.settimeout(min(1.0, self.options.ping_interval))
        last_rx = last_ping = time.monotonic()
        while not stop_event.is_set():
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                now = time.monotonic()
                if now - last_rx > self.options.ping_interval + self.options.ping_timeout:
                    raise TimeoutError(f"no frame or pong for {now - last_rx:.1f}s") from None
                if now - last_rx > self.options.ping_interval and now - last_ping > self.options.ping_interval:
                    ws.ping()
                    last_ping = now
                continue
            last_rx = time.monotonic()
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                yield data
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                if code == 1000:
                    return
                raise websocket.WebSocketConnectionClosedException(f"server closed with code {code}")

    def close(self) -> None:
        self.ws.close(timeout=1)
        self.ws.shutdown()  # type: ignore[no-untyped-call]  # close() leaves the socket open once the server has sent its close frame


def open_stream(url: str, options: IngestOptions) -> HttpStream | WebSocketStream:
    """A connection to one stream, by the URL's scheme."""
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        return HttpStream(url, options)
    if scheme in ("ws", "wss"):
        return WebSocketStream(url, options)
    raise ValueError(f"unsupported scheme {scheme!r} in {url}: use http://, https://, ws:// or wss://")


# a connection could not be opened, or was lost: reconnect
CONNECTION_ERRORS = (OSError, websocket.WebSocketException, http.client.HTTPException, StreamRefused, TimeoutError)


@dataclass
class Counters:
    received: int = 0
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    unkeyed: int = 0
    resent_skipped: int = 0
    oversized: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """Every counter at one instant."""
        with self.lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.type == "int"}


COUNTER_HELP = {
    "received": "frames received from the stream endpoint",
    "produced": "messages handed to the Kafka producer",
    "delivered": "messages the broker acknowledged",
    "failed": "messages the producer gave up on (delivery errors)",
    "unkeyed": "frames without an rsvp_id/key, produced without a key",
    "resent_skipped": "frames received again after a reconnect and skipped",
    "oversized": "frames over the size limit",
    "reconnects": "connections to the endpoint opened again after a loss",
}


class IngestCollector:
    """The producer's counters for Prometheus, read at each scrape: `meetup_ingest_<counter>_total`,
    `meetup_ingest_delivery_errors_total{error}` and `meetup_ingest_unacknowledged` (waiting for the broker)."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.ingest.counters.snapshot()
        for name, help_text in COUNTER_HELP.items():
            yield CounterMetricFamily(f"meetup_ingest_{name}", help_text, value=stats[name])
        errors = CounterMetricFamily(
            "meetup_ingest_delivery_errors", "delivery errors by Kafka error", labels=["error"]
        )
        with self.ingest.counters.lock:
            for error, count in sorted(self.ingest.counters.errors.items()):
                errors.add_metric([error], count)
        yield errors
        unacknowledged = stats["produced"] - stats["delivered"] - stats["failed"]
        yield GaugeMetricFamily("meetup_ingest_unacknowledged", "produced, not yet acknowledged", unacknowledged)


class Ingest:
    """Websocket streams → Kafka topics. `run()` blocks until stopped (or every stream has ended)."""

    def __init__(self, settings: Settings, options: IngestOptions, *, producer: Producer | None = None):
        self.settings = settings
        self.options = options
        self.producer = producer or Producer(producer_config(settings))
        self.counters = Counters()
        self.stop_event = threading.Event()
        self._rng = random.Random()
        # the open connections, closed by stop() so that no reader waits out its timeout
        self._connections: set[HttpStream | WebSocketStream] = set()
        self._lock = threading.Lock()

    # -- Kafka side -------------------------------------------------------------------------------
    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.counters.add("delivered")
            return
        self.counters.add("failed")
        with self.counters.lock:
            self.counters.errors[error.name()] = self.counters.errors.get(error.name(), 0) + 1

    def handle_frame(self, stream: str, url: str, frame: bytes) -> None:
        """Produce one frame as received; back-pressure (block) while the producer's queue is full."""
        self.counters.add("received")
        if len(frame) > MAX_FRAME_BYTES:
            self.counters.add("oversized")
            log.warning("dropped a %s-byte frame on %s (limit %s)", len(frame), stream, MAX_FRAME_BYTES)
            return
        key = extract_key(stream, frame)
        if key is None:
            self.counters.add("unkeyed")
        headers: list[tuple[str, str | bytes | None]] = [
            ("source", url.encode()),
            ("received_at_ms", str(int(time.time() * 1000)).encode()),
        ]
        topic = self.settings.kafka.topic(stream)
        while True:
            try:
                self.producer.produce(topic, value=frame, key=key, headers=headers, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)  # the queue is full (broker away): wait, and stop reading the socket
        self.counters.add("produced")
        self.producer.poll(0)

    # -- stream side ------------------------------------------------------------------------------
    def follow(self, stream: str) -> None:
        """Follow one stream until stopped, reconnecting and resuming as needed."""
        base = self.options.base_url.rstrip("/") + STREAM_PATHS[stream]
        resume = ResumePoint()
        attempt = 0
        while not self.stop_event.is_set():
            url = base + resume.query()
            ended = False
            try:
                connection = open_stream(url, self.options)
            except CONNECTION_ERRORS as error:
                log.warning("%s: cannot connect to %s (--url / INGEST_URL): %s", stream, url, error)
            else:
                got_data = False
                with self._lock:
                    self._connections.add(connection)
                try:
                    for frame in connection.frames(self.stop_event):
                        got_data = True
                        if resume.is_resent(frame):
                            self.counters.add("resent_skipped")
                            continue
                        resume.received(frame)
                        self.handle_frame(stream, base, frame)
                    ended = not self.stop_event.is_set()
                except CONNECTION_ERRORS as error:
                    if not self.stop_event.is_set():
                        kind = error.__class__.__name__
                        log.warning("%s: connection lost (%s: %s)", stream, kind, error)
                finally:
                    with self._lock:
                        self._connections.discard(connection)
                    connection.close()
                if got_data:
                    attempt = 0
            if self.stop_event.is_set() or (ended and self.options.exit_at_end):
                return
            resume.reconnecting()
            self.counters.add("reconnects")
            delay = self.options.backoff.delay(attempt, self._rng)
            attempt += 1
            self.stop_event.wait(delay)

    # -- lifecycle --------------------------------------------------------------------------------
    def run(self) -> int:
        threads = [
            threading.Thread(target=self.follow, args=(stream,), name=f"ingest-{stream}", daemon=True)
            for stream in self.options.streams
        ]
        for thread in threads:
            thread.start()
        started = last_report = time.monotonic()
        last_received = 0
        while any(thread.is_alive() for thread in threads):
            self.producer.poll(0.2)
            now = time.monotonic()
            if now - last_report >= self.options.progress_every:
                stats = self.counters.snapshot()
                rate = (stats["received"] - last_received) / (now - last_report)
                last_received, last_report = stats["received"], now
                self._report(stats, f"{rate:,.0f} frames/s")
        for thread in threads:
            thread.join()
        remaining = self.producer.flush(self.options.flush_timeout)
        stats = self.counters.snapshot()
        elapsed = time.monotonic() - started
        self._report(stats, f"done in {elapsed:.1f}s, {stats['received'] / max(elapsed, 1e-9):,.0f} frames/s")
        if remaining:
            log.error("%s messages still undelivered after %ss", remaining, self.options.flush_timeout)
        if self.counters.errors:
            log.error("delivery errors: %s", self.counters.errors)
        return 0 if remaining == 0 and stats["failed"] == 0 else 1

    def _report(self, stats: dict[str, int], tail: str) -> None:
        log.info(
            "received {received:,} delivered {delivered:,} failed {failed:,} unkeyed {unkeyed:,} "
            "resent-skipped {resent_skipped:,} reconnects {reconnects:,} | ".format(**stats)
            + tail,
        )

    def stop(self, *_args: object) -> None:
        self.stop_event.set()
        with self._lock:
            for connection in list(self._connections):
                if isinstance(connection, HttpStream):  # a websocket reader wakes every second by itself
                    connection.close()


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("meetup-ingest", __doc__)
    parser.add_argument(
        "--url", default=None,
        help="stream endpoint base, http(s):// or ws(s):// (INGEST_URL; default ws://127.0.0.1:8765)",
    )  # fmt: skip
    parser.add_argument(
        "--streams", nargs="+", choices=STREAMS, default=["rsvps"],
        help="the streams to follow (RSVPs alone by default: the stream the project studies)",
    )  # fmt: skip
    parser.add_argument(
        "--ping-interval", type=float, default=10.0, metavar="SECONDS", help="websockets: ping the server this often"
    )
    parser.add_argument(
        "--ping-timeout", type=float, default=10.0, metavar="SECONDS",
        help="websockets: reconnect when a ping has no pong within this long",
    )  # fmt: skip
    parser.add_argument(
        "--idle-timeout", type=float, default=20.0, metavar="SECONDS",
        help="HTTP: reconnect after this long without a byte (a dead peer)",
    )  # fmt: skip
    parser.add_argument("--exit-at-end", action="store_true", help="exit when the server ends every stream")
    parser.add_argument(
        "--progress-every", type=float, default=5.0, metavar="SECONDS", help="print the counts this often"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help=f"serve the counters for Prometheus on http://127.0.0.1:PORT/metrics (default "
        f"{metrics_endpoint.INGEST_PORT}, skipped if taken; 0: off)",
    )  # fmt: skip
    return parser


@cli.command("meetup-ingest")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = health.settings_for(["kafka"])  # later outages are ridden out, not fatal
    options = IngestOptions(
        base_url=args.url or settings.ingest_url,
        streams=tuple(args.streams),
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        idle_timeout=args.idle_timeout,
        exit_at_end=args.exit_at_end,
        progress_every=args.progress_every,
    )
    ingest = Ingest(settings, options)
    if args.metrics_port != 0:
        from prometheus_client import REGISTRY

        REGISTRY.register(IngestCollector(ingest))
        metrics_endpoint.serve(args.metrics_port, metrics_endpoint.INGEST_PORT, "meetup-ingest")
    signal.signal(signal.SIGINT, ingest.stop)
    signal.signal(signal.SIGTERM, ingest.stop)
    log.info("%s -> %s (%s)", options.base_url, settings.kafka.bootstrap_servers, ", ".join(options.streams))
    return ingest.run()


if __name__ == "__main__":
    sys.exit(main())
