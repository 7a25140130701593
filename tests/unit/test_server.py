"""The replay server speaks Meetup's protocol on every transport: HTTP streaming, long polling, websockets.

Clients here are the ones Meetup's users wrote: curl, a `requests` loop over `iter_lines()`, a JSONP poller.
The server runs for real on a free port; no Kafka is needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import pytest
import requests

from ingest import frames as fr
from ingest.protocol import extract_event as event_of
from ingest.server import MAX_CONNECTIONS_PER_ADDRESS, Pace, ReplayServer
from tests.helpers import capture_frames, sequence_difference, serving_in_a_thread

REAL = capture_frames()


def serving(server: ReplayServer):
    return serving_in_a_thread(server, "http")


def mtime(frame: bytes) -> int:
    return json.loads(frame)["mtime"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by make system")
def test_curl_prints_the_captures_byte_for_byte_one_per_line():
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))) as url:
        out = subprocess.run(["curl", "-sSN", f"{url}/2/rsvps"], capture_output=True, check=True, timeout=60).stdout
    assert out == b"".join(frame + b"\n" for frame in REAL)


def test_a_requests_iter_lines_client_receives_every_frame_with_json_headers():
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))) as url:
        # the way the Meetup tutorials wrote it
        response = requests.get(f"{url}/2/rsvps", stream=True, timeout=30)
        received = [line for line in response.iter_lines() if line]
    assert response.headers["Content-Type"].startswith("application/json")
    assert "no-cache" in response.headers["Cache-Control"] and response.headers["Transfer-Encoding"] == "chunked"
    assert sequence_difference(received, REAL) is None, sequence_difference(received, REAL)


def test_long_polling_with_since_mtime_receives_every_frame_exactly_once_across_polls():
    # faults make it harder: duplicates and stale resends share an instant with the frame before them
    faults = fr.Faults(seed=3, duplicate=0.05, stale=0.05)
    sent = list(fr.inject_faults(REAL, faults))
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"), faults=faults)) as url:
        got, since, polls = [], None, 0
        while True:
            params = {"callback": "onRsvps", **({"since_mtime": since} if since is not None else {})}
            body = requests.get(f"{url}/2/rsvps", params=params, timeout=60).content
            assert body.startswith(b"onRsvps([") and body.endswith(b"])")
            batch = json.loads(body[len(b"onRsvps(") : -1])
            polls += 1
            if not batch:
                break
            got += batch
            since = max([since or 0, *(m["mtime"] for m in batch)])
    assert polls >= 4, "answers are capped, so the client polls several times"
    assert got == [json.loads(frame) for frame in sent]


def test_a_poll_with_nothing_due_yet_answers_with_what_became_due():
    frames = REAL[:3]
    server = ReplayServer({"rsvps": lambda: iter(frames)}, pace=Pace("rate", rate=2.0))  # one every 0.5 s
    with serving(server) as url:
        first = json.loads(requests.get(f"{url}/2/rsvps?callback=f", timeout=30).content[2:-1])
        assert first and first[0] == json.loads(frames[0])
        later = json.loads(
            requests.get(f"{url}/2/rsvps?callback=f&since_mtime={first[-1]['mtime']}", timeout=30).content[2:-1]
        )
    assert later and later[0] == json.loads(frames[len(first)])


def test_event_id_limits_every_transport_to_one_event():
    event = event_of(REAL[0])
    wanted = [frame for frame in REAL if event_of(frame) == event]
    assert 0 < len(wanted) < len(REAL)
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))) as url:
        streamed = [line for line in requests.get(f"{url}/2/rsvps?event_id={event}", stream=True).iter_lines() if line]
        polled = json.loads(requests.get(f"{url}/2/rsvps?event_id={event}&callback=f").content[2:-1])
        from websocket import create_connection

        ws = create_connection(f"{url.replace('http', 'ws')}/2/rsvps?event_id={event}", timeout=10)
        over_ws = [ws.recv().encode() for _ in wanted]
        ws.close()
    assert sequence_difference(streamed, wanted) is None, sequence_difference(streamed, wanted)
    assert sequence_difference(over_ws, wanted) is None, sequence_difference(over_ws, wanted)
    assert polled == [json.loads(frame) for frame in wanted]


def test_since_count_sends_the_first_n_at_once_and_since_mtime_resumes_at_the_clock():
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("rate", rate=0.2))) as url:
        # at 0.2 frames/s the third frame would come 10 s after the first; since_count=3 sends them at once
        response = requests.get(f"{url}/2/rsvps?since_count=3", stream=True, timeout=5)
        lines = response.iter_lines()
        assert [next(lines) for _ in range(3)] == REAL[:3]
        response.close()
    clock = mtime(REAL[100])
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))) as url:
        resumed = [line for line in requests.get(f"{url}/2/rsvps?since_mtime={clock}", stream=True).iter_lines()]
    expected = [frame for c, frame in fr.with_clock(REAL) if c >= clock]
    resumed = [line for line in resumed if line]
    assert sequence_difference(resumed, expected) is None, sequence_difference(resumed, expected)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("since_count=-1", "since_count must be 0 or more"),
        ("since_count=5&since_mtime=1000", "cannot be used together"),
        ("since_mtime=yesterday", "since_mtime must be an integer"),
        ("since_count=ten", "since_count must be an integer"),
        ("callback=alert(1)", "callback must be a JavaScript function name"),
    ],
)
def test_a_bad_parameter_gets_400_with_a_one_line_reason(query, reason):
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))) as url:
        for transport in ({}, {"Connection": "Upgrade", "Upgrade": "websocket"}):
            response = requests.get(f"{url}/2/rsvps?{query}", headers=transport, timeout=10)
            assert response.status_code == 400
            assert reason in response.text and response.text.count("\n") == 1


def test_an_unknown_stream_gets_404_naming_the_streams():
    with serving(ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("max"))) as url:
        response = requests.get(f"{url}/2/checkins", timeout=10)
    assert response.status_code == 404 and "/2/rsvps" in response.text


def test_the_eleventh_connection_from_one_address_is_refused_with_429():
    server = ReplayServer({"rsvps": lambda: iter(REAL)}, pace=Pace("rate", rate=1.0))
    with serving(server) as url:
        held = [requests.get(f"{url}/2/rsvps", stream=True, timeout=10) for _ in range(MAX_CONNECTIONS_PER_ADDRESS)]
        refused = requests.get(f"{url}/2/rsvps", timeout=10)
        assert refused.status_code == 429 and f"at most {MAX_CONNECTIONS_PER_ADDRESS}" in refused.text
        held.pop().close()  # one ends: a new one is let in again
        deadline = threading.Event()
        for _ in range(50):
            again = requests.get(f"{url}/2/rsvps", stream=True, timeout=10)
            if again.status_code == 200:
                break
            deadline.wait(0.1)
        assert again.status_code == 200
        for response in [*held, again]:
            response.close()
    assert server.stats.refused >= 1
