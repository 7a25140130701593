"""Model versions in the lakehouse, beside the generations (they outlive any one of them).

    <root>/models/<name>/v1/pipeline/        the fitted MLlib PipelineModel (PipelineModel.save)
    <root>/models/<name>/v1/metadata.json    metrics, baselines, features, training window, table versions
    <root>/models/<name>/CURRENT             {"version": "v1", "promoted_at": "..."}: what scorers load

A version is complete (model and metadata written) before CURRENT names it, and CURRENT changes in one
PUT, so a scorer polling it loads either the old version or the new one, never half of one.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pyspark.ml import PipelineModel

from common.settings import Settings
from common.store import Store
from lakehouse.layout import Layout, model_folder

RESPONSE_MODEL = "rsvp_response"
CATEGORY_MODEL = "group_categories"
POINTER = "CURRENT"
VERSION = re.compile(r"^v(\d+)$")


def version_number(version: str) -> int:
    """v12 -> 12 (versions are listed only when they match VERSION)."""
    found = VERSION.match(version)
    if found is None:
        raise ValueError(f"not a model version: {version!r}")
    return int(found.group(1))


class NoModelError(RuntimeError):
    """No version of the model has been trained (or the version asked for does not exist)."""


class Registry:
    def __init__(self, settings: Settings, name: str = RESPONSE_MODEL):
        self.name = name
        self.layout = Layout.from_settings(settings)
        self.store = Store(settings)
        self.folder = model_folder(name)

    def versions(self) -> list[str]:
        found = [v for v in self.store.children(self.folder) if VERSION.match(v)]
        return sorted(found, key=version_number)

    def next_version(self) -> str:
        versions = self.versions()
        return f"v{version_number(versions[-1]) + 1}" if versions else "v1"

    def path(self, version: str, part: str = "pipeline") -> str:
        return self.layout.model(self.name, version, part)

    def current(self) -> str | None:
        data = self.store.read(f"{self.folder}/{POINTER}")
        return json.loads(data)["version"] if data else None

    def metadata(self, version: str | None = None) -> dict[str, Any]:
        version = version or self.current_or_fail()
        data = self.store.read(f"{self.folder}/{version}/metadata.json")
        if data is None:
            raise NoModelError(f"{self.name} {version} has no metadata under {self.layout.root}/{self.folder}")
        found: dict[str, Any] = json.loads(data)
        return found

    def save(self, model: PipelineModel, metadata: dict[str, Any], *, promote: bool = True) -> str:
        """Write a new version (model, then metadata); point CURRENT at it when promote. Returns it."""
        version = self.next_version()
        model.write().overwrite().save(self.path(version))
        record = {"name": self.name, "version": version, **metadata}
        self.store.write(f"{self.folder}/{version}/metadata.json", json.dumps(record, indent=2, default=str).encode())
        if promote:
            self.promote(version)
        return version

    def promote(self, version: str) -> None:
        if version not in self.versions():
            raise NoModelError(
                f"{self.name} has no version {version!r}; it has: {', '.join(self.versions()) or 'none'}"
            )
        pointer = {"version": version, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.store.write(f"{self.folder}/{POINTER}", json.dumps(pointer).encode())

    def load(self, version: str | None = None) -> tuple[str, PipelineModel]:
        version = version or self.current_or_fail()
        return version, PipelineModel.load(self.path(version))

    def current_or_fail(self) -> str:
        version = self.current()
        if version is None:
            raise NoModelError(
                f"no {self.name} model under {self.layout.root}/{self.folder}: train one with `make train`"
            )
        return version
