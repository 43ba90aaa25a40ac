"""Photo pipeline benchmark: our process_image (JPEG draft decoding, preview then thumbnail)
versus a naive Pillow pipeline (full decode, transpose, two resizes, save) on the same
12-megapixel photo, in the same run: time, peak traced memory, and PSNR of the previews.

    python bench/bench_images.py
"""

from __future__ import annotations

import io
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageOps, ImageStat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from media.images import process_image  # noqa: E402


def photo() -> bytes:
    """A 4000x3000 camera-like JPEG (smooth gradients, hard-edged shapes, sensor-like noise)
    with EXIF orientation 6."""
    from PIL import ImageDraw

    grad = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize((4000, 3000)),
            Image.radial_gradient("L").resize((4000, 3000)),
            Image.linear_gradient("L").rotate(90).resize((4000, 3000)),
        ],
    )
    draw = ImageDraw.Draw(grad)
    for i in range(40):
        x, y = (i * 97) % 3600, (i * 61) % 2600
        draw.rectangle([x, y, x + 300, y + 200], outline=(250, 250, 250), width=6)
        draw.ellipse([x + 50, y + 40, x + 250, y + 160], fill=(30 + i * 5, 90, 160))
    noise = Image.effect_noise((4000, 3000), 12).convert("RGB")
    img = Image.blend(grad, noise, 0.15)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def naive(data: bytes) -> tuple[bytes, bytes]:
    """What one writes without thinking: decode everything, then shrink."""
    img = Image.open(io.BytesIO(data))
    img.load()
    img = ImageOps.exif_transpose(img)
    preview = img.copy()
    preview.thumbnail((1600, 1600), Image.Resampling.LANCZOS)
    thumb = img.copy()
    thumb.thumbnail((320, 320), Image.Resampling.LANCZOS)
    outs = []
    for im in (preview, thumb):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        outs.append(buf.getvalue())
    return outs[0], outs[1]


def measure(fn, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_memory(which: str, path: str) -> int:
    """Peak resident memory of a fresh process running one pipeline once (Pillow allocates
    pixel buffers in C, which tracemalloc cannot see). VmHWM, because ru_maxrss carries the
    parent's peak across fork and exec."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r});"
        "from bench.bench_images import run_once;"
        f"run_once({which!r}, {path!r});"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) * 1024


def run_once(which: str, path: str) -> None:
    """One run of one pipeline (for peak_memory)."""
    data = Path(path).read_bytes()
    if which == "ours":
        process_image(data, declared_mime="image/jpeg")
    elif which == "naive":
        naive(data)


def psnr(a: bytes, b: bytes) -> float:
    ia, ib = Image.open(io.BytesIO(a)).convert("RGB"), Image.open(io.BytesIO(b)).convert("RGB")
    if ia.size != ib.size:
        ib = ib.resize(ia.size)
    diff = ImageChops.difference(ia, ib)
    mse = sum(v * v for v in ImageStat.Stat(diff).rms) / 3
    return float("inf") if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


def main() -> None:
    data = photo()
    ours_t, ours = measure(lambda: process_image(data, declared_mime="image/jpeg"))
    naive_t, (naive_preview, _thumb) = measure(lambda: naive(data))
    with tempfile.NamedTemporaryFile(suffix=".jpg") as fh:
        fh.write(data)
        fh.flush()
        # Peak RSS above an idle process that imported the same modules and read the file.
        idle = peak_memory("idle", fh.name)
        ours_m = peak_memory("ours", fh.name) - idle
        naive_m = peak_memory("naive", fh.name) - idle
    print(f"12 MP photo ({len(data) / 1e6:.1f} MB JPEG)")
    print(
        f"time    ours {ours_t * 1000:8.1f} ms  naive {naive_t * 1000:8.1f} ms  "
        f"ratio {ours_t / naive_t:.2f}x  target <= 0.55x"
    )
    print(
        f"memory  ours {ours_m / 1e6:8.1f} MB  naive {naive_m / 1e6:8.1f} MB  "
        f"ratio {ours_m / naive_m:.2f}x  target <= 0.6x"
    )
    print(f"preview PSNR vs naive: {psnr(ours.preview, naive_preview):.1f} dB  target >= 38 dB")


if __name__ == "__main__":
    main()
