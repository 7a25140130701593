from __future__ import annotations

import json
import random

import pytest

from ingest import frames as fr
from ingest.producer import Backoff, ResumePoint
from ingest.protocol import extract_key, extract_mtime
from tests.helpers import CAPTURES, capture_frames

REAL = capture_frames()


def test_rsvp_key_is_the_top_level_rsvp_id_of_every_real_frame():
    for frame in REAL:
        assert extract_key("rsvps", frame) == str(json.loads(frame)["rsvp_id"]).encode()


@pytest.mark.parametrize(
    ("stream", "frame", "key"),
    [
        ("rsvps", b'{"rsvp_id" : 42 ,"mtime":1}', b"42"),
        ("rsvps", b'{"member":{"member_id":7},"mtime":1}', None),
        ("rsvps", b'{"rsvp_id":"abc"}', b"abc"),
        ("rsvps", b'{"rsvp_id":1,"x":{"rsvp_id":2}}', b"1"),  # two matches: the full parse decides
        ("rsvps", b'{"rsvp_id":12', None),  # truncated
        ("rsvps", b"\xff\xfe not json", None),
        ("rsvps", b"[1,2]", None),
        ("rsvps", b'{"rsvp_id":true}', None),
        ("event_comments", b'{"id":-5,"group":{"id":9}}', b"-5"),
        ("event_comments", b'{"group":{"id":9}}', None),
        ("photos", b'{"photo_id":480000025,"photo_album":{"photo_album_id":1}}', b"480000025"),
    ],
)
def test_key_extraction(stream, frame, key):
    assert extract_key(stream, frame) == key


def test_mtime_is_the_top_level_one():
    assert extract_mtime(b'{"mtime":1630585586663,"event":{"time":5}}') == 1630585586663
    assert extract_mtime(b'{"mtime":"x"}') is None
    assert extract_mtime(b"garbage") is None
    assert [extract_mtime(f) for f in REAL] == [json.loads(f)["mtime"] for f in REAL]


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter():
    backoff = Backoff(initial=0.5, maximum=8.0)
    rng = random.Random(3)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (4, 8.0), (10, 8.0), (500, 8.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range


def test_resume_point_skips_exactly_the_frames_already_received_at_the_clock():
    resume = ResumePoint()
    sent = [b'{"mtime":10,"n":1}', b'{"mtime":20,"n":2}', b'{"mtime":5,"n":3}', b'{"mtime":20,"n":4}']
    for frame in sent:
        resume.received(frame)
    assert resume.query() == "?since_mtime=20"
    resume.reconnecting()
    # the server re-sends everything whose clock is >= 20: frames 2, 3 (stale, clock 20), 4, then new ones
    again = [sent[1], sent[2], sent[3], b'{"mtime":20,"n":5}', b'{"mtime":21,"n":6}']
    assert [resume.is_resent(frame) for frame in again] == [True, True, True, False, False]


def test_resume_point_takes_everything_once_the_resend_differs():
    resume = ResumePoint()
    for frame in (b'{"mtime":7,"a":1}', b'{"mtime":7,"a":2}'):
        resume.received(frame)
    resume.reconnecting()
    assert not resume.is_resent(b'{"mtime":7,"other":1}')
    assert not resume.is_resent(b'{"mtime":7,"a":2}')  # no longer skipping: taken, not lost


def test_shift_times_changes_only_the_times():
    frame = REAL[0]
    shifted = fr.shift_times(frame, 1000)
    original, moved = json.loads(frame), json.loads(shifted)
    assert moved["mtime"] == original["mtime"] + 1000
    assert moved["event"].get("time", 0) == original["event"].get("time", -1000) + 1000
    assert shifted.replace(str(moved["mtime"]).encode(), b"M").count(b"\\/") == frame.count(b"\\/")
    assert len(shifted) == len(frame)


def test_replay_rebases_and_loops_forward_in_time():
    frames = REAL[:50]
    first = extract_mtime(frames[0])  # the stream's clock starts at the first frame, stale or not
    _, last = fr.mtime_span(frames)
    replayed = fr.replay([frames], rebase_to_ms=2_000_000_000_000, loop=True)
    two_passes = [next(replayed) for _ in range(100)]
    assert two_passes[:50] == [fr.shift_times(f, 2_000_000_000_000 - first) for f in frames]
    period = last - first + 1000
    assert two_passes[50:] == [fr.shift_times(f, 2_000_000_000_000 - first + period) for f in frames]
    assert list(fr.replay([frames])) == frames  # no rebase, no loop: byte-for-byte


def frame(mtime: int, rsvp_id: int = 1) -> bytes:
    return json.dumps({"rsvp_id": rsvp_id, "mtime": mtime, "event": {"time": mtime + 50_000}}).encode()


def test_replay_cuts_long_pauses_and_puts_captures_end_to_end_keeping_stale_frames_stale():
    day = 86_400_000
    first = [frame(1_000_000), frame(1_000_000 - 143 * day), frame(1_004_000), frame(1_004_000 + 5 * day)]
    second = [frame(9 * 10**12), frame(9 * 10**12 + 2000)]  # years later
    out = [json.loads(f) for f in fr.replay([first, second], rebase_to_ms=5_000_000, max_gap_ms=10_000)]
    mtimes = [o["mtime"] for o in out]
    assert mtimes == [5_000_000, 5_000_000 - 143 * day, 5_004_000, 5_014_000, 5_015_000, 5_017_000]
    assert all(o["event"]["time"] - o["mtime"] == 50_000 for o in out)  # the event moves with its RSVP
    clock = [max(mtimes[: i + 1]) for i in range(len(mtimes))]
    assert max(b - a for a, b in zip(clock, clock[1:], strict=False)) <= 10_000


def test_each_loop_pass_can_bring_new_rsvps_instead_of_newer_versions():
    frames = REAL[:20]
    looped = fr.replay([frames], rebase_to_ms=2_000_000_000_000, loop=True, new_ids_each_loop=True)
    passes = [[json.loads(next(looped)) for _ in frames] for _ in range(3)]
    originals = [json.loads(f) for f in frames]
    for k, messages in enumerate(passes):
        assert [m["rsvp_id"] for m in messages] == [o["rsvp_id"] + k * fr.ID_STRIDE for o in originals]
        # new people at new events of new groups: the model's history cannot recall an earlier pass's answers
        for who in ("member", "group"):
            moved = [o[who][f"{who}_id"] + k * fr.ID_STRIDE for o in originals]
            assert [m[who][f"{who}_id"] for m in messages] == moved
            assert [m[who][f"{who}_name"] for m in messages] == [o[who][f"{who}_name"] for o in originals]
        assert [m["event"]["event_id"] for m in messages] == [
            o["event"]["event_id"] + (f"~{k}" if k else "") for o in originals
        ]
        assert [m["response"] for m in messages] == [o["response"] for o in originals]
        assert [m["group"]["group_topics"] for m in messages] == [o["group"]["group_topics"] for o in originals]
    first = fr.replay([frames], rebase_to_ms=2_000_000_000_000, new_ids_each_loop=True)
    assert list(first) == [fr.shift_times(f, 2_000_000_000_000 - extract_mtime(frames[0])) for f in frames]


def test_a_second_demo_over_the_same_tables_streams_rsvps_of_its_own(tmp_path):
    from demo.run import PASSES_PER_RUN, next_first_pass

    frames = REAL[:20]
    runs = [next_first_pass(tmp_path) for _ in range(3)]
    assert runs == [0, PASSES_PER_RUN, 2 * PASSES_PER_RUN], "each run of the demo reserves passes of its own"
    seen: set[int] = set()
    for first_pass in runs:
        looped = fr.replay([frames], rebase_to_ms=2_000_000_000_000, loop=True, new_ids_each_loop=True,
                           first_pass=first_pass)  # fmt: skip
        ids = [json.loads(next(looped))["rsvp_id"] for _ in range(len(frames) * 3)]  # three passes of this run
        assert not seen & set(ids), "no RSVP of an earlier run comes again"
        assert ids[:20] == [json.loads(f)["rsvp_id"] + first_pass * fr.ID_STRIDE for f in frames]
        seen |= set(ids)


def test_the_real_captures_rebased_start_now_and_never_pause_long():
    captures = [fr.read_capture([p]) for p in CAPTURES]
    now = 2_000_000_000_000
    clocked = list(fr.with_clock(fr.replay(captures, rebase_to_ms=now, max_gap_ms=10_000)))
    assert clocked[0][0] == now
    steps = [b[0] - a[0] for a, b in zip(clocked, clocked[1:], strict=False)]
    assert max(steps) <= 10_000 and min(steps) >= 0
    assert clocked[-1][0] - now < 2 * 3600 * 1000  # ~1 hour of stream, not 6 years and 5 days


def test_faults_depend_only_on_seed_and_position():
    faults = fr.Faults(seed=4, duplicate=0.1, stale=0.1, malformed=0.1, extra_field=0.1)
    once, twice = list(fr.inject_faults(REAL[:400], faults)), list(fr.inject_faults(REAL[:400], faults))
    assert once == twice
    assert len(once) > 400  # duplicates and stale resends add frames
    broken = [f for f in once if f not in REAL and b"x_unknown_field" not in f]
    assert broken, "malformed variants are present"
    other_seed = list(fr.inject_faults(REAL[:400], fr.Faults(seed=5, malformed=0.1)))
    assert other_seed != once


@pytest.mark.parametrize("kind", fr.MALFORMED_KINDS)
def test_each_malformed_kind_breaks_the_frame(kind):
    frame = REAL[1]
    broken = fr.malform(frame, kind, random.Random(1))
    assert broken != frame
    try:
        record = json.loads(broken)
    except (ValueError, UnicodeDecodeError):
        return  # unparseable: broken
    if kind == "oversized":
        assert len(broken) > 1_000_000
    else:
        required = ("rsvp_id", "mtime", "guests")
        assert not all(isinstance(record.get(name), int) for name in required), "a required int is gone or a string"


def test_resume_from_skips_by_stream_clock_not_by_mtime():
    frames = [b'{"mtime":10}', b'{"mtime":30}', b'{"mtime":5}', b'{"mtime":40}']
    clocked = list(fr.with_clock(frames))
    assert [c for c, _ in clocked] == [10, 30, 30, 40]
    assert [f for _, f in fr.resume_from(clocked, 30)] == frames[1:]


def test_the_servers_first_pass_moves_the_generators_ids_and_the_captures_alike():
    from itertools import islice

    from ingest.server import build_parser, sources_from_args

    def first_ids(*argv: str) -> list[int]:
        sources = sources_from_args(build_parser().parse_args(list(argv)))
        return [json.loads(frame)["rsvp_id"] for frame in islice(sources["rsvps"](), 50)]

    generated, moved = (
        first_ids("--generate", "--seed", "3"),
        first_ids("--generate", "--seed", "3", "--first-pass", "2"),
    )
    assert moved == [i + 2 * fr.ID_STRIDE for i in generated]
    captured = first_ids("--captures", str(CAPTURES[0]))
    assert first_ids("--captures", str(CAPTURES[0]), "--first-pass", "1000") == [
        i + 1000 * fr.ID_STRIDE for i in captured
    ]


def test_a_second_demo_starts_its_stream_after_the_time_the_tables_have_reached():
    from itertools import islice

    from demo.run import start_at
    from ingest.server import build_parser, sources_from_args

    now = 1_800_000_000_000
    assert start_at(None, now) is None, "nothing seen yet: now"
    assert start_at(now - 60_000, now) is None, "a stream behind the clock: now"
    assert start_at(now + 3 * 3_600_000, now) == now + 3 * 3_600_000 + 1000, "ahead of the clock (10 x): after it"

    def first_mtimes(*argv: str) -> list[int]:
        sources = sources_from_args(build_parser().parse_args(list(argv)))
        return [json.loads(frame)["mtime"] for frame in islice(sources["rsvps"](), 20)]

    later = now + 3 * 3_600_000
    assert first_mtimes("--captures", str(CAPTURES[0]), "--rebase", "--start-at", str(later))[0] == later
    assert min(first_mtimes("--generate", "--start-at", str(later))) >= later - 3 * 86_400_000  # late ones allowed
    assert max(first_mtimes("--generate", "--start-at", str(later))) >= later
