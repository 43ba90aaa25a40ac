"""Scope rules for every role on the organisation resources: 404 out-of-scope reads,
403 out-of-scope or wrong-role writes, filtered lists."""

from __future__ import annotations

import pytest

from store.models import DeviceState, Region, Site, SiteAssignment, User
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, SOUTH


@pytest.fixture
def ids(db, demo_org):
    sites = {s.code: s.id for s in db.query(Site)}
    regions = {r.code: r.id for r in db.query(Region)}
    return {"sites": sites, "regions": regions, "users": demo_org}


SITE_VIEW = {
    HQ_EMAIL: {"N-HOTEL", "N-CANTEEN", "S-HOTEL", "S-STORE"},
    NORTH: {"N-HOTEL", "N-CANTEEN"},
    SOUTH: {"S-HOTEL", "S-STORE"},
    ANA: {"N-HOTEL", "N-CANTEEN"},
    BEN: {"N-HOTEL", "S-HOTEL"},
}


@pytest.mark.parametrize("email", sorted(SITE_VIEW))
def test_site_list_and_reads_follow_scope(api, ids, email):
    listed = {s["code"] for s in api.get("/sites", email).get_json()}
    assert listed == SITE_VIEW[email]
    for code, site_id in ids["sites"].items():
        resp = api.get(f"/sites/{site_id}", email)
        expected = 200 if code in SITE_VIEW[email] else 404
        assert resp.status_code == expected, (email, code)


@pytest.mark.parametrize("email", [NORTH, SOUTH, ANA, BEN])
def test_only_hq_writes_sites(api, ids, email):
    for code, site_id in ids["sites"].items():
        resp = api.patch(f"/sites/{site_id}", email, json={"name": "x"})
        # In scope: wrong role (403). Out of scope: also 403 (a write never reveals more).
        assert resp.status_code == 403, (email, code)
    resp = api.post(
        "/sites", email, json={"region_id": ids["regions"]["N"], "name": "New", "code": "NEW"}
    )
    assert resp.status_code == 403


def test_hq_writes_sites(api, ids):
    resp = api.patch(f"/sites/{ids['sites']['S-STORE']}", HQ_EMAIL, json={"name": "Renamed"})
    assert resp.status_code == 200 and resp.get_json()["name"] == "Renamed"


REGION_VIEW = {HQ_EMAIL: {"N", "S"}, NORTH: {"N"}, SOUTH: {"S"}, ANA: {"N"}, BEN: {"N", "S"}}


@pytest.mark.parametrize("email", sorted(REGION_VIEW))
def test_region_reads_follow_scope(api, ids, email):
    listed = {r["code"] for r in api.get("/regions", email).get_json()}
    assert listed == REGION_VIEW[email]
    for code, region_id in ids["regions"].items():
        expected = 200 if code in REGION_VIEW[email] else 404
        assert api.get(f"/regions/{region_id}", email).status_code == expected
        if email != HQ_EMAIL:
            assert api.patch(f"/regions/{region_id}", email, json={"name": "x"}).status_code in (
                403,
            )


@pytest.mark.parametrize(
    "email,visible",
    [
        (HQ_EMAIL, {HQ_EMAIL, NORTH, SOUTH, ANA, BEN}),
        # Ben works at a hotel in each region: both managers review his inspections.
        (NORTH, {NORTH, ANA, BEN}),
        (SOUTH, {SOUTH, BEN}),
        (ANA, {ANA}),
        (BEN, {BEN}),
    ],
)
def test_user_reads_follow_scope(api, ids, email, visible):
    listed = {u["email"] for u in api.get("/users", email).get_json()}
    assert listed == visible
    for other, user_id in ids["users"].items():
        expected = 200 if other in visible else 404
        assert api.get(f"/users/{user_id}", email).status_code == expected
    if email != HQ_EMAIL:
        assert (
            api.post(
                "/users",
                email,
                json={
                    "email": "x@demo.example",
                    "name": "X",
                    "role": "inspector",
                    "password": "long-enough-password",
                },
            ).status_code
            == 403
        )


@pytest.mark.parametrize("email,count", [(HQ_EMAIL, 4), (NORTH, 3), (SOUTH, 1), (ANA, 2), (BEN, 2)])
def test_assignment_lists_are_filtered(api, ids, email, count):
    assert len(api.get("/assignments", email).get_json()) == count


def test_only_hq_assigns_and_revokes(api, ids, db):
    body = {"user_id": ids["users"][ANA], "site_id": ids["sites"]["S-STORE"]}
    for email in (NORTH, SOUTH, ANA, BEN):
        assert api.post("/assignments", email, json=body).status_code == 403
    created = api.post("/assignments", HQ_EMAIL, json=body)
    assert created.status_code == 201
    assert "S-STORE" in {s["code"] for s in api.get("/sites", ANA).get_json()}
    assignment_id = created.get_json()["id"]
    assert api.delete(f"/assignments/{assignment_id}", NORTH).status_code == 403
    assert api.delete(f"/assignments/{assignment_id}", HQ_EMAIL).status_code == 204
    assert "S-STORE" not in {s["code"] for s in api.get("/sites", ANA).get_json()}
    row = db.get(SiteAssignment, assignment_id)
    assert row.revoked_at is not None  # kept, so devices learn of the revocation


def test_deactivated_user_cannot_use_a_live_token(api, ids, db):
    headers = api.headers(BEN)
    assert (
        api.patch(f"/users/{ids['users'][BEN]}", HQ_EMAIL, json={"active": False}).status_code
        == 200
    )
    assert api.get("/me", headers=headers).status_code == 401
    device = {**headers, "X-Device-Id": "ben-phone"}
    pulled = api.get("/sync/pull?last_pulled_at=0", headers=device)
    assert pulled.status_code == 401 and pulled.get_json()["reason"] == "account_disabled"
    pushed = api.post("/sync/push", headers=device, json={"changes": {}, "last_pulled_at": 1})
    assert pushed.status_code == 401
    assert db.get(DeviceState, (ids["users"][BEN], "ben-phone")) is None
    db.expire_all()
    assert db.get(User, ids["users"][BEN]).active is False


def test_a_manager_stops_seeing_an_inspector_whose_assignment_ends(api, ids, db):
    ben = ids["users"][BEN]
    assert api.get(f"/users/{ben}", SOUTH).status_code == 200
    live = db.query(SiteAssignment).filter_by(user_id=ben, site_id=ids["sites"]["S-HOTEL"]).one()
    assert api.delete(f"/assignments/{live.id}", HQ_EMAIL).status_code == 204
    assert api.get(f"/users/{ben}", SOUTH).status_code == 404
    assert BEN not in {u["email"] for u in api.get("/users", SOUTH).get_json()}
    assert api.get(f"/users/{ben}", NORTH).status_code == 200
