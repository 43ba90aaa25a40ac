"""TEMPORARY minimal store (to be replaced by the media helper's module)."""

from __future__ import annotations

import os
from pathlib import Path


class StoreUnavailable(Exception):
    """The store cannot be reached."""


class BlobStore:
    """Interface."""


class LocalBlobStore(BlobStore):
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def presign_put(self, key, sha256_hex, byte_size, mime, expires):
        return None, {}

    def presign_get(self, key, expires, mime=None):
        return None

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


def make_store(config: dict) -> BlobStore:
    return LocalBlobStore(config["MEDIA_ROOT"])
