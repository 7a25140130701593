"""Small objects under the lakehouse root, on S3 (boto3) or a local directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common import health
from common.settings import Settings


class Store:
    """The few object operations on the lakehouse root that are not tables: small JSON pointers and
    records (generations, model versions), listing and deleting trees. Works on s3a:// roots and local paths.
    Names are relative to the root and may contain "/"."""

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
                body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
                return body
            except self.client.exceptions.NoSuchKey:
                return None
        path = self.local / name
        return path.read_bytes() if path.exists() else None

    def write(self, name: str, data: bytes) -> None:
        if self.s3:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
            return
        target = self.local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)  # atomic on one filesystem

    def exists(self, name: str) -> bool:
        """True when there is an object at `name` or anything under it."""
        if self.s3:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(name), MaxKeys=1)
            return int(page.get("KeyCount", 0)) > 0
        path = self.local / name
        return path.is_file() or (path.is_dir() and any(path.iterdir()))

    def children(self, under: str = "") -> list[str]:
        """Names of the "directories" directly under `under` (the root by default) that hold an object.

        A filesystem-backed S3 server (the local stack's) can leave an empty directory behind a delete
        and list it as a prefix: without the check, a dropped generation could still be listed.
        """
        if self.s3:
            prefix = self._key(under) + "/" if (self.prefix or under) else ""
            names = [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in self._pages(prefix)
                     for p in page.get("CommonPrefixes", [])]  # fmt: skip
            return sorted(name for name in names if self.exists(f"{under}/{name}" if under else name))
        path = self.local / under
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.exists() else []

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every page of a one-level listing under `prefix` (S3 returns at most 1,000 keys a page)."""
        token = None
        while True:
            extra: dict[str, str] = {"ContinuationToken": token} if token else {}
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/", **extra)
            yield page
            token = page.get("NextContinuationToken")
            if not token:
                return

    def files(self, under: str) -> list[str]:
        """Names of the objects directly under `under` (not deeper), sorted."""
        if self.s3:
            prefix = self._key(under) + "/"
            names = [item["Key"][len(prefix) :] for page in self._pages(prefix) for item in page.get("Contents", [])]
            return sorted(name for name in names if name)
        path = self.local / under
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.exists() else []

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
