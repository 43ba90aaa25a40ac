"""Signatures: a PNG as drawn on the device, or a stroke list rendered to PNG here."""

from __future__ import annotations

import io
import json
import math

from PIL import Image, ImageDraw, UnidentifiedImageError

from media.images import eight_bit
from store.signature_limits import MAX_SIDE, too_large

MAX_STROKES = 200
MAX_POINTS = 20_000


class SignatureRejected(Exception):
    """Not an acceptable signature; `reason` is a stable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _points(stroke: object) -> list[tuple[float, float]]:
    if not isinstance(stroke, list):
        raise SignatureRejected("bad_strokes", "Each stroke must be a list of points.")
    out = []
    for point in stroke:
        if isinstance(point, dict):
            x, y = point.get("x"), point.get("y")
        elif isinstance(point, list) and len(point) >= 2:
            x, y = point[0], point[1]
        else:
            raise SignatureRejected("bad_strokes", "A point must be {x, y} or [x, y].")
        if not all(
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and 0 <= v <= MAX_SIDE
            for v in (x, y)
        ):
            raise SignatureRejected(
                "bad_strokes", f"Point coordinates must be numbers from 0 to {MAX_SIDE}."
            )
        out.append((float(x), float(y)))
    return out


def render_strokes(strokes_json: bytes | str, *, width: int = 600, height: int = 200) -> bytes:
    """Draw a stroke list ([[{x, y}...]...] or [[[x, y]...]...]) as a black-on-white PNG,
    scaled to fit."""
    try:
        strokes = json.loads(strokes_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: absurdly nested arrays are not a signature either.
        raise SignatureRejected("bad_strokes", "The signature is not valid JSON.") from None
    if isinstance(strokes, dict):
        strokes = strokes.get("strokes")
    if not isinstance(strokes, list) or not strokes or len(strokes) > MAX_STROKES:
        raise SignatureRejected("bad_strokes", f"A signature needs 1 to {MAX_STROKES} strokes.")
    paths = [_points(s) for s in strokes]
    if sum(len(p) for p in paths) > MAX_POINTS:
        raise SignatureRejected("bad_strokes", f"At most {MAX_POINTS} points are accepted.")
    if not any(paths):
        raise SignatureRejected("bad_strokes", "The signature has no points.")
    xs = [x for p in paths for x, _ in p]
    ys = [y for p in paths for _, y in p]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    margin = 10
    scale = min(
        (width - 2 * margin) / max(max(xs) - min(xs), 1.0),
        (height - 2 * margin) / max(max(ys) - min(ys), 1.0),
        (width + height) / span,
    )
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for path in paths:
        pts = [(margin + (x - min(xs)) * scale, margin + (y - min(ys)) * scale) for x, y in path]
        if len(pts) == 1:
            draw.ellipse([pts[0][0] - 1, pts[0][1] - 1, pts[0][0] + 1, pts[0][1] + 1], fill=0)
        else:
            draw.line(pts, fill=0, width=3, joint="curve")
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def clean_png(data: bytes) -> bytes:
    """The PNG's pixels re-encoded with no metadata (no EXIF/GPS, text chunks or ICC)."""
    with Image.open(io.BytesIO(data), formats=("PNG",)) as img:
        img.load()
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        # 16-bit greyscale scaled to 8 bits, not clipped to white.
        pixels = eight_bit(img)
        clean = pixels.convert("RGBA" if has_alpha else "RGB" if pixels.mode != "L" else "L")
    clean.info = {}
    out = io.BytesIO()
    clean.save(out, "PNG")
    return out.getvalue()


def check_sides(width: int, height: int) -> None:
    """Refuse a signature of more than MAX_SIDE pixels a side."""
    message = too_large(width, height)
    if message is not None:
        raise SignatureRejected("too_large", message)


def verify_signature_png(data: bytes) -> tuple[int, int]:
    """Check that the bytes are a sane PNG; returns its size."""
    if not data:
        raise SignatureRejected("empty", "The signature file is empty.")
    try:
        img = Image.open(io.BytesIO(data), formats=("PNG",))
        check_sides(img.width, img.height)
        img.load()
    except SignatureRejected:
        raise
    except Image.DecompressionBombError:
        # Pillow refuses to open it at all: far past the side limit (a few KB of PNG can
        # declare hundreds of millions of pixels).
        raise SignatureRejected("too_large", f"A signature may be at most {MAX_SIDE} px.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise SignatureRejected(
            "unsupported_format", "A signature must be a PNG image or a JSON stroke list."
        ) from None
    return img.width, img.height
