"""Where every table and checkpoint lives under the lakehouse root. Jobs ask here; transforms never do.

    <root>/<generation>/bronze/<stream>        append-only raw tables, one per stream
    <root>/<generation>/silver/<table>         3NF tables, quarantine, batch stats
    <root>/<generation>/gold/<table>           aggregates, snapshots, scores, the chain's metrics
    <root>/<generation>/_checkpoints/<query>   one checkpoint per streaming query
    <root>/models/<model>/<version>/           model versions (ml/registry.py), shared by every generation

A table is named by its catalogue entry (`lakehouse/catalogue.py`), never by strings. A replay
(reprocessing) writes a new generation beside the old one, through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.settings import Settings

if TYPE_CHECKING:
    from lakehouse.catalogue import Table

DEFAULT_GENERATION = "g1"
MODELS = "models"  # beside the generations: a model outlives any one of them


def model_folder(model: str) -> str:
    """Where a model's versions live, relative to the lakehouse root."""
    return f"{MODELS}/{model}"


@dataclass(frozen=True)
class Layout:
    root: str
    generation: str = DEFAULT_GENERATION

    @classmethod
    def from_settings(cls, settings: Settings, generation: str = DEFAULT_GENERATION) -> Layout:
        return cls(settings.lakehouse_root.rstrip("/"), generation)

    def table(self, entry: Table) -> str:
        return f"{self.root}/{self.generation}/{entry.layer}/{entry.name}"

    def retired(self, layer: str, name: str) -> str:
        """Where a table of an older layout lives, one the catalogue no longer declares: only to recognise, and
        refuse, a generation written before it was retired."""
        return f"{self.root}/{self.generation}/{layer}/{name}"

    def model(self, model: str, version: str, part: str) -> str:
        """A part of a model version (its pipeline, its metadata), beside the generations."""
        return f"{self.root}/{model_folder(model)}/{version}/{part}"

    def checkpoint(self, query: str) -> str:
        return f"{self.root}/{self.generation}/_checkpoints/{query}"
