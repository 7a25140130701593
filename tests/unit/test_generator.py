"""The generator against the real captures: the same measures, computed the same way, within tolerances."""

from __future__ import annotations

import json
from itertools import islice

import pytest

from ingest import generator
from tests.helpers import capture_frames

# measure -> absolute tolerance (shares are fractions of messages)
TOLERANCES = {
    "yes": 0.03,
    "no_guests": 0.02,
    "repeats": 0.03,
    "whole_second_mtime": 0.03,
    "stale_over_60s": 0.015,
    "member_photo": 0.02,
    "other_services": 0.02,
    "venue": 0.03,
    "event_time": 0.01,
    "alphanumeric_event_id": 0.04,
    "group_state_iff_us_ca": 0.0,
    "mean_topics": 1.5,
    "escaped_slashes": 0.0,
}


def measures(frames: list[bytes]) -> dict[str, float]:
    messages = [json.loads(frame) for frame in frames]
    n = len(messages)
    seen, repeats, clock, stale = set(), 0, 0, 0
    for message in messages:
        repeats += message["rsvp_id"] in seen
        seen.add(message["rsvp_id"])
        stale += message["mtime"] < clock - 60_000
        clock = max(clock, message["mtime"])
    share = lambda predicate: sum(1 for m in messages if predicate(m)) / n  # noqa: E731
    return {
        "yes": share(lambda m: m["response"] == "yes"),
        "no_guests": share(lambda m: m["guests"] == 0),
        "repeats": repeats / n,
        "whole_second_mtime": share(lambda m: m["mtime"] % 1000 == 0),
        "stale_over_60s": stale / n,
        "member_photo": share(lambda m: "photo" in m["member"]),
        "other_services": share(lambda m: "other_services" in m["member"]),
        "venue": share(lambda m: "venue" in m),
        "event_time": share(lambda m: "time" in m["event"]),
        "alphanumeric_event_id": share(lambda m: not m["event"]["event_id"].isdigit()),
        "group_state_iff_us_ca": share(
            lambda m: ("group_state" in m["group"]) != (m["group"]["group_country"] in ("us", "ca"))
        ),
        "mean_topics": sum(len(m["group"]["group_topics"]) for m in messages) / n,
        "escaped_slashes": sum(1 for f in frames if b"/" in f.replace(b"\\/", b"")) / n,
    }


@pytest.fixture(scope="module")
def generated() -> list[bytes]:
    return list(generator.rsvps(seed=7, count=40_000))


def test_generated_distributions_match_the_real_captures(generated):
    real, fake = measures(capture_frames()), measures(generated)
    off = {
        name: (round(real[name], 4), round(fake[name], 4))
        for name in TOLERANCES
        if abs(real[name] - fake[name]) > TOLERANCES[name]
    }
    assert not off, f"measure: (real, generated) outside tolerance: {off}"


def test_same_seed_same_bytes_and_different_seed_differs():
    assert list(generator.rsvps(seed=3, count=500)) == list(generator.rsvps(seed=3, count=500))
    assert list(generator.rsvps(seed=3, count=500)) != list(generator.rsvps(seed=4, count=500))


def test_popularity_is_skewed_like_a_real_stream(generated):
    counts: dict[int, int] = {}
    for frame in generated:
        group_id = json.loads(frame)["group"]["group_id"]
        counts[group_id] = counts.get(group_id, 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    top_share = sum(ranked[: len(ranked) // 10]) / len(generated)
    assert 0.25 < top_share < 0.7, f"top 10% of groups take {top_share:.0%} of RSVPs"


def test_double_sends_repeat_with_mtime_cut_to_the_second(generated):
    last: dict[int, dict] = {}
    cut = 0
    for frame in generated:
        message = json.loads(frame)
        previous = last.get(message["rsvp_id"])
        if previous and message["mtime"] == previous["mtime"] // 1000 * 1000 and previous["mtime"] % 1000:
            assert {**message, "mtime": 0} == {**previous, "mtime": 0}
            cut += 1
        last[message["rsvp_id"]] = message
    assert cut / len(generated) > 0.1


def test_comments_and_photos_have_their_own_schemas():
    comment = json.loads(next(generator.event_comments(seed=1)))
    assert comment["table_name"] == "event_comment"
    assert {"id", "name", "urlname", "country", "category"} <= set(comment["group"])
    assert isinstance(comment["event"]["event_id"], str)
    photos = [json.loads(f) for f in islice(generator.photos(seed=1), 50)]
    assert all({"photo_id", "ctime", "mtime", "photo_album", "member"} <= set(p) for p in photos)
    assert all("group_topics" in p["photo_album"]["group"] for p in photos)
    assert any("event" in p["photo_album"] for p in photos)
