"""Frame sequences for the replay server: captures, time rebasing, looping, fault injection, resume.

Everything here is a pure generator over bytes, deterministic for a given configuration, so two
connections (or a reconnect) see the very same sequence; the server only adds pacing and the wire.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.protocol import extract_mtime

_TIME_FIELDS = re.compile(rb'"(mtime|time|ctime)"(\s*:\s*)(-?\d+)')
_RSVP_ID = re.compile(rb'"rsvp_id"(\s*:\s*)(\d+)')
_MEMBER_ID = re.compile(rb'"member_id"(\s*:\s*)(\d+)')
_GROUP_ID = re.compile(rb'"group_id"(\s*:\s*)(\d+)')
_EVENT_ID = re.compile(rb'"event_id"(\s*:\s*)"([^"]*)"')
ID_STRIDE = 10**10  # real rsvp_ids are below 2 * 10**9: pass k's ids never meet another pass's


def read_capture(paths: Iterable[Path]) -> list[bytes]:
    """Frames of JSONL captures, byte-for-byte (without the line break), in file order."""
    frames: list[bytes] = []
    for path in paths:
        frames.extend(line for line in Path(path).read_bytes().split(b"\n") if line.strip())
    return frames


def shift_times(frame: bytes, offset_ms: int) -> bytes:
    """Shift every mtime / time / ctime in the frame by offset_ms, leaving all other bytes as they were."""
    if offset_ms == 0:
        return frame

    def shifted(match: re.Match[bytes]) -> bytes:
        return b'"%s"%s%d' % (match.group(1), match.group(2), int(match.group(3)) + offset_ms)

    return _TIME_FIELDS.sub(shifted, frame)


def mtime_span(frames: list[bytes]) -> tuple[int, int]:
    mtimes = [m for m in map(extract_mtime, frames) if m is not None]
    if not mtimes:
        return 0, 0
    return min(mtimes), max(mtimes)


def timeline(captures: list[list[bytes]], max_gap_ms: int | None) -> tuple[list[bytes], list[int]]:
    """The captures end to end, and each frame's time shift, so that the stream clock (the greatest mtime
    so far) never jumps by more than `max_gap_ms`.

    A capture's clock starts at its first frame's mtime (as the stream's did), not at its smallest mtime:
    a stale resend months old stays months old. Each later capture starts a second after the one before.
    Without `max_gap_ms`, nothing is shifted: the captures' own times, one after another.
    """
    frames: list[bytes] = []
    shifts: list[int] = []
    emitted_clock: int | None = None
    for capture in captures:
        mtimes = [extract_mtime(frame) for frame in capture]
        anchor = next((m for m in mtimes if m is not None), None)
        shift = 0
        if max_gap_ms is not None and emitted_clock is not None and anchor is not None:
            shift = emitted_clock + 1000 - anchor
        clock = anchor
        for frame, mtime in zip(capture, mtimes, strict=True):
            if mtime is not None and clock is not None and mtime > clock:
                if max_gap_ms is not None and mtime - clock > max_gap_ms:
                    shift -= mtime - clock - max_gap_ms  # a recorded pause (hours, days) becomes max_gap_ms
                clock = mtime
            frames.append(frame)
            shifts.append(shift)
        if clock is not None:
            emitted_clock = clock + shift
    return frames, shifts


def new_rsvp_ids(frame: bytes, offset: int) -> bytes:
    """The frame with its rsvp_id moved by `offset`, every other byte as it was."""
    if offset == 0:
        return frame
    return _RSVP_ID.sub(lambda m: b'"rsvp_id"%s%d' % (m.group(1), int(m.group(2)) + offset), frame, count=1)


def new_pass_ids(frame: bytes, pass_number: int) -> bytes:
    """The frame as pass `pass_number` of a loop sends it: its RSVP, its member, its event and its group are
    new ones (rsvp_id, member_id and group_id moved by pass x ID_STRIDE, event_id suffixed "~pass"), with the
    same names, times of day and answers.

    A pass that brought the same people to the same events of the same groups would let the model's history
    features (each member's, group's and event's earlier answers) recall the previous pass's answers: a
    model trained after a long demo scored ROC AUC 0.996 on the next pass (2021 capture, logistic
    regression); with new members and events 0.925, with new groups too 0.819. The rest is the model
    seeing rows it was trained on, which a replay cannot avoid.
    """
    if pass_number == 0:
        return frame
    offset = pass_number * ID_STRIDE

    def moved(field: bytes) -> Callable[[re.Match[bytes]], bytes]:
        return lambda m: b'"%s"%s%d' % (field, m.group(1), int(m.group(2)) + offset)

    frame = new_rsvp_ids(frame, offset)
    frame = _MEMBER_ID.sub(moved(b"member_id"), frame, count=1)
    frame = _GROUP_ID.sub(moved(b"group_id"), frame, count=1)
    return _EVENT_ID.sub(lambda m: b'"event_id"%s"%s~%d"' % (m.group(1), m.group(2), pass_number), frame, count=1)


def replay(
    captures: list[list[bytes]],
    *,
    rebase_to_ms: int | None = None,
    loop: bool = False,
    max_gap_ms: int | None = None,
    new_ids_each_loop: bool = False,
    first_pass: int = 0,
) -> Iterator[bytes]:
    """The captures once (or forever) on one timeline (see `timeline`), optionally shifted so the first
    capture's first mtime becomes `rebase_to_ms`.

    Each loop pass is shifted by the timeline's span plus a second, so time keeps moving forward and a
    looped RSVP reappears as a newer version of itself; with `new_ids_each_loop`, as a new RSVP of a new
    member to a new event of a new group instead (new_pass_ids), so a demo keeps seeing new RSVPs to score.
    Passes are numbered from `first_pass`, so that a later run (a second demo over the same lakehouse)
    streams new RSVPs too.
    """
    frames, shifts = timeline(captures, max_gap_ms)
    clocked = [(extract_mtime(f), s) for f, s in zip(frames, shifts, strict=True)]
    emitted = [m + s for m, s in clocked if m is not None]
    first = next((m for m, _ in clocked if m is not None), 0)
    offset = 0 if rebase_to_ms is None else rebase_to_ms - first
    period = (max(emitted) - first + 1000) if emitted else 1000
    passes = 0
    while True:
        extra = offset + passes * period
        pass_number = first_pass + (passes if new_ids_each_loop else 0)
        for frame, shift in zip(frames, shifts, strict=True):
            yield new_pass_ids(shift_times(frame, shift + extra), pass_number)
        passes += 1
        if not loop:
            return


@dataclass(frozen=True)
class Faults:
    """Fault-injection knobs; each rate is a probability per frame, decided by (seed, position)."""

    seed: int = 0
    duplicate: float = 0.0  # send the frame twice
    stale: float = 0.0  # re-send an earlier frame (older mtime) after this one
    malformed: float = 0.0  # replace the frame by a broken variant
    extra_field: float = 0.0  # add an unknown top-level field
    disconnect_every: int = 0  # server closes the connection abruptly after N frames (0: never)
    stall_after: int = 0  # server stops sending and answering pings after N frames (0: never)

    @property
    def any_frame_faults(self) -> bool:
        return any((self.duplicate, self.stale, self.malformed, self.extra_field))


MALFORMED_KINDS = ("truncated", "wrong_type", "missing_required", "non_utf8", "oversized", "not_json")


def malform(frame: bytes, kind: str, rng: random.Random) -> bytes:
    """A broken variant of a frame, of the given kind."""
    if kind == "truncated":
        return frame[: rng.randrange(1, max(2, len(frame) - 1))]
    if kind == "wrong_type":
        return re.sub(rb'"(rsvp_id|guests|mtime|id|photo_id)"\s*:\s*(-?\d+)', rb'"\1":"x\2"', frame, count=1)
    if kind == "missing_required":
        return re.sub(rb'"(rsvp_id|id|photo_id|mtime)"\s*:\s*-?\d+\s*,?', b"", frame, count=1)
    if kind == "non_utf8":
        cut = rng.randrange(1, len(frame))
        return frame[:cut] + b"\xff\xfe\xc3(" + frame[cut:]
    if kind == "oversized":
        return frame[:-1] + b',"padding":"' + b"x" * 2_000_000 + b'"}'
    return b"<html><body>502 Bad Gateway</body></html>"


def inject_faults(frames: Iterable[bytes], faults: Faults) -> Iterator[bytes]:
    """Apply the per-frame faults; the decision for frame i depends only on (seed, i)."""
    if not faults.any_frame_faults:
        yield from frames
        return
    recent: deque[bytes] = deque(maxlen=200)
    for position, frame in enumerate(frames):
        rng = random.Random(f"{faults.seed}:{position}")
        if rng.random() < faults.malformed:
            yield malform(frame, rng.choice(MALFORMED_KINDS), rng)
            continue
        if rng.random() < faults.extra_field and frame.endswith(b"}"):
            frame = (
                frame[:-1] + b',"x_unknown_field":{"added_by":"fault-injection","n":' + str(position).encode() + b"}}"
            )
        yield frame
        if rng.random() < faults.duplicate:
            yield frame
        if recent and rng.random() < faults.stale:
            yield recent[rng.randrange(len(recent))]
        recent.append(frame)


def with_clock(frames: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Pair each frame with the stream clock: the greatest mtime sent so far (stale frames don't move it)."""
    clock = 0
    for frame in frames:
        mtime = extract_mtime(frame)
        if mtime is not None and mtime > clock:
            clock = mtime
        yield clock, frame


def resume_from(clocked: Iterable[tuple[int, bytes]], since_mtime: int | None) -> Iterator[tuple[int, bytes]]:
    """Skip frames whose stream clock is below since_mtime (the protocol's resume parameter)."""
    if since_mtime is None:
        yield from clocked
        return
    for clock, frame in clocked:
        if clock >= since_mtime:
            yield clock, frame
