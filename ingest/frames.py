"""Frame sequences for the replay server: captures, time rebasing, looping, fault injection, resume.

Everything here is a pure generator over bytes, deterministic for a given configuration, so two
connections (or a reconnect) see the very same sequence; the server only adds pacing and the wire.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.protocol import extract_mtime

_TIME_FIELDS = re.compile(rb'"(mtime|time|ctime)"(\s*:\s*)(-?\d+)')


def read_capture(paths: Iterable[Path]) -> list[bytes]:
    """Frames of JSONL captures, byte-for-byte (without the line break), in file order."""
    frames = []
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


def replay(frames: list[bytes], *, rebase_to_ms: int | None = None, loop: bool = False) -> Iterator[bytes]:
    """The capture once (or forever), optionally shifted so its first mtime becomes `rebase_to_ms`.

    Each loop pass is shifted by the capture's span plus a second, so time keeps moving forward and
    a looped RSVP reappears as a newer version of itself.
    """
    first, last = mtime_span(frames)
    offset = 0 if rebase_to_ms is None else rebase_to_ms - first
    period = last - first + 1000
    passes = 0
    while True:
        shift = offset + passes * period
        for frame in frames:
            yield shift_times(frame, shift)
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
