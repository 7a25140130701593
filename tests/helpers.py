"""Small helpers shared by tests: the real captures, read independently of the code under test."""

from __future__ import annotations

from common.settings import PROJECT_ROOT

CAPTURES = sorted((PROJECT_ROOT / "data" / "rsvps").glob("*.jsonl"))


def capture_frames() -> list[bytes]:
    """Every real message, byte-for-byte, in file order."""
    frames: list[bytes] = []
    for path in CAPTURES:
        with open(path, "rb") as handle:
            frames.extend(line.rstrip(b"\n") for line in handle if line.strip())
    return frames
