"""What bytes a signature may be, known to both the upload flow (media) and push (sync): bytes
already processed are judged by what their blob records, without reading them again."""

from __future__ import annotations

# A PNG as drawn on the device, or a JSON stroke list rendered to PNG on the server.
SIGNATURE_MIMES = ("image/png", "application/json")
MAX_SIDE = 4000


def too_large(width: int, height: int) -> str | None:
    """Why a signature of this size is refused, or None when it fits."""
    if width > MAX_SIDE or height > MAX_SIDE:
        return f"A signature may be at most {MAX_SIDE} px."
    return None


def blob_problem(mime: str | None, width: int | None, height: int | None) -> tuple | None:
    """Why processed bytes (their verified type and size, as their blob records them) cannot
    serve a signature record: (reason, message); None when they can."""
    if mime not in SIGNATURE_MIMES:
        return "unsupported_format", "A signature must be a PNG image or a JSON stroke list."
    message = too_large(width or 0, height or 0)
    return None if message is None else ("too_large", message)
