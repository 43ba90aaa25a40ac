"""Photo processing: orientation, sizes, stripped metadata, and a corpus of bad files."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image

from media.images import ImageRejected, process_image
from media.signatures import SignatureRejected, render_strokes, verify_signature_png
from tests.media.conftest import jpeg, png

SHANGHAI = (31.2304, 121.4737)


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_twelve_megapixel_photo_upright_sized_and_stripped():
    original = jpeg(4000, 3000, orientation=6, gps=SHANGHAI, taken="2026:11:20 09:15:00")
    before = bytes(original)
    result = process_image(original, declared_mime="image/jpeg")
    assert original == before  # never modified
    assert (result.width, result.height) == (3000, 4000)  # upright dimensions
    preview, thumb = _open(result.preview), _open(result.thumb)
    assert preview.size == (1200, 1600) and thumb.size == (240, 320)
    for img in (preview, thumb):
        assert not img.getexif(), "no EXIF at all in derivatives"
        assert "exif" not in img.info and "icc_profile" not in img.info
    # Orientation 6 means the camera was turned: the red top-left block ends top-right.
    w, _ = preview.size
    assert preview.getpixel((w - 20, 20))[0] > 200 and preview.getpixel((w - 20, 20))[1] < 60
    assert preview.getpixel((20, 20))[0] < 200 or preview.getpixel((20, 20))[1] > 60
    lat, lon = result.gps
    assert abs(lat - SHANGHAI[0]) < 1e-3 and abs(lon - SHANGHAI[1]) < 1e-3
    assert result.captured_at.isoformat() == "2026-11-20T09:15:00"


def test_png_webp_and_heic_are_accepted():
    import pillow_heif

    assert process_image(png(), declared_mime="image/png").mime == "image/png"
    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 200, 30)).save(buf, "WEBP")
    assert process_image(buf.getvalue(), declared_mime="image/webp").width == 800
    heif = pillow_heif.from_pillow(Image.new("RGB", (640, 480), (200, 10, 30)))
    out = io.BytesIO()
    heif.save(out, format="HEIF")
    result = process_image(out.getvalue(), declared_mime="image/heic")
    assert (result.width, result.height) == (640, 480)
    assert _open(result.preview).size == (640, 480)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image."""
    raw = zlib.compress(b"\x00" * 100)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 300_000  # ImageDescription
    out = io.BytesIO()
    # JPEG caps EXIF at 64 KiB; PNG's eXIf chunk does not, so the attack comes as a PNG.
    Image.new("RGB", (100, 100)).save(out, "PNG", exif=exif.tobytes())
    return out.getvalue()


BAD_FILES = {
    "decompression bomb": (lambda: _bomb_png(30000, 30000), "image/png", "decompression_bomb"),
    "truncated jpeg": (lambda: jpeg(800, 600)[:5000], "image/jpeg", "corrupt"),
    "text named .jpg": (
        lambda: b"this is not a photo at all\n" * 10,
        "image/jpeg",
        "unsupported_format",
    ),
    "png declared as jpeg": (png, "image/jpeg", "mime_mismatch"),
    "zero bytes": (lambda: b"", "image/jpeg", "empty"),
    "huge exif": (_huge_exif, "image/png", "too_large_metadata"),
    "html polyglot header": (
        lambda: b"<html><script>alert(1)</script></html>" + jpeg(64, 64),
        "image/jpeg",
        "unsupported_format",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_rejected_with_a_reason(name):
    make, mime, reason = BAD_FILES[name]
    with pytest.raises(ImageRejected) as info:
        process_image(make(), declared_mime=mime, max_pixels=60_000_000)
    assert info.value.reason == reason
    assert info.value.message


def test_trailing_data_never_reaches_derivatives():
    polyglot = jpeg(200, 100) + b"PK\x03\x04 zip payload <script>x</script>"
    result = process_image(polyglot, declared_mime="image/jpeg")
    assert b"PK\x03\x04" not in result.preview and b"<script>" not in result.thumb


def test_pixel_limit_is_configurable():
    with pytest.raises(ImageRejected) as info:
        process_image(jpeg(1000, 1000), declared_mime="image/jpeg", max_pixels=500_000)
    assert info.value.reason == "decompression_bomb"


def test_strokes_render_to_png():
    strokes = [[{"x": 10, "y": 10}, {"x": 100, "y": 50}], [[120, 40], [180, 90], [200, 20]]]
    data = render_strokes(json.dumps(strokes))
    assert verify_signature_png(data) == (600, 200)
    img = _open(data)
    assert img.getextrema()[0] == 0  # something was drawn


@pytest.mark.parametrize(
    "bad",
    ["not json", "[]", '[[{"x": "a", "y": 1}]]', "[[[1e400, 2]]]", json.dumps([[[1, 1]]] * 500)],
)
def test_bad_strokes_are_rejected(bad):
    with pytest.raises(SignatureRejected):
        render_strokes(bad)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("orientation,upright", [(1, (300, 100)), (6, (100, 300)), (8, (100, 300))])
def test_the_recorded_size_is_the_size_of_the_oriented_image(fmt, orientation, upright):
    """A PNG's EXIF orientation was applied to the preview but not to the recorded size."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.new("RGB", (300, 100), (200, 30, 30)).save(out, fmt, exif=exif)
    done = process_image(out.getvalue(), declared_mime=f"image/{fmt.lower()}")
    assert (done.width, done.height) == upright
    assert Image.open(io.BytesIO(done.preview)).size == upright
