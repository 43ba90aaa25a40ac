"""The upload flow: request an upload, receive bytes, complete (verify, process), serve, gc.

Bytes are content-addressed by sha256, so two attachments with the same photo share one
stored original; every step can be repeated without harm.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from media import images, signatures
from media.storage import BlobStore, StoreUnavailable
from store.enums import INSPECTOR
from store.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from store.models import Attachment, Blob, Inspection
from store.signature_limits import SIGNATURE_MIMES, blob_problem
from store.types import utcnow

SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
# The same rule as record ids in a push (sync/validate.py _ID).
ATTACHMENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
PHOTO_MIMES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")
# What an original may be served as: only types the server verified the bytes to be.
SERVABLE_MIMES = frozenset((*PHOTO_MIMES, *SIGNATURE_MIMES))


class Rejected(DomainError):
    """The bytes are not acceptable evidence; says why."""

    status = 422
    reason = "rejected"


class TooLarge(DomainError):
    """Bigger than the configured upload limit."""

    status = 413
    reason = "upload_too_large"


@dataclass
class Limits:
    """Configured limits."""

    max_bytes: int
    max_pixels: int
    expiry: dt.timedelta
    presign_seconds: int


def original_key(sha256: str) -> str:
    """Where an original lives."""
    return f"blobs/{sha256[:2]}/{sha256}"


def staged_key(sha256: str, attachment_id: str) -> str:
    """Where one attachment's copy of bytes the store already holds is PUT to be verified."""
    # The "u-" prefix keeps ids such as ".." from being read as path steps.
    return f"incoming/{sha256[:2]}/{sha256}/u-{attachment_id}"


def derived_key(sha256: str, variant: str) -> str:
    """Where a derivative lives."""
    ext = "png" if variant.endswith("png") else "jpg"
    return f"derived/{sha256[:2]}/{sha256}/{variant.removesuffix('-png')}.{ext}"


def guarded(store_call: Any, *args: Any, **kwargs: Any) -> Any:
    """The store call's result; a missing file is a 404 and an unreachable store a 503."""
    try:
        return store_call(*args, **kwargs)
    except KeyError:
        # A file the records promise but the store lacks (say, the PNG variants of a JPEG
        # whose record was relabelled a signature) is the client's 404, not a server fault.
        raise NotFound(
            "This file of the attachment is not available; fetch variant=original instead.",
            reason="file_missing",
        ) from None
    except StoreUnavailable:
        raise Unavailable(
            "The photo store cannot be reached right now; retry shortly.",
            reason="storage_unavailable",
        ) from None


def _attachment(
    session: Session,
    attachment_id: str,
    sees_site: Any,
    user_id: str,
    *,
    creating: bool = False,
    write: bool = False,
) -> Attachment | None:
    """The attachment, None when there is none. A record of a site outside scope: 404 to read
    it, 403 to upload to it (`write`; domain.md); someone else's early bytes (no site yet)
    are not a record anyone else may know of: 404."""
    if not ATTACHMENT_ID.match(attachment_id or ""):
        if creating:
            raise Invalid(
                "An attachment id is 1 to 64 letters, digits, '_', '.' or '-'.",
                errors={"id": ["1 to 64 of A-Z a-z 0-9 _ . -"]},
            )
        raise NotFound("No attachment with that id.")
    att = session.get(Attachment, attachment_id)
    if att is None:
        return None
    if att.deleted_at is not None or (not att.site_id and att.uploaded_by != user_id):
        raise NotFound("No attachment with that id.")
    if att.site_id and not sees_site(att.site_id):
        if write:
            raise Forbidden(
                "You may not upload to this attachment: its site is outside your scope."
            )
        raise NotFound("No attachment with that id.")
    return att


def _lock_inspection(session: Session, att: Attachment) -> None:
    """Hold the attachment's inspection before the attachment changes: the upload then
    recomputes the inspection, and a push takes the inspection first and its attachments
    after, so taking them the other way round deadlocks with it."""
    if att.inspection_id:
        session.execute(
            select(Inspection.id).where(Inspection.id == att.inspection_id).with_for_update()
        )


def _locked(session: Session, att: Attachment) -> Attachment:
    """The attachment re-read under its row lock (after its inspection's, the order every
    writer takes): two completions of one upload (a double tap, a retry after a timeout) run
    one after the other, and the second sees the first's outcome instead of finding the
    upload's own copy of the bytes already consumed; a push that changed the record while
    this request waited for the inspection is seen, not overwritten."""
    fresh = session.execute(
        select(Attachment)
        .where(Attachment.id == att.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if fresh is None or fresh.deleted_at is not None:
        raise NotFound("No attachment with that id.")
    return fresh


def _check_owner(session: Session, att: Attachment, user_id: str, role: str | None) -> None:
    """Inspectors supply bytes only for their own (or unclaimed) inspections, as in a push."""
    if role != INSPECTOR or not att.inspection_id:
        return
    insp = session.get(Inspection, att.inspection_id)
    if insp is not None and insp.inspector_id not in (None, user_id):
        raise Forbidden(
            "This attachment belongs to another inspector's inspection; only they can upload "
            "its bytes.",
            reason="not_your_inspection",
        )


def _possessed(session: Session, sha256: str, sees_site: Any, user_id: str) -> bool:
    """True when the user can already see an uploaded attachment with these bytes."""
    rows = session.execute(
        select(Attachment.site_id, Attachment.uploaded_by).where(
            Attachment.sha256 == sha256,
            Attachment.uploaded.is_(True),
            Attachment.deleted_at.is_(None),
        )
    )
    return any(sees_site(site) if site else uploaded_by == user_id for site, uploaded_by in rows)


def _staging(
    session: Session, att: Attachment, sees_site: Any, user_id: str
) -> tuple[Blob | None, bool]:
    """The processed blob for the upload's hash, and whether this upload PUTs its own copy of
    the bytes (staged_key): always, unless the user can already see those bytes uploaded. The
    hash alone is not proof of holding them, or it would hand out any photo whose hash leaked,
    processed or still in flight; so a completion only ever reads what its own upload sent."""
    blob = session.get(Blob, att.sha256)
    if blob is None or not blob.has_derivatives:
        return None, True
    return blob, not _possessed(session, att.sha256, sees_site, user_id)


def _same_mime(declared: str | None, verified: str) -> bool:
    heif = ("image/heic", "image/heif")
    return (declared or "").lower() == verified or (declared in heif and verified in heif)


def request_upload(
    session: Session,
    store: BlobStore,
    limits: Limits,
    *,
    attachment_id: str,
    user_id: str,
    sees_site: Any,
    sha256: str,
    byte_size: int,
    mime: str,
    content_url: str,
    role: str | None = None,
) -> dict[str, Any]:
    """Step 1: dedupe by content, or hand out where to PUT the bytes."""
    sha256 = sha256.lower()
    if not SHA256.match(sha256):
        raise Invalid("sha256 must be 64 hex characters.", errors={"sha256": ["not a sha256"]})
    if byte_size > limits.max_bytes:
        raise TooLarge(f"Uploads are limited to {limits.max_bytes} bytes.")
    att = _attachment(session, attachment_id, sees_site, user_id, creating=True, write=True)
    if att is not None:
        _lock_inspection(session, att)
        att = _locked(session, att)  # decided on the record as it is once its writers are done
        _check_owner(session, att, user_id, role)
    if att is None:
        # The bytes came before the record synced: keep a pending record for them.
        att = Attachment(
            id=attachment_id,
            sha256=sha256,
            byte_size=byte_size,
            mime=mime,
            kind="signature" if mime == "application/json" else "photo",
            pending_upload=True,
            uploaded_by=user_id,
        )
        session.add(att)
    elif att.sha256 and att.sha256 != sha256:
        raise Conflict(
            "This attachment record names different bytes (sha256); upload the photo it describes.",
            reason="sha256_mismatch",
        )
    elif att.byte_size and att.byte_size != byte_size:
        raise Conflict("This attachment record names a different size.", reason="size_mismatch")
    else:
        att.sha256, att.byte_size, att.mime = sha256, byte_size, att.mime or mime
    allowed = SIGNATURE_MIMES if att.kind == "signature" else PHOTO_MIMES
    if mime not in allowed:
        raise Invalid(
            f"A {att.kind} must be one of {', '.join(allowed)}.",
            errors={"mime": [f"one of {', '.join(allowed)}"]},
        )
    att.upload_requested_at = att.upload_requested_at or utcnow()
    att.uploaded_by = att.uploaded_by or user_id
    session.flush()
    blob, staged = _staging(session, att, sees_site, user_id)
    if blob is not None:
        # The record's own claim too: a record describing the bytes wrongly is refused, as
        # processing refuses it when the bytes are new.
        _check_blob(blob, byte_size, mime)
        _check_blob(blob, byte_size, att.mime or mime)
        if not staged:
            _check_kind(att, blob)
            _mark_uploaded(session, att, blob)
            session.flush()
            # Bytes an earlier request staged for this record are no longer needed (gc visits
            # only uploads that never completed: they would stay for good).
            guarded(store.delete, staged_key(sha256, att.id))
            return {"already_uploaded": True}
    key = staged_key(sha256, att.id) if staged else original_key(sha256)
    expires = utcnow() + dt.timedelta(seconds=limits.presign_seconds)
    url, headers = guarded(store.presign_put, key, sha256, byte_size, mime, limits.presign_seconds)
    if url is None:
        url, headers = content_url, {"Content-Type": mime}
    return {
        "method": "PUT",
        "url": url,
        "headers": headers,
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
    }


def _check_kind(att: Attachment, blob: Blob) -> None:
    """Bytes processed for another record serve this one only as what they are: a photo's PNG
    reused by a signature record must pass the signature's checks (processing skipped them).
    Push judges a record made or relabelled a signature by the same rule (blob_problem)."""
    problem = blob_problem(blob.mime, blob.width, blob.height) if att.kind == "signature" else None
    if problem is not None:
        raise Rejected(problem[1], reason=problem[0])


def _check_blob(blob: Blob, byte_size: int, mime: str) -> None:
    """409 when an upload describes known bytes (by hash) with another size or type."""
    if blob.byte_size != byte_size:
        raise Conflict(
            f"Those bytes (sha256) are {blob.byte_size} bytes long, not {byte_size}; "
            "send the photo's real size.",
            reason="size_mismatch",
        )
    if not _same_mime(mime, blob.mime):
        raise Conflict(
            f"Those bytes (sha256) are {blob.mime}, not {mime}; send the file's real type.",
            reason="mime_mismatch",
        )


def receive_bytes(
    session: Session,
    store: BlobStore,
    limits: Limits,
    *,
    attachment_id: str,
    user_id: str,
    sees_site: Any,
    chunks: Iterable[bytes],
    role: str | None = None,
) -> dict[str, Any]:
    """Step 2 (local store): take the bytes, check them against the requested sha256 and size,
    and store them under their hash; nothing is kept when they do not match."""
    att = _attachment(session, attachment_id, sees_site, user_id, write=True)
    if att is None or not att.sha256:
        raise Invalid("Request an upload first (POST .../upload).", reason="no_upload_requested")
    _check_owner(session, att, user_id, role)
    _blob, staged = _staging(session, att, sees_site, user_id)
    digest = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > min(limits.max_bytes, att.byte_size or limits.max_bytes):
            raise TooLarge("More bytes than the upload declared; nothing was kept.")
        digest.update(chunk)
        parts.append(chunk)
    if size != att.byte_size:
        raise Rejected(
            f"Received {size} bytes but the upload declared {att.byte_size}; "
            "nothing was kept. Upload the whole file again.",
            reason="size_mismatch",
        )
    if digest.hexdigest() != att.sha256:
        raise Rejected(
            "The bytes do not match the declared sha256; nothing was kept.",
            reason="sha256_mismatch",
        )
    key = staged_key(att.sha256, att.id) if staged else original_key(att.sha256)
    guarded(store.put, key, b"".join(parts))
    return {"received": size}


def complete(
    session: Session,
    store: BlobStore,
    limits: Limits,
    *,
    attachment_id: str,
    user_id: str,
    sees_site: Any,
    role: str | None = None,
) -> Attachment:
    """Step 3: verify size and sha256 ourselves, validate and process, mark uploaded."""
    att = _attachment(session, attachment_id, sees_site, user_id, write=True)
    if att is None or not att.sha256:
        raise Invalid("Request an upload first (POST .../upload).", reason="no_upload_requested")
    if att.uploaded:
        return att
    _lock_inspection(session, att)
    att = _locked(session, att)
    if att.uploaded:
        return att  # a completion of the same upload finished while this one waited
    if not att.sha256:
        raise Invalid("Request an upload first (POST .../upload).", reason="no_upload_requested")
    _check_owner(session, att, user_id, role)
    blob, staged = _staging(session, att, sees_site, user_id)
    if not staged:
        # The user can already see these bytes uploaded: their record must describe them.
        _check_blob(blob, att.byte_size or 0, att.mime or blob.mime)
        _check_kind(att, blob)
        # A copy this upload staged before is not needed (gc visits only uploads that never
        # completed: it would stay for good).
        guarded(store.delete, staged_key(att.sha256, att.id))
    else:
        # Staged, always so while no processed blob exists (_staging): its own copy only.
        own = staged_key(att.sha256, att.id)
        data = _verified_bytes(store, limits, att, own)
        guarded(store.delete, own)
        if blob is not None:
            # The user proved they hold the bytes; the shared original is already processed.
            _check_blob(blob, att.byte_size or 0, att.mime or blob.mime)
            _check_kind(att, blob)
        else:
            # Verified, its copy becomes the original (of these bytes, by their hash, whoever
            # else is uploading them too).
            key = original_key(att.sha256)
            guarded(store.put, key, data)
            try:
                blob = _process(session, store, limits, att, data)
            except (images.ImageRejected, signatures.SignatureRejected) as exc:
                _drop_unclaimed(session, store, att, key)
                raise Rejected(exc.message, reason=exc.reason) from None
    _mark_uploaded(session, att, blob)
    session.flush()
    return att


def _verified_bytes(store: BlobStore, limits: Limits, att: Attachment, key: str) -> bytes:
    """The bytes under this upload's own key, checked against the record's size and sha256
    (size first, so an oversized object is refused without being read); refused bytes go."""
    try:
        size = guarded(store.size, key)
    except NotFound:
        raise Invalid(
            "No bytes have arrived for this upload yet; PUT them, then complete.",
            reason="bytes_missing",
        ) from None
    if size != att.byte_size or size > limits.max_bytes:
        guarded(store.delete, key)
        raise Rejected(
            f"The stored file has {size} bytes, not the declared {att.byte_size}; "
            "request the upload again and PUT the whole file.",
            reason="size_mismatch",
        )
    data = guarded(store.get, key)
    if len(data) != size or hashlib.sha256(data).hexdigest() != att.sha256:
        # Bytes that are not what their content address names are of no use to anyone.
        guarded(store.delete, key)
        raise Rejected(
            "The stored bytes do not match the declared sha256; upload them again.",
            reason="sha256_mismatch",
        )
    return data


def _drop_unclaimed(session: Session, store: BlobStore, att: Attachment, key: str) -> None:
    """Delete bytes refused as this record's evidence unless another record names them: the
    same bytes may be fine for a record declaring another type, or still in flight."""
    others = session.execute(
        select(Attachment.id)
        .where(Attachment.sha256 == att.sha256, Attachment.id != att.id)
        .limit(1)
    ).first()
    if others is None:
        guarded(store.delete, key)


def _process(
    session: Session, store: BlobStore, limits: Limits, att: Attachment, data: bytes
) -> Blob:
    # The variants served depend on the kind a record gives when they are fetched, which may
    # differ from the kind now: bytes uploaded before their record are guessed to be a photo
    # unless JSON (request_upload), blobs are shared by hash, and a kind can be edited. So
    # bytes acceptable as both get both sets of variants.
    sha = att.sha256
    if att.kind == "signature":
        strokes = att.mime == "application/json"
        png = signatures.render_strokes(data) if strokes else data
        width, height = signatures.verify_signature_png(png)
        _put_signature_variants(store, sha, png)
        with contextlib.suppress(images.ImageRejected):
            photo = images.process_image(
                png, declared_mime="image/png", max_pixels=limits.max_pixels
            )
            _put_photo_variants(store, sha, photo)
        # The type the bytes were verified to be, never the record's claim: it is served.
        mime, meta = ("application/json" if strokes else "image/png"), {}
    else:
        result = images.process_image(data, declared_mime=att.mime, max_pixels=limits.max_pixels)
        _put_photo_variants(store, sha, result)
        if result.mime == "image/png":
            with contextlib.suppress(signatures.SignatureRejected):
                signatures.verify_signature_png(data)
                _put_signature_variants(store, sha, data)
        width, height, mime = result.width, result.height, result.mime
        meta = {"captured_at": result.captured_at, "gps": result.gps}
    blob = session.get(Blob, sha)
    if blob is None:
        blob = _new_blob(session, Blob(sha256=sha, byte_size=len(data), mime=mime))
    blob.width, blob.height, blob.has_derivatives = width, height, True
    captured = meta.get("captured_at")
    if isinstance(captured, dt.datetime):
        att.exif_captured_at = captured if captured.tzinfo else captured.replace(tzinfo=dt.UTC)
    if meta.get("gps"):
        att.exif_latitude, att.exif_longitude = meta["gps"]
    return blob


def _new_blob(session: Session, blob: Blob) -> Blob:
    """Insert the blob, or take the row another completion of the same bytes (another record,
    processed at the same moment) committed meanwhile: the same bytes, the same facts; a
    second insert must not fail this upload."""
    try:
        with session.begin_nested():
            session.add(blob)
    except IntegrityError:
        found = session.get(Blob, blob.sha256, populate_existing=True)
        if found is None:
            raise
        return found
    return blob


def _put_signature_variants(store: BlobStore, sha: str, png: bytes) -> None:
    """A signature's preview and thumbnail: its pixels re-encoded, without metadata."""
    clean = signatures.clean_png(png)
    guarded(store.put, derived_key(sha, "preview-png"), clean)
    guarded(store.put, derived_key(sha, "thumb-png"), clean)


def _put_photo_variants(store: BlobStore, sha: str, result: images.ProcessedImage) -> None:
    """A photo's JPEG preview and thumbnail."""
    guarded(store.put, derived_key(sha, "preview"), result.preview)
    guarded(store.put, derived_key(sha, "thumb"), result.thumb)


def _mark_uploaded(session: Session, att: Attachment, blob: Blob) -> None:
    att.uploaded = True
    att.width, att.height = blob.width, blob.height
    own = (att.exif_captured_at, att.exif_latitude, att.exif_longitude)
    if att.kind == "signature" or any(v is not None for v in own):
        return
    # Bytes processed for another record are not read again: what their EXIF says (the same
    # for every record of them) comes from a record they were processed for.
    facts = (Attachment.exif_captured_at, Attachment.exif_latitude, Attachment.exif_longitude)
    known = session.execute(
        select(*facts)
        .where(
            Attachment.sha256 == blob.sha256,
            Attachment.uploaded.is_(True),
            Attachment.id != att.id,
            or_(*(f.is_not(None) for f in facts)),
        )
        .limit(1)
    ).first()
    if known is not None:
        att.exif_captured_at, att.exif_latitude, att.exif_longitude = known


def variant_key(att: Attachment, variant: str, blob: Blob | None) -> tuple[str, str]:
    """(store key, mime) of one variant of an uploaded attachment; the mime is the one the
    server verified when it processed the bytes, never the record's claim."""
    if not att.uploaded or not att.sha256 or blob is None or blob.sha256 != att.sha256:
        raise NotFound("This attachment's bytes have not been uploaded yet.", reason="not_uploaded")
    if variant == "original":
        # Served inline: a type not verified from the bytes could make them a page (XSS).
        mime = blob.mime if blob.mime in SERVABLE_MIMES else "application/octet-stream"
        return original_key(att.sha256), mime
    if att.kind == "signature":
        return derived_key(att.sha256, f"{variant}-png"), "image/png"
    return derived_key(att.sha256, variant), "image/jpeg"


def get_for_download(
    session: Session, attachment_id: str, sees_site: Any, user_id: str
) -> Attachment:
    """An attachment in scope whose bytes may be fetched."""
    att = _attachment(session, attachment_id, sees_site, user_id)
    if att is None:
        raise NotFound("No attachment with that id.")
    return att


def gc(session: Session, store: BlobStore, expiry: dt.timedelta) -> dict[str, int]:
    """Forget uploads that never completed: their bytes (if no completed blob shares them) and
    pending records whose metadata never synced."""
    cutoff = utcnow() - expiry
    # An old upload being completed right now holds its row (complete): skipped, not collected.
    stale = (
        session.execute(
            select(Attachment)
            .where(Attachment.uploaded.is_(False), Attachment.upload_requested_at < cutoff)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    taken = [a.id for a in stale]
    hashes = sorted({a.sha256 for a in stale if a.sha256})
    done = {
        b
        for (b,) in session.execute(
            select(Blob.sha256).where(Blob.sha256.in_(hashes), Blob.has_derivatives)
        )
    }
    # Any other record of the same bytes still waiting for them may need them: a live upload
    # (requested within the expiry) another device is about to complete, or an old one being
    # completed right now (skipped above), whose completion has just stored the original.
    live = {
        h
        for (h,) in session.execute(
            select(Attachment.sha256).where(
                Attachment.sha256.in_(hashes),
                Attachment.uploaded.is_(False),
                Attachment.deleted_at.is_(None),
                Attachment.id.not_in(taken),
            )
        )
    }
    removed_bytes = removed_records = 0
    for att in stale:
        own = att.sha256 and staged_key(att.sha256, att.id)
        if own and guarded(store.exists, own):
            guarded(store.delete, own)  # the upload's own copy: never anyone else's
            removed_bytes += 1
        key = att.sha256 and original_key(att.sha256)
        spared = att.sha256 in done or att.sha256 in live
        if key and not spared and guarded(store.exists, key):
            guarded(store.delete, key)
            removed_bytes += 1
        att.upload_requested_at = None
    pending = [a.id for a in stale if a.pending_upload]
    if pending:
        session.execute(delete(Attachment).where(Attachment.id.in_(pending)))
        removed_records = len(pending)
    session.flush()
    return {"objects_deleted": removed_bytes, "pending_records_deleted": removed_records}
