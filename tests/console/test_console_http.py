"""The console over HTTP: sign-in, cookie flags, CSRF, scope, decisions, languages."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import update

from api.config import DEMO_PASSWORD
from store import rollups
from store.models import Action, Conflict, Inspection
from tests.conftest import ANA, HQ_EMAIL, NORTH, SOUTH
from tests.console.conftest import csrf_from
from tests.sync_env import new_inspection


def sign_in(client, email: str, lang: str = "en") -> None:
    """Sign in through the login form."""
    page = client.get("/console/login", headers={"Accept-Language": lang})
    resp = client.post(
        "/console/login",
        data={"email": email, "password": DEMO_PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert resp.status_code == 302, resp.text


def demo_users(client) -> dict[str, str]:
    """Ids of the demo accounts by first name."""
    from store.models import User

    with client.application.app_context():
        from api import db

        return {u.email.split(".")[0]: u.id for u in db.session().query(User)}


def form_token(client, path: str) -> str:
    return csrf_from(client.get(path).text)


def test_login_sets_a_scoped_httponly_samesite_cookie(client, demo_org):
    page = client.get("/console/login")
    resp = client.post(
        "/console/login",
        data={"email": NORTH, "password": DEMO_PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/console/"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("console_session=")
    for flag in ("HttpOnly", "Path=/console", "SameSite=Lax"):
        assert flag in cookie
    assert "frame-ancestors 'none'" in client.get("/console/").headers["Content-Security-Policy"]


def test_login_without_csrf_or_with_a_wrong_password_is_refused(client, demo_org):
    no_token = client.post("/console/login", data={"email": NORTH, "password": DEMO_PASSWORD})
    assert no_token.status_code == 400
    assert client.get("/console/").status_code == 302  # still signed out
    page = client.get("/console/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    wrong = client.post(
        "/console/login",
        data={"email": NORTH, "password": "nope", "csrf_token": csrf_from(page.text)},
        headers={"Accept-Language": "zh-CN"},
    )
    assert wrong.status_code == 401 and "邮箱或密码错误" in wrong.text


def test_signed_out_visitors_go_to_login_and_next_stays_in_the_console(client, demo_org):
    resp = client.get("/console/actions")
    assert resp.status_code == 302 and "/console/login?next=" in resp.headers["Location"]
    page = client.get("/console/login")
    sent = client.post(
        "/console/login?next=//evil.example/x",
        data={"email": NORTH, "password": DEMO_PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert sent.headers["Location"] == "/console/"


def test_inspectors_are_sent_to_the_app(client, demo_org):
    sign_in(client, ANA)
    resp = client.get("/console/")
    assert resp.status_code == 403 and "mobile app" in resp.text


def test_the_cookie_never_authenticates_the_api(client, demo_org):
    sign_in(client, HQ_EMAIL)
    assert client.get("/console/").status_code == 200
    resp = client.get("/api/v1/inspections")
    assert resp.status_code == 401 and resp.get_json()["reason"] == "not_authenticated"


def test_queue_shows_badges_and_hides_other_regions(client, synced):
    sign_in(client, NORTH)
    page = client.get("/console/")
    assert page.status_code == 200
    assert f'data-inspection="{synced["iid"]}"' in page.text
    assert f'data-inspection="{synced["south"]}"' not in page.text
    assert "Critical" in page.text and "North Grand Hotel" in page.text
    filtered = client.get("/console/?passed=true")
    assert f'data-inspection="{synced["iid"]}"' not in filtered.text
    ana = demo_users(client)["ana"]
    for query, shown in (
        (f"inspector_id={ana}", True),
        ("from=2026-01-01&to=2099-12-31", True),
        ("to=2020-01-01", False),
    ):
        page = client.get(f"/console/?{query}").text
        assert (f'data-inspection="{synced["iid"]}"' in page) is shown, query
    assert "Ben Wang" in page and "South Bay" not in page  # Ben works a north site too
    bad = client.get("/console/?passed=maybe")
    assert bad.status_code == 200 and "invalid" in bad.text


def test_inspection_page_and_its_files_are_scoped(client, synced):
    sign_in(client, NORTH)
    page = client.get(f"/console/inspections/{synced['iid']}")
    assert page.status_code == 200
    assert "Floor clean" in page.text and "Grease under the sink" in page.text
    thumb = client.get(f"/console/files/{synced['att']}/thumb")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    pdf = client.get(f"/console/inspections/{synced['iid']}/report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    for path in (
        f"/console/inspections/{synced['south']}",
        f"/console/files/{synced['south_att']}/thumb",
        f"/console/inspections/{synced['south']}/report.pdf",
    ):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert "South Bay" not in resp.text


def test_decisions_need_csrf_a_comment_to_return_and_reach_the_device(client, synced, db):
    iid = synced["iid"]
    sign_in(client, NORTH)
    path = f"/console/inspections/{iid}/decide"
    assert client.post(path, data={"decision": "return", "comment": "x"}).status_code == 400
    token = form_token(client, f"/console/inspections/{iid}")
    empty = client.post(path, data={"decision": "return", "comment": " ", "csrf_token": token})
    assert empty.status_code == 302
    assert "comment is required" in client.get(f"/console/inspections/{iid}").text
    assert db.get(Inspection, iid).status == "completed"
    south = client.post(
        f"/console/inspections/{synced['south']}/decide",
        data={"decision": "approve", "csrf_token": token},
    )
    assert south.status_code == 403  # another region's inspection: a write is forbidden
    assert db.get(Inspection, synced["south"]).status == "completed"
    done = client.post(
        path, data={"decision": "return", "comment": "Clean under the sink", "csrf_token": token}
    )
    assert done.status_code == 302
    db.expire_all()
    assert db.get(Inspection, iid).status == "returned"
    phone = synced["phone"]
    phone.sync()
    assert phone.get("inspections", iid)["review_comment"] == "Clean under the sink"


def test_conflicts_are_shown_with_both_values_and_resolved(app, client, synced, db):
    phone, iid = synced["phone"], synced["iid"]
    sign_in(client, NORTH)
    token = form_token(client, f"/console/inspections/{iid}")
    client.post(
        f"/console/inspections/{iid}/decide", data={"decision": "approve", "csrf_token": token}
    )
    phone.update("inspections", iid, area="Room 9999")  # a locked record: refused as a conflict
    phone.sync()
    conflict = db.query(Conflict).filter_by(inspection_id=iid, kind="locked").one()
    page = client.get(f"/console/inspections/{iid}").text
    assert f'data-conflict="{conflict.id}"' in page and "Room 9999" in page
    # Another region's manager may not resolve it (a write outside scope: 403).
    south = app.test_client()
    sign_in(south, SOUTH)
    south_token = form_token(south, "/console/")
    refused = south.post(
        f"/console/conflicts/{conflict.id}/resolve",
        data={"resolution": "keep_server", "csrf_token": south_token},
    )
    assert refused.status_code == 403
    db.expire_all()
    assert db.get(Conflict, conflict.id).resolved_at is None
    resolved = client.post(
        f"/console/conflicts/{conflict.id}/resolve",
        data={"resolution": "keep_server", "csrf_token": token},
    )
    assert resolved.status_code == 302
    db.expire_all()
    assert db.get(Conflict, conflict.id).resolution == "keep_server"
    assert f'data-conflict="{conflict.id}"' not in client.get(f"/console/inspections/{iid}").text


def test_actions_ledger_highlights_overdue_and_reopens(client, synced, db):
    sign_in(client, HQ_EMAIL)
    action = db.query(Action).filter_by(inspection_id=synced["iid"], priority="high").one()
    db.query(Action).filter_by(id=action.id).update({"due_at": 1_000, "status": "resolved"})
    db.commit()
    page = client.get("/console/actions?overdue=false")
    assert f'data-action="{action.id}"' in page.text  # resolved is never overdue
    db.query(Action).filter_by(id=action.id).update({"status": "open"})
    db.commit()
    page = client.get("/console/actions?overdue=true")
    assert f'data-action="{action.id}" class="overdue"' in page.text
    db.query(Action).filter_by(id=action.id).update({"status": "verified"})
    db.commit()
    token = form_token(client, "/console/actions")
    resp = client.post(
        f"/console/actions/{action.id}/transition",
        data={"status": "reopened", "note": "Still greasy", "csrf_token": token},
    )
    assert resp.status_code == 302
    db.expire_all()
    assert db.get(Action, action.id).status == "reopened"


@pytest.mark.parametrize(
    ("lang", "word"), [("zh-CN,zh;q=0.9", "审核队列"), ("en-GB", "Review queue")]
)
def test_language_follows_the_browser_then_the_switch(client, demo_org, lang, word):
    page = client.get("/console/login", headers={"Accept-Language": lang})
    client.post(
        "/console/login",
        data={"email": NORTH, "password": DEMO_PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert word in client.get("/console/", headers={"Accept-Language": lang}).text
    client.get("/console/language/zh")
    assert "审核队列" in client.get("/console/", headers={"Accept-Language": "en"}).text


def test_dashboard_table_chart_and_csv(client, synced):
    sign_in(client, HQ_EMAIL)
    page = client.get("/console/dashboard?group_by=region&group_by=template")
    assert page.status_code == 200 and 'id="summary"' in page.text
    assert "North" in page.text and "Floor clean" in page.text  # most-failed item label
    chart = client.get("/console/dashboard/chart.png?group_by=site")
    assert chart.status_code == 200 and chart.data.startswith(b"\x89PNG")
    csv = client.get("/console/dashboard/compliance.csv?group_by=region")
    assert csv.mimetype == "text/csv" and csv.text.splitlines()[0].startswith("region,")


def test_dashboard_dates_are_days_at_the_sites(app, client, synced):
    # Every demo site is in Shanghai, so the form's 1 June is Shanghai's: an inspection received
    # at 07:30 there (23:30 UTC on 31 May) is June's, and no row spills into 1 July.
    late = dt.datetime(2026, 5, 31, 23, 30, tzinfo=dt.UTC)
    with app.extensions["db_sessions"]() as session:
        insp = update(Inspection).where(Inspection.id == synced["iid"])
        session.execute(insp.values(completed_received_at=late))
        rollups.rebuild(session)
        session.commit()
    sign_in(client, HQ_EMAIL)
    page = client.get("/console/dashboard?start=2026-06-01&end=2026-06-30&group_by=day")
    assert "Asia/Shanghai" in page.text  # the page says which days its dates are
    got = client.get(
        "/console/dashboard/compliance.csv?start=2026-06-01&end=2026-06-30&group_by=day"
    )
    rows = [r for r in csv.DictReader(io.StringIO(got.text)) if r["inspections_completed"] != "0"]
    assert [(r["day"], r["inspections_completed"]) for r in rows] == [("2026-06-01", "1")]
    # The review queue's completion dates are Shanghai days too.
    queue = client.get("/console/?from=2026-06-01&to=2026-06-01")
    assert synced["iid"] in queue.text
    queue = client.get("/console/?from=2026-05-31&to=2026-05-31")
    assert synced["iid"] not in queue.text


def test_api_errors_speak_the_requested_language(client, demo_org):
    zh = client.get("/api/v1/inspections", headers={"Accept-Language": "zh-CN"})
    assert zh.get_json()["message"] == "请先登录。" and zh.headers["Content-Language"] == "zh"
    en = client.get("/api/v1/inspections", headers={"Accept-Language": "en"})
    assert en.get_json()["message"].startswith("Sign in first")


def test_a_field_conflict_can_be_resolved_with_an_edited_value(client, env, device, db):
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b.sync()
    b.update("inspections", iid, notes="from b")
    b.sync()
    a.update("inspections", iid, notes="from a")
    a.sync()  # a's edit wins; b's overwritten value is kept as a conflict
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="concurrent_edit").one()
    sign_in(client, NORTH)
    page = client.get(f"/console/inspections/{iid}").text
    assert f'data-conflict="{conflict.id}"' in page and 'name="value"' in page
    token = csrf_from(page)
    path = f"/console/conflicts/{conflict.id}/resolve"
    done = client.post(
        path, data={"resolution": "edit", "value": "both: a and b", "csrf_token": token}
    )
    assert done.status_code == 302
    db.expire_all()
    assert db.get(Inspection, iid).notes == "both: a and b"
    assert db.get(Conflict, conflict.id).resolution == "edit"
    again = client.post(path, data={"resolution": "keep_server", "csrf_token": token})
    assert again.status_code == 302  # already resolved: a message, nothing changes
    assert "already resolved" in client.get(f"/console/inspections/{iid}").text
    b.sync()
    assert b.get("inspections", iid)["notes"] == "both: a and b"


def test_a_new_password_ends_console_sessions(client, api, demo_org):
    sign_in(client, NORTH)
    assert client.get("/console/").status_code == 200
    north = demo_users(client)["north"]
    changed = api.patch(f"/users/{north}", HQ_EMAIL, json={"password": "a-new-password-123"})
    assert changed.status_code == 200, changed.get_json()
    resp = client.get("/console/")
    assert resp.status_code == 302 and "/console/login" in resp.headers["Location"]


def test_console_sign_in_failures_count_per_account_with_the_apis(client, api, demo_org, app):
    """Failures of one account through the API and the console add up, from any address."""
    allowed = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    for i in range(allowed):
        failed = api.client.post(
            "/api/v1/auth/login",
            json={"email": ANA, "password": "wrong-password"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"},
        )
        assert failed.status_code == 401
    page = client.get("/console/login")
    resp = client.post(
        "/console/login",
        data={"email": ANA, "password": "wrong-password", "csrf_token": csrf_from(page.text)},
        environ_base={"REMOTE_ADDR": "10.0.9.9"},
    )
    assert resp.status_code == 429


def test_a_next_or_back_with_a_line_break_goes_to_the_queue(client, demo_org):
    """A Location header cannot carry a line break: the redirect was a 500."""
    evil = "/console/%0D%0AX-Evil:%201"
    page = client.get("/console/login")
    sent = client.post(
        f"/console/login?next={evil}",
        data={"email": NORTH, "password": DEMO_PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert sent.status_code == 302 and sent.headers["Location"] == "/console/"
    switched = client.get(f"/console/language/en?next={evil}")
    assert switched.status_code == 302 and switched.headers["Location"] == "/console/"
    assert "X-Evil" not in switched.headers


def test_console_addresses_no_view_answers_get_the_console_page(client, demo_org):
    """An unknown console address or method gets the console's HTML error page with its
    headers, not the API's JSON; the API keeps its JSON."""
    sign_in(client, NORTH)
    for resp, status in (
        (client.get("/console/nothing"), 404),
        (client.get("/console/logout"), 405),
    ):
        assert resp.status_code == status and resp.mimetype == "text/html", resp.text[:200]
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
    api = client.get("/api/v1/nothing")
    assert api.status_code == 404 and api.get_json()["code"] == 404


def test_a_form_field_with_a_nul_character_is_refused_not_a_failure(client, synced, db):
    """PostgreSQL text cannot hold NUL: a sign-in or a review comment holding one was a 500
    there (the address and the API's JSON bodies were already refused with a 400)."""
    page = client.get("/console/login")
    login = client.post(
        "/console/login",
        data={
            "email": "north\x00@demo.example",
            "password": "x",
            "csrf_token": csrf_from(page.text),
        },
    )
    assert login.status_code == 400, login.text
    sign_in(client, NORTH)
    iid = synced["iid"]
    token = form_token(client, f"/console/inspections/{iid}")
    refused = client.post(
        f"/console/inspections/{iid}/decide",
        data={"decision": "return", "comment": "Clean\x00 the sink", "csrf_token": token},
    )
    assert refused.status_code == 400, refused.text
    assert "NUL" in refused.text
    db.expire_all()
    assert db.get(Inspection, iid).status == "completed"
