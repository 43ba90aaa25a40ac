"""CSV downloads keep text that a spreadsheet would run as a formula as plain text."""

from __future__ import annotations

import csv
import io

from store.models import Site
from tests.conftest import ANA, NORTH


def test_an_action_title_that_looks_like_a_formula_is_exported_as_text(api, demo_org, db):
    site = next(s.id for s in db.query(Site) if s.code == "N-HOTEL")
    title = '=HYPERLINK("http://evil.example","click")'
    created = api.post("/actions", ANA, json={"site_id": site, "title": title})
    assert created.status_code == 201, created.get_json()
    resp = api.get("/actions?format=csv", NORTH)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    cells = [r["title"] for r in rows if "HYPERLINK" in r["title"]]
    assert cells == ["'" + title]
