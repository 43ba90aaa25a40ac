"""Photo processing: verify by content, refuse bombs and broken files, orient, strip metadata,
make a preview (1600 px) and a thumbnail (320 px); the original is never modified.

Decisions:
- The format is what the bytes are, not the name or the declared type. A declared type that
  disagrees with the content (a PNG declared image/jpeg) is refused: the device's record would
  describe the evidence wrongly.
- Bytes after a JPEG's end marker (a polyglot carrying a ZIP or HTML) are tolerated in the
  original, which is only ever served as the declared image type with nosniff; derivatives are
  re-encoded from pixels, so they never carry them.
- EXIF over 256 KiB is refused: no camera writes that much, and parsing it is attack surface.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

PREVIEW_SIDE = 1600
THUMB_SIDE = 320
MAX_EXIF_BYTES = 256 * 1024
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
_HEIF_MIMES = ("image/heic", "image/heif")
# What a damaged file raises while read: Pillow's own errors, and libheif's through pillow_heif
# (EOFError for a stream that ends early, RuntimeError for sizes past its security limits).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, RuntimeError)
_heif_ready = False


class ImageRejected(Exception):
    """Not acceptable photo evidence; `reason` is a stable word, `message` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ProcessedImage:
    """What processing learnt and made."""

    mime: str
    width: int
    height: int
    captured_at: dt.datetime | None
    gps: tuple[float, float] | None
    preview: bytes
    thumb: bytes


def _enable_heif() -> None:
    global _heif_ready
    if not _heif_ready:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_ready = True


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    _enable_heif()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=tuple(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(
                "decompression_bomb", f"The image declares more pixels than allowed ({max_pixels})."
            ) from None
        except UnidentifiedImageError:
            raise ImageRejected(
                "unsupported_format", "This is not a JPEG, PNG, WebP or HEIC image."
            ) from None
        except _DECODE_ERRORS as exc:
            raise ImageRejected("corrupt", f"The image cannot be read: {exc}.") from None
    if img.width * img.height > max_pixels:
        raise ImageRejected(
            "decompression_bomb",
            f"The image has {img.width}x{img.height} pixels; at most {max_pixels} are accepted.",
        )
    return img


def _exif_facts(img: Image.Image) -> tuple[dt.datetime | None, tuple[float, float] | None]:
    raw = img.info.get("exif") or b""
    if len(raw) > MAX_EXIF_BYTES:
        raise ImageRejected(
            "too_large_metadata",
            f"The photo carries {len(raw)} bytes of EXIF; at most {MAX_EXIF_BYTES} are accepted.",
        )
    try:
        exif = img.getexif()
    except Exception:  # malformed EXIF must not lose the photo itself
        return None, None
    captured = None
    stamp = _ifd(exif, 0x8769).get(0x9003) or exif.get(0x0132)
    if isinstance(stamp, str):
        try:
            captured = dt.datetime.strptime(stamp.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            captured = None
    gps = None
    try:
        gps_ifd = _ifd(exif, 0x8825)
        if gps_ifd.get(2) and gps_ifd.get(4):
            lat = _degrees(gps_ifd[2]) * (-1 if gps_ifd.get(1) == "S" else 1)
            lon = _degrees(gps_ifd[4]) * (-1 if gps_ifd.get(3) == "W" else 1)
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                gps = (round(lat, 7), round(lon, 7))
    except (TypeError, ValueError, ZeroDivisionError, KeyError):
        gps = None
    return captured, gps


def _ifd(exif: Image.Exif, tag: int) -> dict:
    """A sub-IFD of the EXIF, or nothing when it cannot be read (a pointer out of the file,
    or negative: Pillow raises ValueError, struct.error, OSError...)."""
    try:
        return exif.get_ifd(tag)
    except Exception:  # malformed EXIF must not lose the photo itself
        return {}


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8; 1 when absent or unreadable)."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF must not lose the photo itself
        return 1
    return value if value in _TRANSPOSE or value == 1 else 1


# EXIF orientation -> the transposition that makes the picture upright (as exif_transpose,
# which also rewrites the EXIF and fails on values of unexpected types: the derivatives
# carry none).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Integer greyscale modes (16-bit PNGs): their values run to 65535, and convert() clips them.
_WIDE_GREY = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def eight_bit(img: Image.Image) -> Image.Image:
    """The image with 8-bit channels: 16-bit greyscale scaled down (converting it as it is
    would clip every value above 255 to white)."""
    if img.mode not in _WIDE_GREY:
        return img
    wide = img if img.mode == "I" else img.convert("I")
    return wide.point(lambda v: v / 257).convert("L")


def _flatten(img: Image.Image) -> Image.Image:
    """RGB pixels; transparent parts on white, as a page shows them (not black)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        page = Image.new("RGB", img.size, "white")
        page.paste(img, mask=img.getchannel("A"))
        return page
    return img.convert("RGB")


def _degrees(parts: tuple) -> float:
    d, m, s = (float(x) for x in parts)
    return d + m / 60 + s / 3600


def _encode(img: Image.Image) -> bytes:
    """JPEG with no metadata at all (no EXIF, GPS, XMP, ICC, comments)."""
    out = io.BytesIO()
    clean = _flatten(img)
    clean.info = {}
    clean.save(out, "JPEG", quality=85, exif=b"", icc_profile=None)
    return out.getvalue()


def process_image(
    data: bytes, *, declared_mime: str | None, max_pixels: int = 60_000_000
) -> ProcessedImage:
    """Verify, orient and derive; raises ImageRejected with a reason a person can act on."""
    img = _open(data, max_pixels)
    # Phone cameras write multi-picture JPEGs (MPO); the first frame is the photo.
    fmt = "JPEG" if img.format == "MPO" else img.format
    mime = FORMATS[fmt]
    declared = (declared_mime or "").lower()
    if declared and declared != mime and not (mime == "image/heic" and declared in _HEIF_MIMES):
        raise ImageRejected("mime_mismatch", f"The file is {mime} but was declared {declared}.")
    captured, gps = _exif_facts(img)
    full_w, full_h = img.size
    if fmt == "JPEG":
        # Decode at the smallest DCT scale that still covers the preview: a 12 MP photo is
        # never fully decoded to make a 1600 px preview.
        ratio = PREVIEW_SIDE / max(full_w, full_h)
        if ratio < 1:
            img.draft("RGB", (math.ceil(full_w * ratio), math.ceil(full_h * ratio)))
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        raise ImageRejected("corrupt", f"The image is truncated or corrupt: {exc}.") from None
    # Read once loaded (a PNG may keep its EXIF after the pixels) and for every format: the
    # size recorded is the size of the image served.
    orientation = _orientation(img)
    upright = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
    # Shrunk first, in place, then turned upright: a full-size copy of a 60 MP PNG (which,
    # unlike a JPEG, cannot be decoded at a smaller scale) costs hundreds of MB.
    if img.mode in _WIDE_GREY and "transparency" not in img.info:
        # 16-bit greyscale shrinks as it is (without reduce(), which it lacks): scaled to 8
        # bits at full size it passes through 32-bit integers, ~500 MB for 60 MP.
        img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS, reducing_gap=None)
    preview = eight_bit(img)
    if "transparency" in preview.info and preview.mode in ("RGB", "L"):
        # A colour marked transparent (a PNG's tRNS) as alpha before resampling blurs it.
        preview = preview.convert("RGBA")
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    if orientation in _TRANSPOSE:
        preview = preview.transpose(_TRANSPOSE[orientation])
    thumb = preview.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return ProcessedImage(
        mime=mime,
        width=upright[0],
        height=upright[1],
        captured_at=captured,
        gps=gps,
        preview=_encode(preview),
        thumb=_encode(thumb),
    )
