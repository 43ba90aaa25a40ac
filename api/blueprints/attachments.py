"""Photos and signatures: upload (request, bytes, complete) and download of variants."""

from __future__ import annotations

from flask import request, url_for
from marshmallow import fields, validate

from api import db
from api.blueprints.common import binary_content, documented, make_blueprint
from api.downloads import variant_response
from api.media import blob_store, limits, recompute_inspection
from api.security import current_scope, login_required
from media import uploads
from schemas.common import Out, Pattern, Strict
from schemas.inspections import AttachmentOut

blp = make_blueprint("attachments", "/attachments", "Photo and signature evidence")

VARIANTS = ("original", "preview", "thumb")
# What an original can be (photos, signature strokes) and what the derived variants are.
MIMES = tuple(dict.fromkeys((*uploads.PHOTO_MIMES, *uploads.SIGNATURE_MIMES)))
BYTES = {"schema": {"type": "string", "format": "binary"}}


class UploadIn(Strict):
    """What the device is about to upload."""

    sha256 = fields.String(required=True, validate=Pattern(r"^[0-9a-fA-F]{64}$"))
    byte_size = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    mime = fields.String(required=True, validate=validate.Length(max=100))


class UploadOut(Out):
    """Either already uploaded, or where to PUT the bytes."""

    already_uploaded = fields.Boolean()
    method = fields.String()
    url = fields.String()
    headers = fields.Dict()
    expires_at = fields.String()


class FileQuery(Strict):
    """Which variant."""

    variant = fields.String(load_default="original", validate=validate.OneOf(VARIANTS))


def _ctx():
    scope = current_scope()
    return {"user_id": scope.user_id, "sees_site": scope.sees_site}


def _write_ctx():
    # Writes also need the role: inspectors supply bytes only for their own inspections.
    return {**_ctx(), "role": current_scope().role}


@blp.route("/<attachment_id>/upload", methods=["POST"])
@blp.arguments(UploadIn)
@blp.response(200, UploadOut)
@documented(blp, 401, 403, 404, 409, 413, 422, 503)
@login_required
def request_upload(body, attachment_id):
    """Start an upload: dedupe by content, or get a URL to PUT the bytes to."""
    session = db.session()
    content_url = url_for("attachments.put_content", attachment_id=attachment_id)
    result = uploads.request_upload(
        session,
        blob_store(),
        limits(),
        attachment_id=attachment_id,
        sha256=body["sha256"],
        byte_size=body["byte_size"],
        mime=body["mime"],
        content_url=content_url,
        **_write_ctx(),
    )
    if result.get("already_uploaded"):
        recompute_inspection(session, attachment_id)
    db.commit()
    return result


@blp.route("/<attachment_id>/content", methods=["PUT"])
@blp.doc(requestBody={"required": True, "content": {mime: BYTES for mime in MIMES}})
@blp.response(200, UploadOut)
@documented(blp, 401, 403, 404, 413, 422, 503)
@login_required
def put_content(attachment_id):
    """Receive the bytes (local store); checked against the declared size and sha256."""
    # Photos may be larger than other request bodies (MAX_CONTENT_LENGTH): a photo accepted
    # by request_upload must be able to arrive here.
    request.max_content_length = max(request.max_content_length or 0, limits().max_bytes)
    stream = request.stream

    def chunks():
        while True:
            chunk = stream.read(1 << 16)
            if not chunk:
                return
            yield chunk

    uploads.receive_bytes(
        db.session(),
        blob_store(),
        limits(),
        attachment_id=attachment_id,
        chunks=chunks(),
        **_write_ctx(),
    )
    return {"already_uploaded": False}


@blp.route("/<attachment_id>/complete", methods=["POST"])
@blp.response(200, AttachmentOut)
@documented(blp, 401, 403, 404, 413, 422, 503)
@login_required
def complete(attachment_id):
    """Verify and process the uploaded bytes; the record becomes `uploaded`."""
    session = db.session()
    att = uploads.complete(
        session, blob_store(), limits(), attachment_id=attachment_id, **_write_ctx()
    )
    recompute_inspection(session, attachment_id)
    db.commit()
    return att


@blp.route("/<attachment_id>")
@blp.response(200, AttachmentOut)
@documented(blp, 401, 404)
@login_required
def get_attachment(attachment_id):
    """An attachment's metadata."""
    return uploads.get_for_download(db.session(), attachment_id, **_ctx())


@blp.route("/<attachment_id>/file")
@blp.arguments(FileQuery, location="query")
@blp.response(200)
@blp.alt_response(302, description="Redirect to a short-lived presigned URL (S3)", success=True)
@blp.alt_response(304, description="Not modified (ETag)", success=True)
@binary_content(blp, *MIMES, "application/octet-stream")
@documented(blp, 401, 404, 503)
@login_required
def get_file(query, attachment_id):
    """The bytes of a variant: streamed with an ETag (local) or a presigned redirect (S3)."""
    att = uploads.get_for_download(db.session(), attachment_id, **_ctx())
    return variant_response(att, query["variant"])


def blueprints():
    """This module's blueprints."""
    return [blp]
