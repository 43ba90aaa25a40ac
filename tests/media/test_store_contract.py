"""One contract for every blob store: local disk, and S3 over HTTP (moto server mode)."""

from __future__ import annotations

import hashlib
import urllib.request
import uuid

import pytest

from media.storage import LocalBlobStore, S3BlobStore, StoreUnavailable, make_store
from tests.media.conftest import make_bucket


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, s3_endpoint):
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_endpoint, bucket)
    return make_store(
        {
            "MEDIA_STORE": "s3",
            "S3_BUCKET": bucket,
            "S3_PREFIX": "evidence",
            "S3_REGION": "us-east-1",
            "S3_ENDPOINT_URL": s3_endpoint,
        }
    )


def test_put_get_exists_size_delete(store):
    key = "blobs/ab/abc"
    assert not store.exists(key)
    store.put(key, b"hello")
    assert store.exists(key) and store.get(key) == b"hello" and store.size(key) == 5
    store.put(key, b"hello")  # same key, same bytes: harmless
    assert store.get(key) == b"hello"
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting twice is fine


def test_missing_key_is_a_key_error(store):
    with pytest.raises(KeyError):
        store.get("blobs/none/missing")
    with pytest.raises(KeyError):
        store.size("blobs/none/missing")


def test_keys_cannot_escape(store):
    for bad in ("../etc/passwd", "/abs", "a/../../b", ""):
        with pytest.raises(ValueError):
            store.put(bad, b"x")


def test_presigned_put_and_get_round_trip(store):
    data = b"\xff\xd8 photo bytes" * 100
    sha = hashlib.sha256(data).hexdigest()
    url, headers = store.presign_put("blobs/xx/" + sha, sha, len(data), "image/jpeg", 300)
    if url is None:  # the local store receives bytes through the API instead
        assert isinstance(store, LocalBlobStore)
        assert store.presign_get("blobs/xx/" + sha, 60) is None
        return
    assert headers["x-amz-checksum-sha256"]
    req = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert store.get("blobs/xx/" + sha) == data
    get_url = store.presign_get("blobs/xx/" + sha, 60, "image/jpeg")
    with urllib.request.urlopen(get_url, timeout=10) as resp:
        assert resp.read() == data


def test_ping(store):
    store.ping()


def test_unreachable_s3_is_store_unavailable():
    store = S3BlobStore("nope", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    with pytest.raises(StoreUnavailable):
        store.put("blobs/a/b", b"x")
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_make_store_refuses_unknown_kinds(tmp_path):
    with pytest.raises(RuntimeError):
        make_store({"MEDIA_STORE": "ftp", "MEDIA_ROOT": str(tmp_path)})
    with pytest.raises(RuntimeError):
        make_store({"MEDIA_STORE": "s3"})
