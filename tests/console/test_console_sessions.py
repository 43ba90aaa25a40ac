"""The console's sign-in sessions end on the server, its pager links carry only the page's own
filters, and dates at the edges of the calendar are refused instead of crashing the page."""

from __future__ import annotations

import datetime as dt
import re
import time
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

import api.console.views as console_views
from store.models import Action, RefreshToken
from store.types import MAX_EPOCH_MS, utcnow
from tests.conftest import ANA, HQ_EMAIL, NORTH
from tests.console.conftest import csrf_from
from tests.console.test_console_http import sign_in
from tests.sync_env import answer, new_inspection


def _sign_out(client) -> None:
    page = client.get("/console/")
    assert page.status_code == 200
    out = client.post("/console/logout", data={"csrf_token": csrf_from(page.text)})
    assert out.status_code == 302


def _cookie(client) -> str:
    return client.get_cookie("console_session", path="/console").value


# --- sessions end on the server --------------------------------------------------------------


def test_a_signed_out_console_cookie_stops_working(client, demo_org):
    """The session lives in a signed cookie; sign-out used to clear only the browser's copy, so
    a copy taken before (shared PC, proxy log) stayed valid for the rest of its 8 hours."""
    sign_in(client, NORTH)
    cookie = _cookie(client)
    _sign_out(client)
    assert client.get("/console/").status_code == 302
    client.set_cookie("console_session", cookie, path="/console")
    resp = client.get("/console/")
    assert resp.status_code == 302, "old session cookie still valid after logout"
    assert "/console/login" in resp.headers["Location"]


def test_signing_out_ends_only_that_sign_in(app, client, demo_org):
    """The same account signed in twice (two browsers): signing out of one keeps the other."""
    other = app.test_client()
    sign_in(client, NORTH)
    sign_in(other, NORTH)
    _sign_out(client)
    assert client.get("/console/").status_code == 302
    assert other.get("/console/").status_code == 200


def test_a_cookie_without_a_server_side_session_is_refused(client, demo_org):
    """A validly signed cookie naming a user but no live sign-in (one issued before sessions
    were kept on the server, or one whose session id was tampered with) signs nobody in."""
    sign_in(client, NORTH)
    assert client.get("/console/").status_code == 200
    with client.session_transaction("/console/") as sess:
        sess.pop("sid")
    assert client.get("/console/").status_code == 302
    sign_in(client, NORTH)
    with client.session_transaction("/console/") as sess:
        assert sess["uid"] and sess["cred"]  # the rest of the session is intact
        sess["sid"] = "0" * 32
    assert client.get("/console/").status_code == 302


def test_an_old_session_expires(app, client, demo_org, db):
    """Past its lifetime a session ends by the cookie's sign-in time and by its server-side
    expiry alike. (The cookie is scoped to /console: session_transaction needs that path, or
    it edits an empty session at / instead of the signed-in one.)"""
    sign_in(client, NORTH)
    with client.session_transaction("/console/") as sess:
        sess["at"] = int(time.time()) - app.config["CONSOLE_SESSION_SECONDS"] - 1
    assert client.get("/console/").status_code == 302
    sign_in(client, NORTH)
    assert client.get("/console/").status_code == 200
    with client.session_transaction("/console/") as sess:
        sid = sess["sid"]
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == sid)
        .values(expires_at=utcnow() - dt.timedelta(seconds=1))
    )
    assert client.get("/console/").status_code == 302


def test_a_new_sign_in_ends_the_browsers_previous_session(client, demo_org, db):
    """Signing in again replaces the session: the cookie of the earlier sign-in stops working."""
    sign_in(client, NORTH)
    first = _cookie(client)
    sign_in(client, NORTH)
    assert client.get("/console/").status_code == 200
    client.set_cookie("console_session", first, path="/console")
    assert client.get("/console/").status_code == 302


def test_console_sessions_are_never_refresh_tokens(client, api, demo_org, db):
    """The console's sign-ins are kept as rows of their own family in refresh_tokens; no
    refresh token the API hands out belongs to them, and they end with the account's other
    sign-ins (a deactivation revokes them)."""
    sign_in(client, NORTH)
    rows = [r for r in db.query(RefreshToken) if r.family.startswith("console:")]
    assert len(rows) == 1
    north = rows[0].user_id
    assert api.patch(f"/users/{north}", HQ_EMAIL, json={"active": False}).status_code == 200
    assert api.patch(f"/users/{north}", HQ_EMAIL, json={"active": True}).status_code == 200
    db.expire_all()
    assert db.get(RefreshToken, rows[0].jti).revoked_at is not None
    assert client.get("/console/").status_code == 302


# --- pager links ---------------------------------------------------------------------------


@pytest.fixture
def small_pages(monkeypatch):
    """Pages of one: the two inspections of `synced` (and their actions) fill two pages."""
    monkeypatch.setattr(console_views, "PAGE_SIZE", 1)


def _pager_links(html: str) -> list[str]:
    nav = re.search(r'<nav class="pager">(.*?)</nav>', html, re.S)
    assert nav, "no pager on the page"
    return [unescape(h) for h in re.findall(r'href="([^"]*)"', nav.group(1))]


@pytest.mark.parametrize("path", ["/console/", "/console/actions"])
@pytest.mark.parametrize(
    "qs", ["endpoint=x", "_scheme=https", "_method=GET&_external=1", "_anchor=top", "values=1"]
)
def test_pager_ignores_reserved_query_names(client, synced, small_pages, db, path, qs):
    """The pager built its links with url_for(request.endpoint, **request.args): `endpoint=`
    was a TypeError (500) and `_scheme`/`_external`/`_anchor` reshaped the link."""
    assert db.query(Action).count() >= 2, "need two actions for a pager"
    sign_in(client, HQ_EMAIL)
    resp = client.get(f"{path}?{qs}")
    assert resp.status_code == 200, (path, qs, resp.status_code)
    for link in _pager_links(resp.text):
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not parts.fragment, link
        assert parts.path == path and parse_qs(parts.query) == {"page": ["2"]}, link


def test_pager_link_cannot_be_turned_into_a_javascript_url(client, synced, small_pages):
    sign_in(client, HQ_EMAIL)
    resp = client.get("/console/?_external=1&_scheme=javascript&_anchor=%0Aalert(document.domain)")
    assert resp.status_code == 200
    assert "javascript:" not in resp.text


def test_pager_keeps_the_pages_filters_and_drops_the_rest(client, synced, small_pages):
    sign_in(client, HQ_EMAIL)
    resp = client.get("/console/?status=completed&from=2020-01-01&bogus=1&page=1")
    assert resp.status_code == 200
    (link,) = _pager_links(resp.text)
    assert parse_qs(urlsplit(link).query) == {
        "status": ["completed"],
        "from": ["2020-01-01"],
        "page": ["2"],
    }
    back = client.get(link)
    assert back.status_code == 200
    (prev,) = _pager_links(back.text)
    assert parse_qs(urlsplit(prev).query)["page"] == ["1"]
    ledger = client.get("/console/actions?status=open&bogus=1")
    assert ledger.status_code == 200
    (link,) = _pager_links(ledger.text)
    assert parse_qs(urlsplit(link).query) == {"status": ["open"], "page": ["2"]}


# --- dates at the calendar's edges ---------------------------------------------------------


@pytest.mark.parametrize(
    "qs",
    [
        "end=9999-12-31",
        "start=9999-12-31&end=9999-12-31",
        "start=9999-12-31",
        "start=0001-01-01&end=0001-01-07&group_by=week",
        "start=0001-01-01&end=0001-01-07&group_by=day",
        "start=0001-01-01&end=2026-01-01&group_by=week",
        "start=1969-12-31&end=2026-01-01",
    ],
)
@pytest.mark.parametrize(
    "path",
    ["/console/dashboard", "/console/dashboard/chart.png", "/console/dashboard/compliance.csv"],
)
def test_dashboard_dates_outside_the_calendar_are_a_400(client, demo_org, qs, path):
    """The end day is included, so the period ends the day after it: for 9999-12-31 that day
    does not exist (OverflowError, a 500). Dates outside the API's range (1970-01-01 to
    9999-12-30 as whole days) are refused with a message."""
    sign_in(client, HQ_EMAIL)
    resp = client.get(f"{path}?{qs}")
    assert resp.status_code == 400, (path, qs, resp.status_code)
    assert "1970-01-01" in resp.text and "9999-12-30" in resp.text


@pytest.mark.parametrize("path", ["/console/dashboard", "/console/dashboard/compliance.csv"])
def test_dashboard_dates_at_the_edges_of_the_range_still_work(client, demo_org, path):
    sign_in(client, HQ_EMAIL)
    for qs in ("start=1970-01-01&end=9999-12-30&group_by=week", "start=9999-12-30&group_by=day"):
        assert client.get(f"{path}?{qs}").status_code == 200, qs


def test_dashboard_refusal_is_in_chinese_too(client, demo_org):
    sign_in(client, HQ_EMAIL, lang="zh")
    client.get("/console/language/zh")
    resp = client.get("/console/dashboard?end=9999-12-31")
    assert resp.status_code == 400
    assert "日期" in resp.text


@pytest.mark.parametrize("qs", ["to=9999-12-31", "from=9999-12-31&to=9999-12-31"])
def test_queue_to_date_at_the_calendar_end_is_a_filter_message(client, demo_org, qs):
    """The queue's `to` day is included too (the filter ends the day after): 9999-12-31 was a
    500; it is now named as an invalid filter, like any other bad date."""
    sign_in(client, NORTH)
    resp = client.get(f"/console/?{qs}")
    assert resp.status_code == 200
    assert "Some filters are invalid" in resp.text and "completed_to" in resp.text


def test_a_device_time_at_the_end_of_the_range_shows_on_the_console(client, env, device):
    """Devices may send times up to 9999-12-31T23:59:59.999Z; in a site east of Greenwich
    (Asia/Shanghai) that is year 10000, and the queue and inspection pages were a 500."""
    phone = device(ANA, "edge-phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=MAX_EPOCH_MS)
    phone.sync()
    sign_in(client, NORTH)
    for path in ("/console/", f"/console/inspections/{iid}"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "9999-12-31 23:59 UTC" in page.text, path
