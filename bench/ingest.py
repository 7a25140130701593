"""Benchmark: stream -> Kafka ingest throughput over websockets and over HTTP streaming, beside its
references measured in the same run.

    make bench-ingest            # or: .venv/bin/python -m bench.ingest --frames 300000

1. websocket only / HTTP only: the replay server (its own process) -> a bare client, frames discarded;
2. producer only: the same frames from memory -> confluent-kafka -> the broker, delivered;
3. the whole ingest: replay server -> `ingest.producer.Ingest` -> the broker, delivered, over each transport.
Writes bench/results/ingest.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from dataclasses import replace

import websocket
from confluent_kafka import Producer

from common.settings import PROJECT_ROOT, Settings, load_settings
from ingest.frames import read_capture
from ingest.producer import HttpStream, Ingest, IngestOptions, producer_config
from stack import kafka as kafka_service

RESULTS = PROJECT_ROOT / "bench" / "results"
PORT = 8788


def start_server() -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingest.server",
            "--captures",
            "data/rsvps/*.jsonl",
            "--loop",
            "--pace",
            "max",
            "--port",
            str(PORT),
        ],
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None  # stderr=PIPE
    server.stderr.readline()  # "serving ..." once it listens
    return server


def websocket_only(frames: int) -> float:
    ws = websocket.create_connection(f"ws://127.0.0.1:{PORT}/2/rsvps", skip_utf8_validation=True)
    started = time.perf_counter()
    for _ in range(frames):
        ws.recv_data()
    elapsed = time.perf_counter() - started
    ws.close()
    return frames / elapsed


def http_only(frames: int) -> float:
    """The HTTP stream read as the producer reads it (HttpStream: chunked, split into lines)."""
    stream = HttpStream(f"http://127.0.0.1:{PORT}/2/rsvps", IngestOptions())
    started = time.perf_counter()
    for n, _ in enumerate(stream.frames(threading.Event()), start=1):
        if n == frames:
            break
    elapsed = time.perf_counter() - started
    stream.close()
    return frames / elapsed


def producer_only(settings: Settings, topic: str, frames: list[bytes], count: int) -> float:
    producer = Producer(producer_config(settings))
    started = time.perf_counter()
    for i in range(count):
        frame = frames[i % len(frames)]
        while True:
            try:
                producer.produce(topic, value=frame, key=str(i).encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0
    return count / (time.perf_counter() - started)


def whole_ingest(settings: Settings, count: int, scheme: str = "ws") -> float:
    ingest = Ingest(settings, IngestOptions(base_url=f"{scheme}://127.0.0.1:{PORT}", progress_every=3600))

    def stop_at_count() -> None:
        while ingest.counters.snapshot()["received"] < count:
            time.sleep(0.01)
        ingest.stop()

    threading.Thread(target=stop_at_count, daemon=True).start()
    started = time.perf_counter()
    ingest.run()
    stats = ingest.counters.snapshot()
    assert stats["failed"] == 0 and stats["delivered"] == stats["received"]
    return stats["delivered"] / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    base = load_settings()
    settings = replace(base, kafka=replace(base.kafka, topic_prefix=f"bench{int(time.time())}"))
    kafka_service.ensure_topics(settings, ("rsvps",))
    frames = read_capture(sorted((PROJECT_ROOT / "data" / "rsvps").glob("*.jsonl")))
    server = start_server()
    runs: dict[str, list[float]] = {
        "websocket_only": [], "http_only": [], "producer_only": [], "ingest": [], "ingest_http": []
    }  # fmt: skip
    try:
        for repeat in range(args.repeats):
            runs["websocket_only"].append(websocket_only(args.frames))
            runs["http_only"].append(http_only(args.frames))
            runs["producer_only"].append(producer_only(settings, settings.kafka.topic("rsvps"), frames, args.frames))
            runs["ingest"].append(whole_ingest(settings, args.frames))
            runs["ingest_http"].append(whole_ingest(settings, args.frames, "http"))
            print(
                f"bench: run {repeat + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items()),
                file=sys.stderr,
            )
    finally:
        server.terminate()
    median = {name: sorted(values)[len(values) // 2] for name, values in runs.items()}
    result = {
        "frames_per_run": args.frames,
        "mean_frame_bytes": round(sum(map(len, frames)) / len(frames)),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "runs_per_second": runs,
        "median_per_second": median,
        "ingest_vs_producer_only": median["ingest"] / median["producer_only"],
        "ingest_http_vs_producer_only": median["ingest_http"] / median["producer_only"],
        "target_per_second": 30_000,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2))
    table = ["| path | median frames/s | runs |", "|---|---:|---|"]
    for name, values in runs.items():
        table.append(f"| {name} | {median[name]:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    table.append(
        f"\ningest / producer-only: websockets {result['ingest_vs_producer_only']:.2f}, HTTP "
        f"{result['ingest_http_vs_producer_only']:.2f}; target 30,000 frames/s"
    )
    (RESULTS / "ingest.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
