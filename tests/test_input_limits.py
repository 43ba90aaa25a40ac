"""Input at the edges of what is stored: times outside 1970..9999 UTC, NUL in the address,
absurd template weights; each a 4xx in the error envelope, never a 500."""

from __future__ import annotations

import copy
import datetime as dt
from urllib.parse import quote

import pytest
from sqlalchemy import func, select, update

from store.models import Action, Site
from store.types import UTCDateTime
from tests.conftest import ANA, HQ_EMAIL, NORTH
from tests.sync_env import BODY

OK_START = quote("2020-01-01T00:00:00Z")
OK_END = quote("2030-01-01T00:00:00Z")
YEAR_1 = quote("0001-01-01T00:00:00+01:00")
YEAR_9999 = quote("9999-12-31T23:59:59-01:00")


def _envelope(resp, code):
    assert resp.status_code == code, (resp.status_code, resp.get_data()[:300])
    body = resp.get_json()
    assert body["code"] == code and body["status"] and body["message"]
    return body


def _site(db, code="N-HOTEL"):
    return db.execute(select(Site.id).where(Site.code == code)).scalar_one()


@pytest.mark.parametrize(
    "due",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "1969-12-31T23:59:59Z",
    ],
)
def test_action_due_outside_1970_to_9999_is_refused_before_storing(api, demo_org, db, due):
    before = db.execute(select(func.count()).select_from(Action)).scalar_one()
    resp = api.post("/actions", ANA, json={"site_id": _site(db), "title": "x", "due_at": due})
    body = _envelope(resp, 422)
    assert "due_at" in body["errors"] and "1970" in str(body["errors"]["due_at"])
    assert db.execute(select(func.count()).select_from(Action)).scalar_one() == before
    _ok(api.get("/actions", NORTH))


def _ok(resp):
    assert resp.status_code == 200, (resp.status_code, resp.get_data()[:300])


def test_action_due_at_the_last_millisecond_of_9999_is_kept(api, demo_org, db):
    due = "9999-12-31T23:59:59.999Z"
    resp = api.post("/actions", ANA, json={"site_id": _site(db), "title": "x", "due_at": due})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["due_at"] == "9999-12-31T23:59:59.999000Z"
    assert resp.get_json()["overdue"] is False


@pytest.mark.parametrize("stored", [-62_135_600_400_000, 10**17])
def test_a_stored_due_time_out_of_range_does_not_break_the_ledger(api, demo_org, db, stored):
    resp = api.post("/actions", ANA, json={"site_id": _site(db), "title": "old"})
    assert resp.status_code == 201, resp.get_json()
    aid = resp.get_json()["id"]
    # Rows written before the range checks existed: the ledger must still list them.
    db.execute(update(Action).where(Action.id == aid).values(due_at=stored))
    db.commit()
    listing = api.get("/actions", NORTH)
    _ok(listing)
    row = next(a for a in listing.get_json() if a["id"] == aid)
    assert row["due_at"] and row["overdue"] is (stored < 0)
    _ok(api.get(f"/actions/{aid}", NORTH))


@pytest.mark.parametrize(
    "path",
    [
        f"/reports/compliance?start={YEAR_1}&end={OK_END}",
        f"/reports/compliance?start={OK_START}&end={YEAR_9999}",
        f"/reports/failing-items?start={YEAR_1}&end={OK_END}",
        f"/reports/compliance.svg?start={YEAR_1}&end={OK_END}",
        f"/inspections?completed_from={YEAR_1}",
        f"/inspections?completed_to={YEAR_9999}",
        f"/occurrences?due_from={YEAR_1}",
        f"/occurrences?due_to={YEAR_9999}",
    ],
)
def test_query_times_outside_1970_to_9999_are_422(api, demo_org, path):
    body = _envelope(api.get(path, HQ_EMAIL), 422)
    assert "1970" in str(body["errors"]), body


@pytest.mark.parametrize(
    "path",
    [
        "/reports/compliance?start={a}&end={b}",
        "/reports/compliance?start={a}&end={b}&group_by=day,week,month",
        "/reports/compliance.svg?start={a}&end={b}&group_by=day",
    ],
)
def test_a_report_period_inside_the_last_day_of_9999_is_answered(api, demo_org, path):
    start, end = quote("9999-12-31T12:00:00Z"), quote("9999-12-31T13:00:00Z")
    resp = api.get(path.format(a=start, b=end), HQ_EMAIL)
    assert resp.status_code == 200, (resp.status_code, resp.get_data()[:300])


@pytest.mark.parametrize(
    ("path", "inside", "outside"),
    [
        ("/inspections?completed_from=", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00+01:00"),
        ("/inspections?completed_to=", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59-01:00"),
        ("/occurrences?due_from=", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z"),
        ("/occurrences?due_to=", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59-01:00"),
        (
            f"/reports/compliance?end={OK_END}&start=",
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00+00:01",
        ),
        (
            f"/reports/failing-items?start={OK_START}&end=",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59-01:00",
        ),
    ],
)
def test_query_times_run_from_1970_to_9999_utc(api, demo_org, path, inside, outside):
    resp = api.get(path + quote(inside), HQ_EMAIL)
    assert resp.status_code == 200, (resp.status_code, resp.get_data()[:300])
    _envelope(api.get(path + quote(outside), HQ_EMAIL), 422)


def test_a_time_with_no_utc_equivalent_binds_as_the_nearest_one():
    column = UTCDateTime()
    low = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    high = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    assert column.process_bind_param(low, None) == dt.datetime.min.replace(tzinfo=dt.UTC)
    assert column.process_bind_param(high, None) == dt.datetime.max.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "path",
    [
        "/inspections/a%00b",
        "/actions/a%00b",
        "/sites/a%00b",
        "/users/a%00b",
        "/regions/a%00b",
        "/templates/a%00b",
        "/template-versions/a%00b",
        "/conflicts/a%00b",
        "/attachments/a%00b",
        "/inspections?template_key=a%00b",
        "/inspections?a%00b=1",
        f"/reports/compliance?start={OK_START}&end={OK_END}&template_key=a%00b",
    ],
)
def test_nul_in_the_address_is_a_400(api, demo_org, path):
    body = _envelope(api.get(path, HQ_EMAIL), 400)
    assert body["reason"] == "nul_character" and "NUL" in body["message"]


def test_nul_in_the_address_is_refused_for_writes_too(api, demo_org):
    body = _envelope(api.patch("/sites/a%00b", HQ_EMAIL, json={"name": "x"}), 400)
    assert body["reason"] == "nul_character"


def test_the_nul_refusal_reads_in_chinese_too(api, demo_org):
    resp = api.get("/sites/a%00b", HQ_EMAIL, headers={"Accept-Language": "zh-CN"})
    assert _envelope(resp, 400)["message"] == "地址中含有空字符(%00),请删除。"


def _publish(api, weight):
    body = copy.deepcopy(BODY)
    body["sections"][0]["items"][0]["weight"] = weight
    draft = api.post(
        "/templates",
        HQ_EMAIL,
        json={
            "template_key": f"heavy_{abs(hash(repr(weight))) % 10**6}",
            "category": "hygiene",
            "title": {"zh": "重", "en": "Heavy"},
            "body": body,
        },
    )
    assert draft.status_code == 201, draft.get_json()
    return api.post(f"/templates/{draft.get_json()['id']}/publish", HQ_EMAIL)


@pytest.mark.parametrize("weight", [1e308, 1001])
def test_template_item_weight_is_limited_to_1000(api, demo_org, weight):
    assert _publish(api, 1000).status_code == 201
    body = _envelope(_publish(api, weight), 422)
    assert body["reason"] == "invalid_template"
    assert "1000" in str(body["errors"]) and "'clean'" in str(body["errors"]), body
