"""Photos with odd EXIF, wide pixels or many pixels: processed or refused, never a 500, and
never costing more memory than one decoded copy."""

from __future__ import annotations

import io
import struct
import uuid

import pytest
from PIL import Image

from media import images
from tests.conftest import ANA
from tests.media.test_upload_flow import _failed_photo_inspection, _upload
from tests.sync_env import photo_record


def _jpeg_with_negative_exif_pointer() -> bytes:
    """A valid JPEG whose EXIF IFD0 holds ExifIFD (0x8769) typed SLONG = -100."""
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHI", 0x8769, 9, 1) + struct.pack("<i", -100)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + struct.pack("<I", 0)
    out = io.BytesIO()
    colour = tuple(uuid.uuid4().bytes[:3])  # bytes no other test uploads
    Image.new("RGB", (40, 30), colour).save(out, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return out.getvalue()


def _ifd(entries, next_offset=0):
    out = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        out += struct.pack("<HHI", tag, typ, count) + value
    return out + struct.pack("<I", next_offset)


def _rotated_jpeg_with_text_gps() -> bytes:
    """An upright-6 photo whose GPS latitude is written as ASCII "31" (a sloppy camera app):
    reading it is fine, but exif_transpose re-serialises the EXIF and cannot write it back."""
    ifd0 = _ifd([(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x8825, 4, 1, struct.pack("<I", 38))])
    gps = _ifd([(0x0001, 2, 2, b"N\x00\x00\x00"), (0x0002, 2, 4, b"31\x00\x00")])
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + gps
    out = io.BytesIO()
    colour = tuple(uuid.uuid4().bytes[:3])
    Image.new("RGB", (40, 30), colour).save(out, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return out.getvalue()


# Photos whose EXIF Pillow reads but cannot follow or write back: (bytes, upright size).
ODD_EXIF = {
    "negative Exif sub-IFD pointer": (_jpeg_with_negative_exif_pointer, (40, 30)),
    "turned, GPS latitude as text": (_rotated_jpeg_with_text_gps, (30, 40)),
}


@pytest.mark.parametrize("case", sorted(ODD_EXIF))
def test_a_photo_with_odd_exif_is_processed_upright(case):
    make, upright = ODD_EXIF[case]
    result = images.process_image(make(), declared_mime="image/jpeg")
    assert (result.width, result.height) == upright
    assert Image.open(io.BytesIO(result.preview)).size == upright


@pytest.mark.parametrize("case", sorted(ODD_EXIF))
def test_uploading_a_photo_with_odd_exif_completes(env, device, client, case):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = ODD_EXIF[case][0]()
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    done = _upload(client, phone, att, data)
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["width"], done.get_json()["height"]) == ODD_EXIF[case][1]


def test_a_16_bit_png_photo_keeps_its_picture_in_the_derivatives():
    """A 16-bit greyscale PNG (mode I;16): convert("RGB") clips every value above 255, so the
    preview and thumbnail a reviewer sees come out almost entirely white."""
    gradient = Image.linear_gradient("L").resize((64, 48))  # 0..255, left to right-ish
    sixteen = gradient.point(lambda v: v * 257).convert("I").convert("I;16")
    out = io.BytesIO()
    sixteen.save(out, "PNG")
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    result = images.process_image(data, declared_mime="image/png")
    preview = Image.open(io.BytesIO(result.preview)).convert("L")
    histogram = preview.histogram()
    white = sum(histogram[250:]) / (preview.width * preview.height)
    assert white < 0.5, f"{white:.0%} of the preview is white"


_PEAK = """
import io, resource, sys
from PIL import Image
sys.path.insert(0, sys.argv[1])
from media import images
out = io.BytesIO()
Image.new("RGBA", (7745, 7745), 0).save(out, "PNG")  # 59.98 MP, under MAX_IMAGE_PIXELS
data = out.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
images.process_image(data, declared_mime="image/png", max_pixels=60_000_000)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(len(data), peak // 1024)
"""


def test_a_small_png_does_not_cost_most_of_a_gigabyte_to_process():
    """A ~230 KB PNG declaring 60 MP (the default MAX_IMAGE_PIXELS) is decoded in full and
    copied several times (load, exif_transpose, copy for the preview): each completion of
    such a file costs ~780 MB of RAM and ~3 s of CPU; a handful in parallel exhaust a small
    server. JPEGs are decoded at a reduced DCT scale (draft); PNG/WebP/HEIC are not."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, root], capture_output=True, text=True, check=True
    )
    size, peak_mb = map(int, run.stdout.split())
    assert size < 1_000_000
    assert peak_mb < 400, f"{size} bytes of PNG took {peak_mb} MB to process"


_PEAK_16 = _PEAK.replace(
    'Image.new("RGBA", (7745, 7745), 0)', 'Image.new("I;16", (7745, 7745), 1000)'
).replace("59.98 MP", "16-bit greyscale, 59.98 MP")


def test_a_small_16_bit_png_does_not_cost_half_a_gigabyte_to_process():
    """A ~130 KB 16-bit greyscale PNG of 60 MP was scaled to 8 bits before it was shrunk, by
    way of a full-size 32-bit copy: ~520 MB of RAM for one completion."""
    import os
    import subprocess
    import sys

    assert _PEAK_16 != _PEAK
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_16, root], capture_output=True, text=True, check=True
    )
    size, peak_mb = map(int, run.stdout.split())
    assert size < 1_000_000
    assert peak_mb < 400, f"{size} bytes of PNG took {peak_mb} MB to process"


def test_transparent_parts_of_a_photo_show_on_white_not_black():
    """A PNG whose transparent pixels hold black: the preview shows them as a page would."""
    img = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    img.paste((200, 30, 30, 255), (0, 0, 32, 48))  # the left half opaque red
    out = io.BytesIO()
    img.save(out, "PNG")
    result = images.process_image(out.getvalue(), declared_mime="image/png")
    preview = Image.open(io.BytesIO(result.preview)).convert("RGB")
    assert min(preview.getpixel((60, 24))) > 240  # the transparent half: white
    red, green, _ = preview.getpixel((4, 24))
    assert red > 150 and green < 80  # the opaque half keeps its colour


def test_a_16_bit_signature_png_keeps_its_strokes_when_cleaned():
    from media.signatures import clean_png

    # White paper, 16-bit, with a dark stroke across rows 15 to 24.
    rows = [(2000 if 15 <= y < 25 else 65535) for y in range(40) for _x in range(120)]
    ink = Image.frombytes("I;16", (120, 40), struct.pack(f"<{len(rows)}H", *rows))
    out = io.BytesIO()
    ink.save(out, "PNG")
    cleaned = Image.open(io.BytesIO(clean_png(out.getvalue()))).convert("L")
    assert cleaned.getpixel((60, 20)) < 40 and cleaned.getpixel((60, 5)) > 240


@pytest.mark.parametrize(
    "mode,key",
    [("RGB", (0, 0, 0)), ("L", 0), ("P", 0)],
)
def test_a_transparent_png_previews_on_white(mode, key):
    img = Image.new(mode, (40, 30), 0)
    if mode == "P":
        img.putpalette([0, 0, 0, 255, 0, 0])
    out = io.BytesIO()
    img.save(out, "PNG", transparency=key)  # every pixel is the transparent colour
    result = images.process_image(out.getvalue(), declared_mime="image/png")
    preview = Image.open(io.BytesIO(result.preview)).convert("RGB")
    assert min(preview.getpixel((20, 15))) > 240, (mode, preview.getpixel((20, 15)))


def _damaged_heics() -> list[bytes]:
    """A small HEIC with each byte in turn set to 0xFF: some make libheif fail while decoding
    (EOFError "Unexpected end of file", RuntimeError "Security limit exceeded")."""
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (64, 48), (20, 90, 160))).save(out, format="HEIF")
    data = out.getvalue()
    return [data[:i] + b"\xff" + data[i + 1 :] for i in range(len(data))]


def test_a_damaged_heic_is_refused_as_corrupt_not_a_crash():
    """A HEIC damaged in transit must be a 422 the phone can act on; libheif's decoding errors
    (EOFError, RuntimeError) escaped processing and the completion answered 500."""
    for data in _damaged_heics():
        try:
            images.process_image(data, declared_mime="image/heic")
        except images.ImageRejected as exc:
            assert exc.reason in ("corrupt", "unsupported_format", "decompression_bomb")


def test_uploading_a_damaged_heic_is_422(env, device, client):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    for data in _damaged_heics():
        try:
            Image.open(io.BytesIO(data)).load()
        except (EOFError, RuntimeError):
            break  # one libheif chokes on while decoding: what this test needs
        except Exception:  # refused some other way, as before the fix too
            continue
    else:
        pytest.skip("this libheif reads every damaged copy")
    att = photo_record(phone, iid, rid, data, mime="image/heic")
    phone.sync()
    done = _upload(client, phone, att, data, mime="image/heic")
    assert done.status_code == 422, done.get_json()
    assert done.get_json()["reason"] == "corrupt"
