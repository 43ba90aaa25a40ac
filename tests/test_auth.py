"""Login, refresh rotation, token expiry and tampering, rate limiting, /me."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest

from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH


def test_login_returns_the_documented_shape(api, demo_org):
    body = api.login(ANA)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["user"]["email"] == ANA and body["user"]["role"] == "inspector"
    assert set(body["user"]) == {"id", "email", "name", "role", "region_id"}


def test_wrong_password_and_unknown_email_are_401_in_the_envelope(api, demo_org):
    for email, pw in ((ANA, "wrong-password"), ("nobody@demo.example", "demo-pass-2026")):
        resp = api.post("/auth/login", json={"email": email, "password": pw})
        assert resp.status_code == 401
        body = resp.get_json()
        assert body["code"] == 401 and body["status"] == "Unauthorized"
        assert body["reason"] == "bad_credentials" and "password" in body["message"]


def test_repeated_failures_are_rate_limited_with_retry_after(api, demo_org, app):
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    for _ in range(limit):
        assert api.post("/auth/login", json={"email": ANA, "password": "nope"}).status_code == 401
    resp = api.post("/auth/login", json={"email": ANA, "password": "nope"})
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["code"] == 429


def test_successful_logins_do_not_count_against_the_limit(api, demo_org, app):
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    for _ in range(limit + 2):
        api.login(BEN)


def test_me_shows_role_and_scope(api, demo_org):
    me = api.get("/me", ANA).get_json()
    assert me["role"] == "inspector"
    assert sorted(s["code"] for s in me["scope"]["sites"]) == ["N-CANTEEN", "N-HOTEL"]
    hq = api.get("/me", HQ_EMAIL).get_json()
    assert hq["scope"]["all_sites"] is True and len(hq["scope"]["sites"]) == 4
    north = api.get("/me", NORTH).get_json()
    assert [r["name"] for r in north["scope"]["regions"]] == ["North"]


def test_requests_without_a_token_are_401(api, demo_org):
    resp = api.get("/me")
    assert resp.status_code == 401 and resp.get_json()["reason"] == "not_authenticated"


def _forge(app, claims, key=None, alg="HS256"):
    return jwt.encode(claims, key or app.config["SECRET_KEY"], algorithm=alg)


def test_expired_wrong_key_alg_none_and_refresh_as_access_are_refused(api, app, demo_org):
    user_id = demo_org[ANA]
    now = dt.datetime.now(dt.UTC)
    good = {"sub": user_id, "typ": "access", "iat": now, "exp": now + dt.timedelta(minutes=5)}
    expired = {**good, "iat": now - dt.timedelta(hours=2), "exp": now - dt.timedelta(hours=1)}
    none_token = jwt.encode(good, None, algorithm="none")
    cases = {
        "expired": (_forge(app, expired), "token_expired"),
        "wrong key": (
            _forge(app, good, key="another-secret-key-0123456789abcdef"),
            "token_invalid",
        ),
        "alg none": (none_token, "token_invalid"),
        "refresh as access": (_forge(app, {**good, "typ": "refresh"}), "token_invalid"),
        "garbage": ("not.a.token", "token_invalid"),
    }
    assert (
        api.get("/me", headers={"Authorization": f"Bearer {_forge(app, good)}"}).status_code == 200
    )
    for name, (token, reason) in cases.items():
        resp = api.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, name
        assert resp.get_json()["reason"] == reason, name


def test_refresh_rotates_and_reuse_revokes_the_family(api, demo_org):
    first = api.login(ANA)
    resp = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200
    second = resp.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        api.get("/me", headers={"Authorization": f"Bearer {second['access_token']}"}).status_code
        == 200
    )
    # The old token is spent: presenting it again revokes the whole family...
    reuse = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and reuse.get_json()["reason"] == "token_reused"
    # ...including the newer token that came from it.
    after = api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401 and after.get_json()["reason"] == "token_revoked"


def test_access_token_expiry_is_configured(app, demo_org):
    from api import create_app

    short = create_app({**app.config, "ACCESS_TOKEN_TTL": -1})
    client = short.test_client()
    body = client.post(
        "/api/v1/auth/login", json={"email": ANA, "password": "demo-pass-2026"}
    ).get_json()
    resp = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 401 and resp.get_json()["reason"] == "token_expired"
    short.extensions["db_engine"].dispose()


def test_passwords_are_stored_with_argon2_at_the_production_cost(api, db, demo_org):
    from argon2 import extract_parameters
    from sqlalchemy import select

    from store.models import User

    # An account made through the API (the seeded test accounts carry cheap hashes).
    api.new_user("kdf@demo.example", "pw-kdf-2026")
    stored = db.execute(select(User.password_hash).where(User.email == "kdf@demo.example")).scalar()
    assert stored.startswith("$argon2id$") and "pw-kdf-2026" not in stored
    # RFC 9106's second recommended option: 64 MiB, 3 passes (argon2-cffi's default).
    params = extract_parameters(stored)
    assert params.memory_cost >= 65536 and params.time_cost >= 3
    for password, status in (("pw-kdf-2026", 200), ("pw-kdf-2027", 401)):
        login = {"email": "kdf@demo.example", "password": password}
        assert api.post("/auth/login", json=login).status_code == status


def test_demo_password_is_refused_in_production(app, demo_org):
    from api import create_app

    prod = create_app({**app.config, "APP_ENV": "production"})
    resp = prod.test_client().post(
        "/api/v1/auth/login", json={"email": ANA, "password": "demo-pass-2026"}
    )
    assert resp.status_code == 401
    assert resp.get_json()["reason"] == "demo_password_refused"
    prod.extensions["db_engine"].dispose()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/inspections/x/return", b'{"comment": 5}'),
        ("POST", "/api/v1/sync/push", b"{not json"),
        ("POST", "/api/v1/templates", b'{"template_key": []}'),
    ],
)
def test_no_token_is_refused_before_the_body_is_read(client, demo_org, method, path, body):
    resp = client.open(path, method=method, data=body, content_type="application/json")
    assert resp.status_code == 401 and resp.get_json()["reason"] == "not_authenticated"
    forged = client.open(
        path,
        method=method,
        data=body,
        content_type="application/json",
        headers={"Authorization": "Bearer not.a.token"},
    )
    assert forged.status_code == 401 and forged.get_json()["reason"] == "token_invalid"


def test_public_endpoints_need_no_token(client, demo_org):
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert (
        client.post("/api/v1/auth/login", json={"email": "x@y.z", "password": "no"}).status_code
        == 401
    )
    assert client.get("/api/v1/no-such-thing").status_code == 404


def test_an_accepted_token_still_expires_on_time(api, app, demo_org):
    # Verified tokens are kept (api/security.py); their expiry is checked on every request.
    now = int(time.time())
    token = _forge(app, {"sub": demo_org[ANA], "typ": "access", "iat": now, "exp": now + 2})
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/me", headers=headers).status_code == 200
    assert api.get("/me", headers=headers).status_code == 200
    time.sleep(max(0.0, now + 2 - time.time()) + 0.05)
    resp = api.get("/me", headers=headers)
    assert resp.status_code == 401 and resp.get_json()["reason"] == "token_expired"


def test_a_token_whose_expiry_is_not_whole_seconds_is_refused_not_a_500(api, app, demo_org):
    # Our tokens carry whole seconds; the kept-token check compares them without converting.
    now = int(time.time())
    claims = {"sub": demo_org[ANA], "typ": "access", "iat": now}
    for exp in (str(now + 600), now + 600.5, None, [now + 600]):
        token = _forge(app, {**claims, "exp": exp})
        resp = api.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and resp.get_json()["reason"] == "token_invalid", exp
