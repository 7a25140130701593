"""Generations: which set of tables and checkpoints readers use, and how to switch or drop one.

    <root>/CURRENT            {"generation": "g2", "switched_at": "...", "previous": "g1"}
    <root>/g1/...             a generation: bronze, silver, gold tables and their checkpoints
    <root>/g2/...

Readers (the chain by default, the app, the tests) resolve the generation through CURRENT. A switch is
one PUT of that small object (one rename on a local root), which S3 applies atomically: a reader sees
either the old generation or the new one, never a mix. Without CURRENT, the generation is g1.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from common.settings import Settings
from common.store import Store
from lakehouse.layout import DEFAULT_GENERATION, MODELS, Layout

POINTER = "CURRENT"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class GenerationError(RuntimeError):
    """A generation that cannot be used, switched to or dropped as asked."""


def check_name(generation: str) -> str:
    if generation in (POINTER, MODELS):
        raise GenerationError(f"{generation!r} is reserved under the lakehouse root: choose another generation name")
    if not NAME.match(generation):
        raise GenerationError(f"{generation!r} is not a generation name: use letters, digits, '.', '_' or '-'")
    return generation


def current(settings: Settings) -> str:
    """The generation readers use now."""
    data = Store(settings).read(POINTER)
    return json.loads(data)["generation"] if data else DEFAULT_GENERATION


def layout(settings: Settings, generation: str | None = None) -> Layout:
    """The layout of `generation` (refused if it is not a generation name), or of the current one."""
    if generation:
        check_name(generation)
    return Layout.from_settings(settings, generation or current(settings))


def switch(settings: Settings, generation: str) -> str:
    """Point readers at `generation` in one atomic write; returns the generation they used before."""
    store = Store(settings)
    check_name(generation)
    if generation not in store.children():
        raise GenerationError(f"generation {generation!r} does not exist under {settings.lakehouse_root}")
    previous = current(settings)
    record = {
        "generation": generation,
        "previous": previous,
        "switched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write(POINTER, json.dumps(record).encode())
    return previous


def existing(settings: Settings) -> list[str]:
    return [name for name in Store(settings).children() if NAME.match(name) and name != MODELS]


def drop(settings: Settings, generation: str) -> int:
    """Delete a generation that readers no longer use; returns the number of objects deleted."""
    check_name(generation)
    if generation == current(settings):
        raise GenerationError(f"{generation!r} is the current generation: switch to another before dropping it")
    if generation not in existing(settings):
        raise GenerationError(f"generation {generation!r} does not exist under {settings.lakehouse_root}")
    return Store(settings).delete_tree(generation)
