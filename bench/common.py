"""What every benchmark shares: settings of its own, and where and how results are written."""

from __future__ import annotations

import json
from dataclasses import replace

from common.settings import PROJECT_ROOT, Settings

RESULTS = PROJECT_ROOT / "bench" / "results"


def isolated(base: Settings, name: str) -> Settings:
    """Topics, PostgreSQL schema and lakehouse prefix that belong to this run alone."""
    return replace(
        base,
        kafka=replace(base.kafka, topic_prefix=name),
        postgres=replace(base.postgres, schema=name),
        lakehouse_root=base.path("bench", name),
    )


def write_results(name: str, payload: dict, table: list[str]) -> None:
    """bench/results/<name>.json (everything) and <name>.md (the table, also printed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
