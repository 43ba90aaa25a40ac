"""HQ administration: validation that names the field, pagination, uniqueness."""

from __future__ import annotations

from tests.conftest import HQ_EMAIL


def test_create_region_site_user_and_assign(api, demo_org):
    region = api.post("/regions", HQ_EMAIL, json={"name": "East", "code": "E"})
    assert region.status_code == 201
    rid = region.get_json()["id"]
    site = api.post(
        "/sites",
        HQ_EMAIL,
        json={"region_id": rid, "name": "East Inn", "code": "E-1", "timezone": "Europe/Berlin"},
    )
    assert site.status_code == 201 and site.get_json()["timezone"] == "Europe/Berlin"
    user = api.post(
        "/users",
        HQ_EMAIL,
        json={
            "email": "Eve@Demo.Example",
            "name": "Eve",
            "role": "inspector",
            "password": "a-long-password-1",
        },
    )
    assert user.status_code == 201 and user.get_json()["email"] == "eve@demo.example"
    assert "password" not in user.get_json() and "password_hash" not in user.get_json()
    assign = api.post(
        "/assignments",
        HQ_EMAIL,
        json={"user_id": user.get_json()["id"], "site_id": site.get_json()["id"]},
    )
    assert assign.status_code == 201
    login = api.post(
        "/auth/login", json={"email": "eve@demo.example", "password": "a-long-password-1"}
    )
    assert login.status_code == 200


def test_validation_errors_name_the_field(api, demo_org):
    cases = [
        ("/sites", {"name": "x", "code": "c"}, "region_id"),
        ("/sites", {"region_id": "nope", "name": "x", "code": "c1"}, "region_id"),
        ("/sites", {"region_id": "r", "name": "x", "code": "bad code!"}, "code"),
        (
            "/sites",
            {"region_id": "r", "name": "x", "code": "c2", "timezone": "Mars/Base"},
            "timezone",
        ),
        (
            "/users",
            {
                "email": "not-an-email",
                "name": "x",
                "role": "inspector",
                "password": "long-enough-pw",
            },
            "email",
        ),
        (
            "/users",
            {"email": "a@b.example", "name": "x", "role": "king", "password": "long-enough-pw"},
            "role",
        ),
        (
            "/users",
            {
                "email": "a@b.example",
                "name": "x",
                "role": "regional_manager",
                "password": "long-enough-pw",
            },
            "region_id",
        ),
        (
            "/users",
            {"email": "hq@demo.example", "name": "x", "role": "hq", "password": "long-enough-pw"},
            "email",
        ),
        ("/regions", {"name": "North", "code": "Z"}, "name"),
        ("/regions", {"name": "Z", "code": "N", "colour": "red"}, "colour"),
    ]
    for path, body, field in cases:
        resp = api.post(path, HQ_EMAIL, json=body)
        assert resp.status_code == 422, (path, body, resp.get_json())
        payload = resp.get_json()
        assert field in payload["errors"], (path, body, payload)
        assert payload["message"]


def test_lists_are_paginated_with_a_total(api, demo_org):
    resp = api.get("/sites?page=1&page_size=3", HQ_EMAIL)
    assert resp.status_code == 200
    assert len(resp.get_json()) == 3
    meta = resp.get_json() and __import__("json").loads(resp.headers["X-Pagination"])
    assert meta["total"] == 4 and meta["total_pages"] == 2
    second = api.get("/sites?page=2&page_size=3", HQ_EMAIL).get_json()
    assert len(second) == 1
    codes = [s["code"] for s in api.get("/sites", HQ_EMAIL).get_json()]
    assert codes == sorted(codes)


def test_region_with_sites_cannot_be_deleted(api, demo_org):
    north = next(r for r in api.get("/regions", HQ_EMAIL).get_json() if r["code"] == "N")
    resp = api.delete(f"/regions/{north['id']}", HQ_EMAIL)
    assert resp.status_code == 422 and resp.get_json()["reason"] == "region_not_empty"


def test_closed_site_disappears_from_lists(api, demo_org):
    site = next(s for s in api.get("/sites", HQ_EMAIL).get_json() if s["code"] == "S-STORE")
    assert api.delete(f"/sites/{site['id']}", HQ_EMAIL).status_code == 204
    assert api.get(f"/sites/{site['id']}", HQ_EMAIL).status_code == 404
    assert len(api.get("/sites", HQ_EMAIL).get_json()) == 3
