"""HTTP hygiene: 415 for non-JSON bodies, unknown query parameters refused, the headers HTTP
requires on errors (Allow, WWW-Authenticate), and signing out of the API."""

from __future__ import annotations

import time

import jwt
import orjson

from tests.conftest import ANA, HQ_EMAIL

JSON_415 = "Send the body as JSON with 'Content-Type: application/json'."


def _envelope(resp, code: int) -> dict:
    assert resp.status_code == code, (resp.status_code, resp.get_data(as_text=True)[:500])
    body = resp.get_json()
    assert body["code"] == code and body["message"], body
    return body


# --- 1. a body that is not JSON is 415, not a misleading 422/400 ---------------------------


def test_text_plain_json_body_is_415(api, demo_org):
    raw = orjson.dumps({"name": "East", "code": "E"})
    resp = api.post("/regions", HQ_EMAIL, data=raw, content_type="text/plain")
    body = _envelope(resp, 415)
    assert body["message"] == JSON_415
    assert body["reason"] == "unsupported_media_type"


def test_push_with_text_plain_is_415(api, demo_org):
    raw = orjson.dumps({"changes": {}, "last_pulled_at": 0})
    headers = {"X-Device-Id": "device-hygiene-1"}
    resp = api.post("/sync/push", ANA, data=raw, content_type="text/plain", headers=headers)
    assert _envelope(resp, 415)["message"] == JSON_415


def test_form_encoded_login_is_415(api, demo_org):
    resp = api.post("/auth/login", data={"email": ANA, "password": "demo-pass-2026"})
    assert _envelope(resp, 415)["message"] == JSON_415


def test_body_without_content_type_is_415(api, demo_org):
    resp = api.client.post(
        "/api/v1/regions",
        data=b'{"name": "East", "code": "E"}',
        headers={**api.headers(HQ_EMAIL), "Content-Type": ""},
    )
    _envelope(resp, 415)


def test_patch_with_text_plain_is_415(api, demo_org):
    region = api.get("/regions", HQ_EMAIL).get_json()[0]
    resp = api.patch(
        f"/regions/{region['id']}", HQ_EMAIL, data=b'{"name": "X"}', content_type="text/plain"
    )
    _envelope(resp, 415)


def test_json_with_charset_and_vendor_json_types_are_accepted(api, demo_org):
    raw = orjson.dumps({"name": "East", "code": "E1"})
    resp = api.post("/regions", HQ_EMAIL, data=raw, content_type="application/json; charset=utf-8")
    assert resp.status_code == 201, resp.get_json()
    raw = orjson.dumps({"name": "West", "code": "W1"})
    resp = api.post("/regions", HQ_EMAIL, data=raw, content_type="application/merge-patch+json")
    assert resp.status_code == 201, resp.get_json()


def test_bodiless_action_post_needs_no_content_type(api, demo_org):
    # No body, no content type: the action is looked up (404 here), never 415.
    resp = api.post("/inspections/no-such-inspection/archive", HQ_EMAIL)
    assert resp.status_code == 404, resp.get_json()
    resp = api.post(
        "/inspections/no-such-inspection/archive", HQ_EMAIL, data=b"", content_type="text/plain"
    )
    assert resp.status_code == 404, resp.get_json()


def test_attachment_bytes_upload_is_not_refused_as_non_json(api, demo_org):
    resp = api.call(
        "PUT",
        "/attachments/no-such-attachment/content",
        ANA,
        data=b"\xff\xd8\xff\xe0 not really a jpeg",
        content_type="image/jpeg",
    )
    # Not 415: the bytes reach the view, which finds no upload requested for this id.
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["reason"] == "no_upload_requested"


def test_console_form_posts_are_not_refused(client, demo_org):
    resp = client.post(
        "/console/login", data={"email": HQ_EMAIL, "password": "wrong-password-here"}
    )
    assert resp.status_code != 415
    assert resp.content_type.startswith("text/html")


def test_415_is_translated(api, demo_org):
    resp = api.post(
        "/regions",
        HQ_EMAIL,
        data=b"{}",
        content_type="text/plain",
        headers={"Accept-Language": "zh"},
    )
    body = _envelope(resp, 415)
    assert body["message"] != JSON_415 and "JSON" in body["message"]


# --- 2. unknown query parameters are refused -----------------------------------------------


def test_misspelled_filter_is_422_naming_it(api, demo_org):
    resp = api.get("/actions?statsu=open", HQ_EMAIL)
    body = _envelope(resp, 422)
    assert "statsu" in body["errors"]
    assert "statsu" in body["message"]


def test_known_filters_and_pagination_still_work(api, demo_org):
    resp = api.get("/actions?status=open&page=1&page_size=5", HQ_EMAIL)
    assert resp.status_code == 200, resp.get_json()
    assert "X-Pagination" in resp.headers
    resp = api.get("/sites?page=2&page_size=1", HQ_EMAIL)
    assert resp.status_code == 200, resp.get_json()
    assert len(resp.get_json()) == 1


def test_unknown_parameter_on_a_list_with_only_pagination_is_refused(api, demo_org):
    assert api.get("/regions?page=1&page_size=1", HQ_EMAIL).status_code == 200
    body = _envelope(api.get("/regions?sort=name", HQ_EMAIL), 422)
    assert "sort" in body["errors"]


def test_pagination_values_are_still_validated(api, demo_org):
    body = _envelope(api.get("/actions?page=0", HQ_EMAIL), 422)
    assert "page" in body["errors"]


def test_sync_pull_accepts_the_watermelondb_parameters(api, demo_org):
    headers = {"X-Device-Id": "device-hygiene-2"}
    resp = api.get("/sync/pull?limit=50", ANA, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    stamp = resp.get_json()["timestamp"]
    resp = api.get(f"/sync/pull?limit=50&last_pulled_at={stamp}", ANA, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    body = _envelope(api.get("/sync/pull?lastPulledAt=0", ANA, headers=headers), 422)
    assert "lastPulledAt" in body["errors"]


# --- 3. error responses carry the headers HTTP requires ------------------------------------


def test_405_names_allowed_methods_with_allow_header(api, demo_org):
    resp = api.call("PUT", "/regions", HQ_EMAIL, json={})
    body = _envelope(resp, 405)
    allow = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allow
    assert "GET" in body["message"] and "POST" in body["message"] and "PUT" in body["message"]
    assert resp.content_type == "application/json"


def test_405_message_is_translated(api, demo_org):
    resp = api.call("PUT", "/regions", HQ_EMAIL, json={}, headers={"Accept-Language": "zh"})
    body = _envelope(resp, 405)
    assert "GET" in body["message"] and "请求方法" in body["message"]
    assert "Allow" in resp.headers


def test_401_carries_www_authenticate_bearer(api, demo_org):
    resp = api.get("/me")
    _envelope(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = api.get("/me", headers={"Authorization": "Bearer not-a-token"})
    _envelope(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = api.post("/auth/login", json={"email": ANA, "password": "wrong-password"})
    _envelope(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_trailing_slash_404_hints_the_route(api, demo_org):
    body = _envelope(api.get("/regions/", HQ_EMAIL), 404)
    assert "trailing slash" in body["message"] and "/api/v1/regions" in body["message"]
    body = _envelope(api.get("/nowhere/", HQ_EMAIL), 404)
    assert "trailing slash" not in body["message"]
    body = _envelope(api.get("/regions/", HQ_EMAIL, headers={"Accept-Language": "zh"}), 404)
    assert "/api/v1/regions" in body["message"]


# --- 4. grammar of the wrong-token-type message --------------------------------------------


def test_refresh_token_used_as_access_token_says_an_access_token(api, demo_org):
    tokens = api.login(ANA)
    resp = api.get("/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    body = _envelope(resp, 401)
    assert body["message"] == "Expected an access token."
    zh = api.get(
        "/me",
        headers={
            "Authorization": f"Bearer {tokens['refresh_token']}",
            "Accept-Language": "zh",
        },
    ).get_json()
    assert zh["message"] != "Expected an access token."


def test_access_token_used_as_refresh_token_says_a_refresh_token(api, demo_org):
    tokens = api.login(ANA)
    resp = api.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert _envelope(resp, 401)["message"] == "Expected a refresh token."


# --- 5. the chart route documents and accepts no `format` ----------------------------------


def test_compliance_chart_documents_no_format_parameter(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    chart = spec["paths"]["/api/v1/reports/compliance.{fmt}"]["get"]
    names = {p["name"] for p in chart["parameters"] if p["in"] == "query"}
    assert "format" not in names and {"start", "end", "group_by"} <= names
    table = spec["paths"]["/api/v1/reports/compliance"]["get"]
    assert "format" in {p["name"] for p in table["parameters"] if p["in"] == "query"}


def test_compliance_chart_refuses_format(api, demo_org):
    period = "start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z"
    resp = api.get(f"/reports/compliance.svg?{period}", HQ_EMAIL)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    body = _envelope(api.get(f"/reports/compliance.svg?{period}&format=csv", HQ_EMAIL), 422)
    assert "format" in body["errors"]


# --- 6. API logout revokes the refresh token -----------------------------------------------


def test_logout_revokes_the_refresh_token(api, demo_org):
    tokens = api.login(ANA)
    resp = api.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 204, resp.get_data(as_text=True)
    assert resp.get_data() == b""
    resp = api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    body = _envelope(resp, 401)
    assert body["reason"] == "token_revoked"


def test_logout_ends_the_sessions_access_tokens_at_once(client, api, demo_org):
    # Signed out on a shared phone: the access token still in its memory must not keep
    # reading or pushing for the rest of its 15 minutes, over REST or sync.
    phone = api.login(ANA)
    laptop = api.login(ANA)

    def as_(tokens, method, path, **kw):
        headers = {"Authorization": f"Bearer {tokens['access_token']}", "X-Device-Id": "p"}
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    assert as_(phone, "GET", "/me").status_code == 200
    assert as_(phone, "GET", "/sync/pull").status_code == 200
    resp = api.post("/auth/logout", json={"refresh_token": phone["refresh_token"]})
    assert resp.status_code == 204
    push = {"changes": {}, "last_pulled_at": None}
    for method, path, kw in (
        ("GET", "/me", {}),
        ("GET", "/sync/pull", {}),
        ("POST", "/sync/push", {"json": push}),
        ("GET", "/actions", {}),
    ):
        body = _envelope(as_(phone, method, path, **kw), 401)
        assert body["reason"] == "session_ended", (path, body)
    # The other sign-in of the same account goes on working.
    assert as_(laptop, "GET", "/me").status_code == 200
    assert as_(laptop, "GET", "/sync/pull").status_code == 200


def test_a_refresh_racing_a_sign_out_gives_no_working_refresh_token(app, api, demo_org):
    # A sign-out revokes the tokens it sees; a refresh issuing a token at that moment must
    # not leave a chain that refreshes forever into dead access tokens.
    from sqlalchemy import update

    from api import db
    from store.models import RefreshToken
    from store.types import utcnow

    first = api.login(ANA)
    second = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).get_json()
    first_jti = jwt.decode(first["refresh_token"], options={"verify_signature": False})["jti"]
    with app.app_context():  # the sign-out revoked the first token only: the race's outcome
        session = db.session()
        session.execute(
            update(RefreshToken).where(RefreshToken.jti == first_jti).values(revoked_at=utcnow())
        )
        session.commit()
    resp = api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert _envelope(resp, 401)["reason"] == "token_revoked"


def test_a_deactivated_accounts_token_says_so_on_every_path(client, api, demo_org):
    # Deactivation also ends the account's sign-ins; the answer names the account, not a
    # sign-out the user never made (REST, and both pull paths).
    tokens = api.login(ANA)
    user = api.get("/me", ANA).get_json()["id"]
    assert api.patch(f"/users/{user}", HQ_EMAIL, json={"active": False}).status_code == 200
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "X-Device-Id": "p"}
    for path in ("/api/v1/me", "/api/v1/sync/pull"):
        body = _envelope(client.get(path, headers=headers), 401)
        assert body["reason"] == "account_disabled", (path, body)


def test_a_token_whose_sign_in_is_not_a_string_is_refused(app, client, demo_org):
    # Only a holder of the signing key could make one; still a 401, never a 500.
    now = int(time.time())
    for sid in (["a"], 5):
        forged = jwt.encode(
            {"sub": "u", "role": "hq", "typ": "access", "sid": sid, "iat": now, "exp": now + 60},
            app.config["SECRET_KEY"],
            algorithm="HS256",
        )
        resp = client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
        assert _envelope(resp, 401)["reason"] == "token_invalid"


def test_logout_is_idempotent(api, demo_org):
    tokens = api.login(ANA)
    for _ in range(2):
        resp = api.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert resp.status_code == 204


def test_logout_with_an_expired_refresh_token_still_signs_out(api, app, demo_org):
    # A phone that was off past the refresh token's lifetime signs out: the session ends, and
    # the device is told so (204), not that its token expired.
    tokens = api.login(ANA)
    claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    past = int(time.time()) - 3600
    expired = jwt.encode(
        {**claims, "iat": past - 60, "exp": past}, app.config["SECRET_KEY"], algorithm="HS256"
    )
    resp = api.post("/auth/logout", json={"refresh_token": expired})
    assert resp.status_code == 204, resp.get_data(as_text=True)
    resp = api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert _envelope(resp, 401)["reason"] == "token_revoked"
    # A forged one (another key) is still refused.
    forged = jwt.encode({**claims, "exp": past}, "another-secret-" + "k" * 40, algorithm="HS256")
    assert _envelope(api.post("/auth/logout", json={"refresh_token": forged}), 401)


def test_logout_after_rotation_signs_the_whole_session_out(api, demo_org):
    first = api.login(ANA)
    second = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    second = second.get_json()
    # Signing out with the current refresh token ends the session (its family).
    resp = api.post("/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert resp.status_code == 204
    resp = api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert _envelope(resp, 401)["reason"] in ("token_revoked", "token_reused")


def test_logout_leaves_other_sessions_alone(api, demo_org):
    phone = api.login(ANA)
    laptop = api.post("/auth/login", json={"email": ANA, "password": "demo-pass-2026"}).get_json()
    resp = api.post("/auth/logout", json={"refresh_token": phone["refresh_token"]})
    assert resp.status_code == 204
    resp = api.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert resp.status_code == 200, resp.get_json()


def test_logout_refuses_garbage_like_refresh(api, demo_org):
    _envelope(api.post("/auth/logout", json={"refresh_token": "not-a-jwt-at-all"}), 401)
    _envelope(api.post("/auth/logout", json={}), 422)
    _envelope(api.post("/auth/logout", json={"refresh_token": "x" * 20, "extra": 1}), 422)
    tokens = api.login(ANA)
    body = _envelope(api.post("/auth/logout", json={"refresh_token": tokens["access_token"]}), 401)
    assert body["message"] == "Expected a refresh token."


def test_logout_needs_no_access_token_and_is_documented(client, api, demo_org):
    spec = client.get("/api/v1/openapi.json").get_json()
    op = spec["paths"]["/api/v1/auth/logout"]["post"]
    assert op["summary"]
    assert "204" in op["responses"] and "401" in op["responses"] and "422" in op["responses"]
    assert "requestBody" in op
    assert not op.get("security")
