"""Schedules across time zones and DST, occurrence statuses on a controlled clock, fulfilment
through sync, and compliance summaries checked against hand-computed figures."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from inspections import schedules
from tests.conftest import ANA, HQ_EMAIL, NORTH, SOUTH
from tests.sync_env import answer, new_inspection, open_window

UTC = dt.UTC


def _utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def test_room_status_three_times_a_day_in_shanghai():
    got = schedules.slots(
        {"freq": "daily", "times": ["08:00", "14:00", "18:00"]},
        "Asia/Shanghai",
        _utc(2026, 11, 23, 0, 0),
        _utc(2026, 11, 25, 0, 0),
        dt.timedelta(hours=1),
        dt.timedelta(hours=2),
    )
    # Shanghai is UTC+8 all year: 08:00, 14:00, 18:00 local are 00:00, 06:00, 10:00 UTC.
    assert [s.due_at.strftime("%d %H:%M") for s in got] == [
        "23 00:00",
        "23 06:00",
        "23 10:00",
        "24 00:00",
        "24 06:00",
        "24 10:00",
    ]
    assert got[0].window_start == _utc(2026, 11, 22, 23, 0)
    assert got[0].miss_at == _utc(2026, 11, 23, 2, 0)


def test_weekly_across_the_berlin_dst_change_keeps_local_time():
    got = schedules.slots(
        {"freq": "weekly", "weekdays": ["MO", "TH"], "times": ["09:00"]},
        "Europe/Berlin",
        _utc(2026, 3, 20),
        _utc(2026, 4, 3),
        dt.timedelta(0),
        dt.timedelta(hours=1),
    )
    # CET (UTC+1) until 29 March 2026, CEST (UTC+2) after: 09:00 local = 08:00 then 07:00 UTC.
    assert [s.due_at.isoformat() for s in got] == [
        "2026-03-23T08:00:00+00:00",
        "2026-03-26T08:00:00+00:00",
        "2026-03-30T07:00:00+00:00",
        "2026-04-02T07:00:00+00:00",
    ]


def test_monthly_and_quarterly():
    monthly = schedules.slots(
        {"freq": "monthly", "monthday": 15, "times": ["10:00"]},
        "UTC",
        _utc(2026, 1, 1),
        _utc(2026, 4, 1),
        dt.timedelta(0),
        dt.timedelta(0),
    )
    assert [s.due_at.month for s in monthly] == [1, 2, 3]
    quarterly = schedules.slots(
        {"freq": "quarterly", "times": ["09:00"]},
        "Asia/Shanghai",
        _utc(2026, 1, 1),
        _utc(2027, 1, 1),
        dt.timedelta(0),
        dt.timedelta(0),
    )
    assert [
        s.due_at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%m-%d %H:%M")
        for s in quarterly
    ] == ["01-01 09:00", "04-01 09:00", "07-01 09:00", "10-01 09:00"]


def test_statuses_move_with_the_clock():
    slot = schedules.slots(
        {"freq": "daily", "times": ["08:00"]},
        "UTC",
        _utc(2026, 1, 1),
        _utc(2026, 1, 2),
        dt.timedelta(hours=1),
        dt.timedelta(hours=2),
    )[0]
    at = {
        "07:00": "due",
        "06:59": "upcoming",
        "08:00": "due",
        "08:01": "overdue",
        "09:59": "overdue",
        "10:00": "missed",
    }
    for hhmm, expected in at.items():
        now = _utc(2026, 1, 1, int(hhmm[:2]), int(hhmm[3:]))
        assert (
            schedules.status(slot.window_start, slot.due_at, slot.miss_at, False, now) == expected
        ), hhmm
    assert (
        schedules.status(slot.window_start, slot.due_at, slot.miss_at, True, _utc(2030, 1, 1))
        == "done"
    )


@pytest.mark.parametrize(
    "recurrence,field",
    [
        ({"freq": "hourly", "times": ["08:00"]}, "recurrence.freq"),
        ({"freq": "daily", "times": ["8am"]}, "recurrence.times"),
        ({"freq": "weekly", "times": ["08:00"], "weekdays": ["XX"]}, "recurrence.weekdays"),
        ({"freq": "monthly", "times": ["08:00"], "monthday": 31}, "recurrence.monthday"),
        ({"freq": "weekly", "times": ["08:00"], "weekdays": [["MO"]]}, "recurrence.weekdays"),
        ({"freq": "daily", "times": ["08:00"], "weekdays": ["MO"]}, "recurrence.weekdays"),
        (
            {"freq": "weekly", "times": ["08:00"], "weekdays": ["MO"], "monthday": 5},
            "recurrence.monthday",
        ),
    ],
)
def test_bad_recurrences_name_the_field(recurrence, field):
    with pytest.raises(schedules.RecurrenceInvalid) as info:
        schedules.parse(recurrence, "Asia/Shanghai")
    assert field in info.value.errors


def test_demo_schedules_reach_devices_and_a_synced_inspection_fulfils_one(api, env, device, db):
    occ = api.get("/occurrences?page_size=100", ANA).get_json()
    assert occ and {o["status"] for o in occ} <= {"upcoming", "due", "overdue", "missed"}
    phone = device(ANA)
    phone.sync()
    pulled = phone.live("occurrences")
    assert set(pulled) >= {o["id"] for o in occ}
    assert all(isinstance(o["due_at"], int) for o in pulled.values())  # epoch ms on the wire
    target = min(
        (o for o in pulled.values() if o["assignee_id"] == env["users"][ANA]),
        key=lambda o: o["due_at"],
    )
    open_window(db, target["id"])
    iid = phone.create(
        "inspections",
        template_id=target["template_id"],
        site_id=target["site_id"],
        occurrence_id=target["id"],
        status="in_progress",
        mode="scheduled",
    )
    phone.sync()
    import json as _json

    version = api.get(f"/template-versions/{target['template_id']}", ANA).get_json()
    # Which template the earliest occurrence uses depends on the day: answer every item type.
    for section in version["body"]["sections"]:
        for item in section["items"]:
            value = {
                "yes_no": "yes",
                "score_1_5": 5,
                "grade": "优",
                "number": item.get("min", item.get("max", 0)),
                "count": item.get("expected", 0),
                "choice": item.get("options", [{}])[0].get("value"),
                "text": "ok",
                "date_time": 1_700_000_000_000,
            }.get(item["type"])
            if item["type"] in ("photo", "signature"):
                # A signature answers its item bound to the content it signed (domain.md).
                signed = {"signed_content_sha256": "0" * 64} if item["type"] == "signature" else {}
                phone.create(
                    "attachments",
                    inspection_id=iid,
                    kind=item["type"],
                    response_id=phone.create("responses", inspection_id=iid, item_key=item["key"]),
                    **signed,
                )
            else:
                phone.create(
                    "responses", inspection_id=iid, item_key=item["key"], value=_json.dumps(value)
                )
    phone.update("inspections", iid, status="completed")
    result = phone.sync()
    assert result["conflicts"] == [], result
    phone.sync()
    assert phone.get("occurrences", target["id"])["status"] == "done"
    assert phone.get("occurrences", target["id"])["inspection_id"] == iid
    rest = {o["id"]: o for o in api.get("/occurrences?page_size=100", ANA).get_json()}
    assert rest[target["id"]]["status"] == "done"


def test_only_hq_schedules(api, env):
    tpl = next(
        t
        for t in api.get("/templates?page_size=50", HQ_EMAIL).get_json()
        if t["template_key"] == "five_s"
    )
    body = {
        "template_id": tpl["id"],
        "site_id": env["sites"]["N-HOTEL"],
        "recurrence": {"freq": "daily", "times": ["09:00"]},
    }
    assert api.post("/schedules", NORTH, json=body).status_code == 403
    bad = api.post("/schedules", HQ_EMAIL, json={**body, "assignee_ids": [env["users"][SOUTH]]})
    assert bad.status_code == 422 and "assignee_ids" in bad.get_json()["errors"]
    made = api.post("/schedules", HQ_EMAIL, json={**body, "assignee_ids": [env["users"][ANA]]})
    assert made.status_code == 201


def _complete(device, env, answers):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    for key, value in answers.items():
        answer(phone, iid, key, value)
    phone.update("inspections", iid, status="completed")
    phone.sync()
    return iid


def test_compliance_summary_hand_computed(api, env, device):
    # One perfect inspection (2/2 = 100.0) and one failing (clean no, fridge 9: 0/2, critical).
    _complete(device, env, {"clean": "yes", "fridge": 3})
    _complete(device, env, {"clean": "no", "fridge": 9})
    period = "start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z"
    rows = api.get(
        f"/reports/compliance?{period}&group_by=site&template_key=sync_probe", NORTH
    ).get_json()
    assert len(rows) == 1
    row = rows[0]
    assert row["site"] == env["sites"]["N-HOTEL"]
    assert row["inspections_completed"] == 2
    assert row["average_score"] == 50.0  # (100 + 0) / 2
    assert row["pass_rate"] == 0.5 and row["critical_failures"] == 1
    assert row["actions_opened"] == 2 and row["actions_closed"] == 0
    assert row["closure_rate"] == 0.0 and row["actions_overdue"] == 0
    assert row["median_hours_to_close"] is None
    by_month = api.get(
        f"/reports/compliance?{period}&group_by=region,month&template_key=sync_probe", HQ_EMAIL
    ).get_json()
    assert [r["inspections_completed"] for r in by_month] == [2]
    assert api.get(f"/reports/compliance?{period}&template_key=sync_probe", SOUTH).get_json() == []
    failing = api.get(f"/reports/failing-items?{period}", NORTH).get_json()
    assert {(r["item_key"], r["failures"]) for r in failing} == {("clean", 1), ("fridge", 1)}
    resp = api.get(
        f"/reports/compliance?{period}&group_by=site&template_key=sync_probe&format=csv", NORTH
    )
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(table) == 1 and table[0]["inspections_completed"] == "2"
    assert float(table[0]["average_score"]) == row["average_score"]
    assert api.get(f"/reports/compliance?{period}&group_by=planet", NORTH).status_code == 422
