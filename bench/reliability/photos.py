"""Camera-like JPEGs, each with distinct bytes (so content-addressed dedupe does not kick in)."""

from __future__ import annotations

import io
import random

from PIL import Image


def jpeg(rng: random.Random, width: int = 320, height: int = 240) -> bytes:
    """A gradient photo with a random block, so no two share a sha256."""
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    x, y = rng.randrange(width // 2), rng.randrange(height // 2)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    img.paste(colour, (x, y, x + width // 4, y + height // 4))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def unique(base: bytes, rng: random.Random) -> bytes:
    """The same picture with a distinct JPEG comment segment: new bytes, no re-encoding."""
    assert base[:2] == b"\xff\xd8"
    note = rng.randbytes(16).hex().encode()
    return base[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + base[2:]


def camera_jpeg(seed: int, width: int = 1600, height: int = 1200) -> bytes:
    """A phone-sized photo with sensor-like noise (so it weighs what a real one does)."""
    rng = random.Random(seed)
    noise = Image.effect_noise((width, height), 25).convert("RGB")
    img = Image.blend(Image.open(io.BytesIO(jpeg(rng, width, height))), noise, 0.35)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()
