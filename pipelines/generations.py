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
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from common import health
from common.settings import Settings
from pipelines.layout import DEFAULT_GENERATION, Layout

POINTER = "CURRENT"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class GenerationError(RuntimeError):
    """A generation that cannot be used, switched to or dropped as asked."""


def check_name(generation: str) -> str:
    if not NAME.match(generation) or generation == POINTER:
        raise GenerationError(f"{generation!r} is not a generation name: use letters, digits, '.', '_' or '-'")
    return generation


class _Store:
    """The few object operations generations need, on s3a:// roots or local paths."""

    def __init__(self, settings: Settings):
        self.settings = settings
        parsed = urlparse(settings.lakehouse_root)
        self.s3 = parsed.scheme in ("s3a", "s3")
        if self.s3:
            self.bucket = parsed.netloc
            self.prefix = parsed.path.strip("/")
            self.client = health.s3_client(settings)
        else:
            self.local = Path(parsed.path if parsed.scheme == "file" else settings.lakehouse_root)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def read(self, name: str) -> bytes | None:
        if self.s3:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
            except self.client.exceptions.NoSuchKey:
                return None
        path = self.local / name
        return path.read_bytes() if path.exists() else None

    def write(self, name: str, data: bytes) -> None:
        if self.s3:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
            return
        self.local.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.local, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, self.local / name)  # atomic on one filesystem

    def children(self) -> list[str]:
        if self.s3:
            names, token = [], None
            while True:
                extra = {"ContinuationToken": token} if token else {}
                page = self.client.list_objects_v2(
                    Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "", Delimiter="/", **extra
                )
                names += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
                token = page.get("NextContinuationToken")
                if not token:
                    return sorted(names)
        return sorted(p.name for p in self.local.iterdir() if p.is_dir()) if self.local.exists() else []

    def delete_tree(self, name: str) -> int:
        if self.s3:
            deleted, prefix = 0, self._key(name) + "/"
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                for start in range(0, len(keys), 1000):
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000]})
                deleted += len(keys)
            return deleted
        path = self.local / name
        count = sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0
        shutil.rmtree(path, ignore_errors=True)
        return count


def current(settings: Settings) -> str:
    """The generation readers use now."""
    data = _Store(settings).read(POINTER)
    return json.loads(data)["generation"] if data else DEFAULT_GENERATION


def layout(settings: Settings, generation: str | None = None) -> Layout:
    """The layout of `generation`, or of the current one when none is named."""
    return Layout.from_settings(settings, generation or current(settings))


def switch(settings: Settings, generation: str) -> str:
    """Point readers at `generation` in one atomic write; returns the generation they used before."""
    store = _Store(settings)
    check_name(generation)
    if generation not in store.children():
        raise GenerationError(f"generation {generation!r} does not exist under {settings.lakehouse_root}")
    previous = current(settings)
    record = {
        "generation": generation,
        "previous": previous,
        "switched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.write(POINTER, json.dumps(record).encode())
    return previous


def existing(settings: Settings) -> list[str]:
    return [name for name in _Store(settings).children() if NAME.match(name)]


def drop(settings: Settings, generation: str) -> int:
    """Delete a generation that readers no longer use; returns the number of objects deleted."""
    check_name(generation)
    if generation == current(settings):
        raise GenerationError(f"{generation!r} is the current generation: switch to another before dropping it")
    if generation not in existing(settings):
        raise GenerationError(f"generation {generation!r} does not exist under {settings.lakehouse_root}")
    return _Store(settings).delete_tree(generation)
