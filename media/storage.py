"""Blob storage behind one interface: the local filesystem and S3 (boto3)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,500}\Z")


class StoreUnavailable(Exception):
    """The blob store cannot be reached right now."""


class BlobStore(Protocol):
    """What the upload flow needs of a store; keys are content-addressed paths."""

    def put(self, key: str, data: bytes) -> None:
        """Store bytes under a key (overwriting is harmless: same key, same bytes)."""

    def get(self, key: str) -> bytes:
        """The bytes under a key (KeyError when missing)."""

    def exists(self, key: str) -> bool:
        """True when the key holds bytes."""

    def size(self, key: str) -> int:
        """Bytes under the key (KeyError when missing)."""

    def delete(self, key: str) -> None:
        """Remove the key; missing keys are fine."""

    def presign_put(
        self, key: str, sha256_hex: str, byte_size: int, mime: str, expires: int
    ) -> tuple[str | None, dict[str, str]]:
        """A URL and headers for the client to PUT to, or (None, {}) to use the API."""

    def presign_get(self, key: str, expires: int, mime: str | None = None) -> str | None:
        """A short-lived download URL, or None to stream through the API."""

    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be used."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (no '..', no absolute paths)."""
    if not _KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise ValueError(f"invalid blob key {key!r}")
    return key


class LocalBlobStore:
    """Files under a root folder, written atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Write atomically so a reader never sees half a file."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def get(self, key: str) -> bytes:
        """Read a file."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """File size."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        """Remove a file if present."""
        self._path(key).unlink(missing_ok=True)

    def presign_put(
        self, key: str, sha256_hex: str, byte_size: int, mime: str, expires: int
    ) -> tuple[str | None, dict[str, str]]:
        """The local store receives bytes through the API itself."""
        return None, {}

    def presign_get(self, key: str, expires: int, mime: str | None = None) -> str | None:
        """Bytes are streamed through the API."""
        return None

    def ping(self) -> None:
        """The root must be a writable folder."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"{self.root} is not writable")


class S3BlobStore:
    """An S3 bucket (AWS, MinIO, Ceph, moto) through boto3."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix and prefix.strip("/") else ""
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                config=Config(
                    connect_timeout=3,
                    read_timeout=10,
                    retries={"max_attempts": 2, "mode": "standard"},
                    signature_version="s3v4",
                ),
            )
        self.client = client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _call(self, method: str, read_body: bool = False, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError as TransportError

        try:
            result = getattr(self.client, method)(Bucket=self.bucket, **kwargs)
            # The body streams after the headers: a connection dropped mid-body is the same
            # outage as one dropped before them.
            return result["Body"].read() if read_body else result
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(kwargs.get("Key")) from None
            if (
                int(status) >= 500
                or code.startswith("5")
                or code in ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
            ):
                raise StoreUnavailable(code or str(status)) from exc
            raise
        except (BotoCoreError, TransportError, OSError) as exc:  # refused, timeouts, DNS, drops
            raise StoreUnavailable(str(exc)) from exc

    def put(self, key: str, data: bytes) -> None:
        """Upload bytes."""
        self._call("put_object", Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        """Download bytes."""
        return self._call("get_object", read_body=True, Key=self._key(key))

    def exists(self, key: str) -> bool:
        """HEAD the object."""
        try:
            self._call("head_object", Key=self._key(key))
        except KeyError:
            return False
        return True

    def size(self, key: str) -> int:
        """Object size from HEAD."""
        return int(self._call("head_object", Key=self._key(key))["ContentLength"])

    def delete(self, key: str) -> None:
        """Delete (S3 deletes of missing keys succeed)."""
        with contextlib.suppress(KeyError):
            self._call("delete_object", Key=self._key(key))

    def presign_put(
        self, key: str, sha256_hex: str, byte_size: int, mime: str, expires: int
    ) -> tuple[str | None, dict[str, str]]:
        """A presigned PUT bound to the content's length, type and SHA-256 checksum (S3
        rejects other bytes; clones that do not check are covered by our own check on
        complete)."""
        checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "ContentType": mime,
            "ContentLength": byte_size,
            "ChecksumSHA256": checksum,
        }
        try:
            url = self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires, HttpMethod="PUT"
            )
        except Exception as exc:  # botocore raises several types while signing
            raise StoreUnavailable(str(exc)) from exc
        return url, {"Content-Type": mime, "x-amz-checksum-sha256": checksum}

    def presign_get(self, key: str, expires: int, mime: str | None = None) -> str | None:
        """A short-lived GET URL."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if mime:
            params["ResponseContentType"] = mime
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    def ping(self) -> None:
        """HEAD the bucket."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable(str(exc)) from exc


def make_store(config: dict[str, Any]) -> LocalBlobStore | S3BlobStore:
    """The store the configuration asks for (MEDIA_STORE=local|s3)."""
    kind = (config.get("MEDIA_STORE") or "local").lower()
    if kind == "local":
        return LocalBlobStore(config["MEDIA_ROOT"])
    if kind == "s3":
        if not config.get("S3_BUCKET"):
            raise RuntimeError("MEDIA_STORE=s3 needs S3_BUCKET")
        return S3BlobStore(
            config["S3_BUCKET"],
            config.get("S3_PREFIX") or "",
            config.get("S3_REGION"),
            config.get("S3_ENDPOINT_URL"),
        )
    raise RuntimeError(f"MEDIA_STORE must be 'local' or 's3', not {kind!r}")
