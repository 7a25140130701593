"""Replay server -> producer -> the real Kafka broker: every frame exactly once, byte-identical, in order per key."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import replace

import pytest

from common.settings import Settings
from ingest import frames as fr
from ingest.producer import Backoff, Ingest, IngestOptions
from ingest.protocol import extract_key
from ingest.server import Pace, ReplayServer
from stack import kafka as kafka_service
from tests.conftest import new_name
from tests.helpers import (
    capture_frames,
    consume_messages,
    consume_with_coordinates,
    sequence_difference,
    serving_in_a_thread,
    wait_until,
)
from tests.integration.lakehouse import assert_every_table_exact, isolated, run_available_now

pytestmark = pytest.mark.integration

REAL = capture_frames()


def topic_settings(stack: Settings, unique: str) -> Settings:
    settings = replace(stack, kafka=replace(stack.kafka, topic_prefix=unique))
    kafka_service.ensure_topics(settings, ("rsvps",))
    return settings


def consume_all(settings: Settings, topic: str, expected: int) -> list:
    return consume_messages(settings.kafka.bootstrap_servers, topic, expected)


def assert_exactly_once_in_order(messages: list, sent: list[bytes], scheme: str = "ws") -> None:
    values = [m.value() for m in messages]
    assert len(values) == len(sent), f"{len(values)} in Kafka for {len(sent)} frames sent"
    difference = sequence_difference(sorted(values), sorted(sent))
    assert difference is None, f"byte-identical, nothing lost, nothing doubled: {difference}"
    sent_by_key: dict[bytes | None, list[bytes]] = {}
    for frame in sent:
        sent_by_key.setdefault(_key(frame), []).append(frame)
    received_by_key: dict[bytes | None, list[tuple[int, int, bytes]]] = {}
    for message in messages:
        received_by_key.setdefault(message.key(), []).append((message.partition(), message.offset(), message.value()))
        assert dict(message.headers())["source"].startswith(f"{scheme}://".encode())
    for key, versions in received_by_key.items():
        if key is None:
            continue  # unkeyed frames are spread over partitions: no order to keep
        assert len({partition for partition, _, _ in versions}) == 1, f"key {key!r} in one partition"
        difference = sequence_difference([value for _, _, value in sorted(versions)], sent_by_key[key])
        assert difference is None, f"order of key {key!r}: {difference}"


def _key(frame: bytes) -> bytes | None:
    return extract_key("rsvps", frame)


def run_ingest(settings: Settings, url: str, **options) -> Ingest:
    ingest = Ingest(
        settings,
        IngestOptions(base_url=url, exit_at_end=True, progress_every=60, backoff=Backoff(0.05, 0.5), **options),
    )
    assert ingest.run() == 0
    return ingest


TRANSPORTS = pytest.mark.parametrize("scheme", ["ws", "http"])


@TRANSPORTS
def test_every_real_frame_arrives_once_byte_identical_and_in_order_per_key(stack, unique, scheme):
    settings = topic_settings(stack, unique)
    server = ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))
    with serving_in_a_thread(server, scheme) as url:
        ingest = run_ingest(settings, url)
    assert ingest.counters.snapshot()["delivered"] == len(REAL) == 4088
    assert_exactly_once_in_order(consume_all(settings, f"{unique}.rsvps", len(REAL)), REAL, scheme)


@TRANSPORTS
def test_abrupt_disconnects_resume_without_loss_or_duplicates(stack, unique, scheme):
    """Over HTTP the drop comes in the middle of a message's chunk: the cut message is taken on resume."""
    settings = topic_settings(stack, unique)
    server = ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"), faults=fr.Faults(disconnect_every=700))
    with serving_in_a_thread(server, scheme) as url:
        ingest = run_ingest(settings, url)
    stats = ingest.counters.snapshot()
    assert stats["reconnects"] >= 5 and stats["resent_skipped"] > 0
    assert_exactly_once_in_order(consume_all(settings, f"{unique}.rsvps", len(REAL)), REAL, scheme)


@TRANSPORTS
def test_a_stalled_connection_is_detected_as_a_dead_peer_and_resumed(stack, unique, scheme):
    """websockets: no frame and no pong within the ping timeout; HTTP: no byte within the idle timeout."""
    settings = topic_settings(stack, unique)
    frames = REAL[:900]
    server = ReplayServer({"rsvps": lambda: iter(frames)}, pace=Pace("max"), faults=fr.Faults(stall_after=400))
    with serving_in_a_thread(server, scheme) as url:
        ingest = run_ingest(settings, url, ping_interval=0.5, ping_timeout=0.5, idle_timeout=1.0)
    assert ingest.counters.snapshot()["reconnects"] >= 2
    assert_exactly_once_in_order(consume_all(settings, f"{unique}.rsvps", len(frames)), frames, scheme)


@TRANSPORTS
def test_malformed_frames_are_produced_as_received_and_unkeyed_ones_counted(stack, unique, scheme):
    settings = topic_settings(stack, unique)
    faults = fr.Faults(seed=11, malformed=0.05, duplicate=0.02, extra_field=0.02, stale=0.02)
    sent = list(fr.inject_faults(REAL[:1500], faults))
    server = ReplayServer({"rsvps": lambda: iter(REAL[:1500])}, pace=Pace("max"), faults=faults)
    with serving_in_a_thread(server, scheme) as url:
        ingest = run_ingest(settings, url)
    stats = ingest.counters.snapshot()
    assert stats["unkeyed"] == sum(1 for frame in sent if _key(frame) is None) > 0
    messages = consume_all(settings, f"{unique}.rsvps", len(sent))
    difference = sequence_difference(sorted(m.value() for m in messages), sorted(sent))
    assert difference is None, difference


def test_a_broker_restart_during_ingest_loses_no_received_frame(stack, unique):
    settings = topic_settings(stack, unique)
    server = ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("rate", rate=800))
    with serving_in_a_thread(server) as url:
        ingest = Ingest(settings, IngestOptions(base_url=url, exit_at_end=True, progress_every=60))
        runner = threading.Thread(target=ingest.run)
        runner.start()
        try:
            received = lambda: ingest.counters.snapshot()["received"] >= 1000  # noqa: E731
            assert wait_until(received, timeout=120, every=0.05), "the producer received no frames"
            assert kafka_service.down(stack)
            time.sleep(2)  # frames keep arriving and are buffered while the broker is away
            kafka_service.up(stack)
        finally:
            runner.join(180)
    stats = ingest.counters.snapshot()
    assert stats["failed"] == 0 and stats["delivered"] == len(REAL)
    assert_exactly_once_in_order(consume_all(settings, f"{unique}.rsvps", len(REAL)), REAL)


def test_one_process_follows_all_three_generated_streams_into_their_topics(stack, unique):
    from ingest.generator import generator_sources

    settings = replace(stack, kafka=replace(stack.kafka, topic_prefix=unique))
    kafka_service.ensure_topics(settings)
    sources = generator_sources(seed=5, count=1600, start_ms=1_700_000_000_000)
    expected = {stream: list(source()) for stream, source in sources.items()}
    server = ReplayServer(sources, pace=Pace("max"))
    with serving_in_a_thread(server) as url:
        run_ingest(settings, url, streams=("rsvps", "event_comments", "photos"))
    id_field = {"rsvps": "rsvp_id", "event_comments": "id", "photos": "photo_id"}
    for stream, frames in expected.items():
        messages = consume_all(settings, f"{unique}.{stream}", len(frames))
        assert sorted(m.value() for m in messages) == sorted(frames), stream
        for message in messages:
            assert message.key() == str(json.loads(message.value())[id_field[stream]]).encode()


def test_the_server_stops_at_once_even_in_the_middle_of_a_long_recorded_gap():
    import json
    import time

    first, second = json.loads(REAL[0]), json.loads(REAL[1])
    second["mtime"] = first["mtime"] + 3_600_000  # an hour later: a gap the server sleeps through
    frames = [REAL[0], json.dumps(second).encode()]
    server = ReplayServer({"rsvps": lambda: iter(frames)}, pace=Pace("recorded", speed=1.0))
    from websocket import ABNF, create_connection

    with serving_in_a_thread(server) as url:
        client = create_connection(f"{url}/2/rsvps", timeout=600)
        assert client.recv() == REAL[0].decode()
        time.sleep(0.5)  # the server is now waiting out the hour
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        stopper.join(600)  # a deadline far inside the hour: the shutdown does not wait out the gap
        assert not stopper.is_alive(), "the server waited out the recorded gap before stopping"
        opcode, _ = client.recv_data(control_frame=True)
    assert opcode == ABNF.OPCODE_CLOSE  # the client was told, not left hanging


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("kcat")), reason="make system installs curl and kcat")
def test_curl_piped_into_kcat_fills_a_topic_the_chain_turns_into_exact_tables(stack, spark):
    """A pipe nobody here wrote, as Meetup's users ran it: curl reads the HTTP stream, kcat produces each line."""
    settings = isolated(stack, new_name())
    bootstrap, topic = settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps")
    client = " ".join(f"-X {shlex.quote(f'{k}={v}')}" for k, v in settings.kafka.client_config.items())
    server = ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))
    with serving_in_a_thread(server, "http") as url:
        # idempotence, as README says: without it a produce request retried under load may double or reorder
        pipe = f"curl -sSN {url}/2/rsvps | kcat -P -X enable.idempotence=true -b {bootstrap} {client} -t {topic} -p 0"
        subprocess.run(["bash", "-o", "pipefail", "-c", pipe], check=True, timeout=300)
    records = consume_with_coordinates(bootstrap, topic, len(REAL))
    difference = sequence_difference([value for _, _, value in records], REAL)
    assert difference is None, f"one partition: every line once, in order, byte for byte: {difference}"
    layout = run_available_now(spark, settings)
    assert_every_table_exact(spark, settings, layout, records)  # silver, PostgreSQL, bronze and gold
