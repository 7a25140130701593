"""Where every table and checkpoint lives under the lakehouse root. Jobs ask here; transforms never do.

    <root>/<generation>/bronze/<stream>        append-only raw tables, one per stream
    <root>/<generation>/silver/<table>         3NF tables, quarantine, batch stats
    <root>/<generation>/_checkpoints/<query>   one checkpoint per streaming query

A replay (reprocessing) writes a new generation beside the old one, through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import Settings

DEFAULT_GENERATION = "g1"


@dataclass(frozen=True)
class Layout:
    root: str
    generation: str = DEFAULT_GENERATION

    @classmethod
    def from_settings(cls, settings: Settings, generation: str = DEFAULT_GENERATION) -> Layout:
        return cls(settings.lakehouse_root.rstrip("/"), generation)

    def table(self, layer: str, name: str) -> str:
        return f"{self.root}/{self.generation}/{layer}/{name}"

    def checkpoint(self, query: str) -> str:
        return f"{self.root}/{self.generation}/_checkpoints/{query}"
