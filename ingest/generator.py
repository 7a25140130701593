"""A seeded, realistic generator of the three Meetup streams, calibrated against the real captures.

Groups (with their real city, country, coordinates and topic lists), event names and venues are
resampled from `data/rsvps/`; ids, members, times and answers are synthesised. Popularity is skewed
(Zipf over groups and members), and the stream repeats itself the way the real one did:

| pattern (share of RSVP messages, as measured on the captures)   | how it is made                          |
|------------------------------------------------------------------|-----------------------------------------|
| ~20% repeat an earlier rsvp_id                                   | the four kinds below                    |
| ~14% double-sends: the repeat's mtime cut to the whole second    | `CUT_REPEAT` right after the original   |
| guest changes, yes/no flips                                      | `GUESTS_CHANGE`, `FLIP`, minutes later  |
| byte-identical stale resends, new RSVPs arriving minutes late   | `STALE_RESEND`, `LATE_NEW`              |

Same seed, same bytes: a reconnecting client gets the sequence it had.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from common.settings import PROJECT_ROOT

Json = dict[str, Any]  # a JSON object, as json.loads gives it

CAPTURES = PROJECT_ROOT / "data" / "rsvps"
DEFAULT_START_MS = 1_700_000_000_000

YES = 0.835
NO_GUESTS = 0.952
CUT_REPEAT = 0.18
WHOLE_SECOND_ONLY = 0.03  # the original was never sent, only its whole-second copy
GUESTS_CHANGE = 0.035
FLIP = 0.03
STALE_RESEND = 0.02
LATE_NEW = 0.012
PHOTO = 0.933
OTHER_SERVICES = 0.089
VENUE = 0.84
EVENT_TIME = 0.992
ALNUM_EVENT_ID = 0.31
MEAN_GAP_MS = 450
LEAD_MEDIAN_DAYS = 5.9

CATEGORIES = (
    (34, "Tech", "tech"),
    (9, "Fitness", "fitness"),
    (23, "Outdoors & Adventure", "outdoors-adventure"),
    (31, "Socializing", "socializing"),
    (16, "Language & Ethnic Identity", "language"),
    (2, "Career & Business", "career-business"),
    (21, "Music", "music"),
    (1, "Arts & Culture", "arts-culture"),
    (14, "Health & Wellbeing", "health-wellbeing"),
    (15, "Hobbies & Crafts", "hobbies-crafts"),
    (32, "Sports & Recreation", "sports-recreation"),
    (3, "Cars & Motorcycles", "cars-motorcycles"),
    (10, "Food & Drink", "food-drink"),
    (22, "New Age & Spirituality", "new-age-spirituality"),
    (36, "Writing", "writing"),
    (25, "Parents & Family", "parents-family"),
    (4, "Community & Environment", "community"),
)
SERVICES = (("facebook", 0.55), ("twitter", 0.35), ("linkedin", 0.04), ("tumblr", 0.03), ("flickr", 0.03))
KEY_ORDERS = (
    ("venue", "visibility", "response", "guests", "member", "rsvp_id", "mtime", "event", "group"),
    ("response", "member", "visibility", "event", "guests", "mtime", "rsvp_id", "group", "venue"),
)


def encode(record: Json) -> bytes:
    """Serialise as the stream did: compact, UTF-8, every '/' escaped as '\\/'."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/").encode()


@dataclass(frozen=True)
class Calibration:
    groups: tuple[Json, ...]
    event_names: tuple[str, ...]
    venues: tuple[Json, ...]
    guests_when_some: tuple[int, ...]


@lru_cache(maxsize=4)
def calibration(captures: Path = CAPTURES) -> Calibration:
    """Distinct groups, event names, venues and the non-zero guest counts seen in the captures."""
    groups, names, venues, guests = {}, set(), {}, []
    for path in sorted(captures.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            message = json.loads(line)
            groups[message["group"]["group_id"]] = message["group"]
            names.add(message["event"]["event_name"])
            if "venue" in message:
                venues[message["venue"]["venue_id"]] = message["venue"]
            if message["guests"]:
                guests.append(message["guests"])
    return Calibration(_ordered(groups), tuple(sorted(names)), _ordered(venues), tuple(guests))


def _ordered(objects: dict[int, Json]) -> tuple[Json, ...]:
    return tuple(objects[key] for key in sorted(objects))  # a stable order for the seed


class Population:
    """Groups, events and members drawn once from the seed; shared by the three streams."""

    def __init__(self, seed: int, cal: Calibration, members: int = 200_000):
        rng = random.Random(f"population:{seed}")
        self.seed = seed
        self.cal = cal
        self.groups = []
        for index, template in enumerate(cal.groups):
            group = dict(template)
            group["group_id"] = 10_000_000 + index * 7 + rng.randrange(7)
            group["category"] = CATEGORIES[rng.randrange(len(CATEGORIES))]
            self.groups.append(group)
        rng.shuffle(self.groups)
        self.group_weights = _cumulative([1 / (rank + 20) ** 0.9 for rank in range(len(self.groups))])
        self.member_count = members
        self._events: dict[int, list[Json]] = {}

    def group(self, rng: random.Random) -> Json:
        return self.groups[_pick(self.group_weights, rng)]

    def events_of(self, group: Json, start_ms: int) -> list[Json]:
        """Each group's 1-3 upcoming events, made on first use (deterministic per group)."""
        events = self._events.get(group["group_id"])
        if events is None:
            rng = random.Random(f"events:{self.seed}:{group['group_id']}")
            events = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                if rng.random() < ALNUM_EVENT_ID:
                    event_id = "".join(rng.choice("bcdfghjklmnpqrstvwxyz") for _ in range(13))
                else:
                    event_id = str(rng.randrange(100_000_000, 300_000_000))
                lead_days = math.exp(rng.gauss(math.log(LEAD_MEDIAN_DAYS), 1.1))
                event: Json = {
                    "event_name": self.cal.event_names[rng.randrange(len(self.cal.event_names))],
                    "event_id": event_id,
                    "event_url": "https://www.meetup.com/{}/events/{}/".format(
                        group["group_urlname"], rng.randrange(10**8, 10**9)
                    ),
                }
                if rng.random() < EVENT_TIME:
                    event["time"] = start_ms + int(lead_days * 86_400_000)
                venue = dict(self.cal.venues[rng.randrange(len(self.cal.venues))]) if rng.random() < VENUE else None
                events.append({"event": event, "venue": venue})
            self._events[group["group_id"]] = events
        return events

    def member(self, rng: random.Random) -> Json:
        # Zipf-like activity: a few members RSVP a lot, most once.
        index = int(self.member_count ** rng.random()) - 1
        digest = hashlib.sha256(f"{self.seed}:member:{index}".encode()).hexdigest()
        member: Json = {"member_id": 100_000_000 + index * 11 + int(digest[:2], 16) % 11}
        member_rng = random.Random(digest)
        if member_rng.random() < PHOTO:
            member["photo"] = (
                f"https://secure.meetupstatic.com/photos/member/x/x/x/x/thumb_{int(digest[2:10], 16)}.jpeg"
            )
        member["member_name"] = f"Member {digest[10:20]}"
        if member_rng.random() < OTHER_SERVICES:
            services: Json = {}
            for service, share in SERVICES:
                if member_rng.random() < share or not services and service == "flickr":
                    services[service] = {"identifier": f"{service[:2]}{digest[20:28]}"}
            member["other_services"] = services
        return member


def _cumulative(weights: list[float]) -> list[float]:
    total, running = sum(weights), 0.0
    out = []
    for weight in weights:
        running += weight / total
        out.append(running)
    return out


def _pick(cumulative: list[float], rng: random.Random) -> int:
    return min(bisect.bisect_left(cumulative, rng.random()), len(cumulative) - 1)


def rsvps(seed: int = 1, count: int | None = None, start_ms: int = DEFAULT_START_MS) -> Iterator[bytes]:
    """`count` RSVP messages (endless when None), with the real stream's repeats and late arrivals."""
    population = Population(seed, calibration())
    rng = random.Random(f"rsvps:{seed}")
    clock = start_ms
    next_rsvp_id = 1_900_000_000
    scheduled: list[tuple[int, int, bytes | Json]] = []  # (due clock, tie-break, message)
    sequence = 0
    emitted = 0
    while count is None or emitted < count:
        clock += int(rng.expovariate(1 / MEAN_GAP_MS)) + 1
        if scheduled and scheduled[0][0] <= clock:
            _, _, message = heapq.heappop(scheduled)
            yield message if isinstance(message, bytes) else _encode_rsvp(message)
            emitted += 1
            continue
        next_rsvp_id += rng.randrange(1, 40)
        group = population.group(rng)
        slot = rng.choice(population.events_of(group, start_ms + (clock - start_ms) // 2))
        member = population.member(rng)
        mtime = clock - int(rng.uniform(120_000, 3 * 86_400_000)) if rng.random() < LATE_NEW else clock
        if rng.random() < WHOLE_SECOND_ONLY:
            mtime = mtime // 1000 * 1000
        guests = 0 if rng.random() < NO_GUESTS else rng.choice(population.cal.guests_when_some)
        message = {
            "venue": slot["venue"],
            "visibility": "public",
            "response": "yes" if rng.random() < YES else "no",
            "guests": guests,
            "member": member,
            "rsvp_id": next_rsvp_id,
            "mtime": mtime,
            "event": slot["event"],
            "group": {k: v for k, v in group.items() if k != "category"},
            "_order": rng.randrange(len(KEY_ORDERS)),
        }
        frame = _encode_rsvp(message)
        yield frame
        emitted += 1
        if rng.random() < CUT_REPEAT:
            sequence += 1
            heapq.heappush(scheduled, (clock, sequence, {**message, "mtime": mtime // 1000 * 1000}))
        if rng.random() < GUESTS_CHANGE:
            sequence += 1
            later = clock + int(rng.expovariate(1 / 600_000))
            new_guests = max(0, guests + rng.choice((-1, 1, 1, 2)))
            heapq.heappush(scheduled, (later, sequence, {**message, "mtime": later, "guests": new_guests}))
        if rng.random() < FLIP:
            sequence += 1
            later = clock + int(rng.expovariate(1 / 600_000))
            flipped = "no" if message["response"] == "yes" else "yes"
            heapq.heappush(scheduled, (later, sequence, {**message, "mtime": later, "response": flipped}))
        if rng.random() < STALE_RESEND:
            sequence += 1
            heapq.heappush(scheduled, (clock + int(rng.uniform(120_000, 1_800_000)), sequence, frame))


def _encode_rsvp(message: Json) -> bytes:
    order = KEY_ORDERS[message["_order"]]
    return encode({key: message[key] for key in order if message.get(key) is not None})


def _group_object(group: Json, rng: random.Random, *, topics: bool) -> Json:
    """The `group` object of comments and photos: the same group under different key names."""
    out = {
        "id": group["group_id"],
        "name": group["group_name"],
        "urlname": group["group_urlname"],
        "city": group["group_city"],
        "state": group.get("group_state"),
        "country": group["group_country"],
        "group_lat": group["group_lat"],
        "group_lon": group["group_lon"],
        "join_mode": rng.choice(("open", "open", "approval")),
    }
    if topics:
        out["group_topics"] = group["group_topics"]
    return {k: v for k, v in out.items() if v is not None}


def event_comments(seed: int = 1, count: int | None = None, start_ms: int = DEFAULT_START_MS) -> Iterator[bytes]:
    population = Population(seed, calibration())
    rng = random.Random(f"comments:{seed}")
    clock, comment_id, emitted = start_ms, 30_000_000, 0
    while count is None or emitted < count:
        clock += int(rng.expovariate(1 / (MEAN_GAP_MS * 8))) + 1
        comment_id += rng.randrange(1, 50)
        group = population.group(rng)
        event = rng.choice(population.events_of(group, start_ms))["event"]
        member = population.member(rng)
        category_id, category_name, shortname = group["category"]
        group_object = _group_object(group, rng, topics=False)
        group_object["category"] = {"id": category_id, "name": category_name, "shortname": shortname}
        record = {
            "visibility": "public",
            "member": {k: member[k] for k in ("member_id", "member_name", "photo") if k in member},
            "comment": rng.choice(("See you there!", "Is there parking nearby?", "Running 10 min late", "Thanks all!")),
            "id": comment_id if rng.random() > 0.01 else -comment_id,
            "mtime": clock,
            "event": {"event_id": event["event_id"], "event_name": event["event_name"]},
            "table_name": "event_comment",
            "group": group_object,
            "status": "active",
        }
        if rng.random() < 0.2:
            record["in_reply_to"] = comment_id - rng.randrange(1, 500)
        yield encode(record)
        emitted += 1


def photos(seed: int = 1, count: int | None = None, start_ms: int = DEFAULT_START_MS) -> Iterator[bytes]:
    population = Population(seed, calibration())
    rng = random.Random(f"photos:{seed}")
    clock, photo_id, emitted = start_ms, 480_000_000, 0
    while count is None or emitted < count:
        clock += int(rng.expovariate(1 / (MEAN_GAP_MS * 15))) + 1
        photo_id += rng.randrange(1, 50)
        group = population.group(rng)
        member = population.member(rng)
        base = f"https://secure.meetupstatic.com/photos/event/x/x/x/x/{{}}_{photo_id}.jpeg"
        album = {"photo_album_id": photo_id // 97, "group": _group_object(group, rng, topics=True)}
        if rng.random() < 0.8:
            event = rng.choice(population.events_of(group, start_ms))["event"]
            album["event"] = {"id": event["event_id"], "name": event["event_name"]}
        record = {
            "photo_id": photo_id,
            "ctime": clock - rng.randrange(0, 5000),
            "mtime": clock,
            "highres_link": base.format("highres"),
            "photo_link": base.format("600"),
            "thumb_link": base.format("thumb"),
            "member": {"member_id": member["member_id"], "name": member["member_name"]},
            "photo_album": album,
        }
        if rng.random() < 0.3:
            record["caption"] = rng.choice(("Great turnout", "Group photo", "The view from the top"))
        yield encode(record)
        emitted += 1


def generator_sources(
    seed: int = 1, count: int | None = None, start_ms: int | None = None
) -> dict[str, Callable[[], Iterator[bytes]]]:
    """Frame sources for the replay server: `count` RSVPs (comments and photos in proportion).

    The start time is fixed when the sources are made, so each connection (and every reconnect)
    gets the same deterministic sequence.
    """
    start = start_ms if start_ms is not None else int(time.time() * 1000)
    comments = None if count is None else max(1, count // 8)
    photo_count = None if count is None else max(1, count // 15)
    return {
        "rsvps": lambda: rsvps(seed, count, start),
        "event_comments": lambda: event_comments(seed, comments, start),
        "photos": lambda: photos(seed, photo_count, start),
    }
