"""Small helpers shared by tests: the real captures, read independently of the code under test."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from common.settings import PROJECT_ROOT


def wait_until(check, timeout: float, every: float = 2.0):
    """check()'s first truthy value, polled every `every` seconds; its last value once `timeout` has passed
    (a deadline, never a speed claim: callers assert what the value says)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


CAPTURES = sorted((PROJECT_ROOT / "data" / "rsvps").glob("*.jsonl"))


def capture_frames() -> list[bytes]:
    """Every real message, byte-for-byte, in file order."""
    frames: list[bytes] = []
    for path in CAPTURES:
        with open(path, "rb") as handle:
            frames.extend(line.rstrip(b"\n") for line in handle if line.strip())
    return frames


def frame_key(stream_id_field: str, frame: bytes) -> bytes | None:
    """The Kafka key a frame should get, by a plain JSON parse (None when unreadable)."""
    import json

    try:
        value = json.loads(frame).get(stream_id_field)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return None if value is None or isinstance(value, (dict, list, bool)) else str(value).encode()


def produce(
    bootstrap: str, topic: str, frames: list[bytes], id_field: str = "rsvp_id", partition: int | None = None
) -> None:
    """Send frames keyed by their id (or, given `partition`, all to that partition, in order)."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "message.max.bytes": 9_000_000}
    )
    for frame in frames:
        where = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=frame_key(id_field, frame), value=frame, **where)
        producer.poll(0)
    assert producer.flush(60) == 0


def consume_messages(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list:
    """Every message of the topic (confluent-kafka Message objects), read from offset 0 of each partition.

    Stops half a second after `expected` messages have arrived with nothing more, so extras are seen too.
    """
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
        elif message is None and len(messages) >= expected:
            break
    consumer.close()
    return messages


def consume_with_coordinates(
    bootstrap: str, topic: str, expected: int, timeout: float = 60
) -> list[tuple[int, int, bytes]]:
    """Every record of the topic as (partition, offset, value), read with a plain consumer."""
    return [(m.partition(), m.offset(), m.value()) for m in consume_messages(bootstrap, topic, expected, timeout)]


@contextmanager
def serving_in_a_thread(server, scheme: str = "ws") -> Iterator[str]:
    """An ingest.server.ReplayServer running in a thread on a free port; yields its base URL for the
    transport (scheme ws or http), and stops it after."""
    ports: queue.Queue[int] = queue.Queue()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve("127.0.0.1", 0, ready=ports.put)), daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{ports.get(timeout=10)}"
    finally:
        server.shutdown()
        thread.join(10)


def sequence_difference(got: list[bytes], want: list[bytes]) -> str | None:
    """None when `got` is `want`; else one short line saying how they differ (lengths, duplicates, missing
    and extra items, the first differing index), so a failure over thousands of messages reads at a glance
    instead of as a diff of megabytes."""
    if got == want:
        return None
    seen: set[bytes] = set()
    duplicates = sum(1 for item in got if item in seen or seen.add(item))
    missing, extra = len(set(want) - set(got)), len(set(got) - set(want))
    index = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))

    def short(items: list[bytes]) -> str:
        return repr(items[index][:60]) if index < len(items) else "(the end)"

    return (
        f"{len(got)} received for {len(want)} expected: {duplicates} duplicated, {missing} missing, {extra} "
        f"unexpected; first difference at index {index}: got {short(got)}, expected {short(want)}"
    )
