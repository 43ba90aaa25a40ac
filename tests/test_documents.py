"""The inspection report PDF and the compliance charts, checked for real content."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

from api.documents import cjk_font_file
from tests.conftest import ANA, NORTH, SOUTH
from tests.media.conftest import jpeg
from tests.sync_env import answer, new_inspection, photo_record


def _inspection_with_photo(device, env, client):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 9)
    data = jpeg(800, 600)
    att = photo_record(phone, iid, rid, data)
    phone.update("inspections", iid, status="completed")
    phone.sync()
    plan = client.post(
        f"/api/v1/attachments/{att}/upload",
        headers=phone.headers(),
        json={
            "sha256": hashlib.sha256(data).hexdigest(),
            "byte_size": len(data),
            "mime": "image/jpeg",
        },
    ).get_json()
    client.put(plan["url"], data=data, headers=phone.headers())
    assert (
        client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers()).status_code
        == 200
    )
    return iid


def test_inspection_report_pdf(api, env, device, client):
    iid = _inspection_with_photo(device, env, client)
    resp = api.get(f"/inspections/{iid}/report.pdf", NORTH)
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(resp.data))
    assert 1 <= len(reader.pages) <= 3
    text = "".join(page.extract_text() for page in reader.pages)
    assert "North Grand Hotel" in text
    assert "FAIL" in text and "Fridge temperature" in text
    if cjk_font_file():  # an embedded TrueType CJK font extracts back to text
        assert "冰箱温度" in text and "北方大酒店" in text
    images = [img for page in reader.pages for img in page.images]
    assert images, "the photo thumbnail is beside its item"
    assert api.get(f"/inspections/{iid}/report.pdf", SOUTH).status_code == 404
    _artifact("inspection-report.pdf", resp.data)


def test_compliance_charts(api, env, device, client):
    _inspection_with_photo(device, env, client)
    period = "start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z"
    png = api.get(f"/reports/compliance.png?{period}&group_by=site,week", NORTH)
    assert png.status_code == 200 and png.mimetype == "image/png"
    img = Image.open(io.BytesIO(png.data))
    assert img.size == (990, 715)
    assert len(img.convert("L").getcolors(maxcolors=100_000)) > 20  # drawn, not blank
    _artifact("compliance.png", png.data)
    svg = api.get(f"/reports/compliance.svg?{period}&group_by=month", NORTH)
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data


def _artifact(name: str, data: bytes) -> None:
    """Keep what a person would look at (artifacts/ is ignored by git)."""
    out = Path(__file__).resolve().parent.parent / "artifacts"
    out.mkdir(exist_ok=True)
    (out / name).write_bytes(data)
