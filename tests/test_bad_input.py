"""Hostile or broken input: each a 4xx in the error envelope, never a 500."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import HQ_EMAIL


def _envelope(resp, code):
    assert resp.status_code == code, (resp.status_code, resp.get_data()[:300])
    body = resp.get_json()
    assert body["code"] == code and body["status"] and body["message"]
    return body


def test_malformed_json(api, demo_org):
    resp = api.post("/regions", HQ_EMAIL, data=b'{"name": "x",', content_type="application/json")
    _envelope(resp, 400)


def test_wrong_types(api, demo_org):
    body = _envelope(api.post("/regions", HQ_EMAIL, json={"name": 5, "code": ["N"]}), 422)
    assert {"name", "code"} <= set(body["errors"])


def test_oversize_body_is_413(api, demo_org, app):
    big = b'{"name": "' + b"x" * (app.config["MAX_CONTENT_LENGTH"] + 10) + b'"}'
    _envelope(api.post("/regions", HQ_EMAIL, data=big, content_type="application/json"), 413)


def test_nul_bytes_are_refused(api, demo_org):
    body = _envelope(api.post("/regions", HQ_EMAIL, json={"name": "a\x00b", "code": "Q"}), 400)
    assert body["reason"] == "nul_character"


def test_invalid_utf8_and_lone_surrogates(api, demo_org):
    for raw in (b'{"name": "\xff\xfe", "code": "Q"}', b'{"name": "\\ud800", "code": "Q"}'):
        _envelope(api.post("/regions", HQ_EMAIL, data=raw, content_type="application/json"), 400)


def test_deeply_nested_json(api, demo_org):
    raw = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b', "code": "Q"}'
    body = _envelope(api.post("/regions", HQ_EMAIL, data=raw, content_type="application/json"), 400)
    assert body["reason"] in ("too_deep", "invalid_json")


def test_unknown_route_and_method(api, demo_org):
    _envelope(api.get("/nowhere", HQ_EMAIL), 404)
    _envelope(api.call("PUT", "/regions", HQ_EMAIL, json={}), 405)


def test_unicode_edge_cases_are_stored_faithfully(api, demo_org):
    name = "北区 \u200f RTL 🧹 emoji"
    resp = api.post("/regions", HQ_EMAIL, json={"name": name, "code": "U1"})
    assert resp.status_code == 201
    rid = resp.get_json()["id"]
    assert api.get(f"/regions/{rid}", HQ_EMAIL).get_json()["name"] == name


def test_sql_and_path_injection_strings_are_plain_data(api, demo_org):
    for i, evil in enumerate(["'; DROP TABLE users; --", "../../etc/passwd", "%00", "${jndi:x}"]):
        resp = api.post("/regions", HQ_EMAIL, json={"name": evil, "code": f"I{i}"})
        assert resp.status_code == 201
    assert api.get("/users", HQ_EMAIL).status_code == 200
    _envelope(api.get("/sites/..%2F..%2Fetc%2Fpasswd", HQ_EMAIL), 404)
    _envelope(api.get("/sites/' OR '1'='1", HQ_EMAIL), 404)


def test_json_depth_limit_is_exact():
    from api.jsonio import BadJSON, parse

    def nested(depth: int) -> bytes:
        """`depth` containers inside each other."""
        # Mixed containers with scalar leaves at every level, the way real bodies nest.
        raw = b"1"
        for level in range(depth):
            raw = b'{"k": ' + raw + b', "s": "x"}' if level % 2 else b"[0, " + raw + b"]"
        return raw

    assert parse(nested(32), max_depth=32) is not None
    try:
        parse(nested(33), max_depth=32)
    except BadJSON as exc:
        assert exc.reason == "too_deep"
    else:
        raise AssertionError("a body one level too deep was accepted")


def _walked_depth(value) -> int:
    """Nesting depth by the plain recursive definition."""
    if isinstance(value, dict):
        return 1 + max((_walked_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_walked_depth(v) for v in value), default=0)
    return 0


_SCALARS = (
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(alphabet='ab{[]}"\\', max_size=4)
)
_TREES = st.recursive(
    _SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=3), kids, max_size=4)
    ),
    max_leaves=30,
)


@given(_TREES)
def test_the_depth_check_stops_early_only_when_nothing_lies_deeper(tree):
    # The check stops once the levels seen hold as many containers as the text has '{' and
    # '[' bytes; brackets inside strings (keys and values) must not make it stop short.
    from api.jsonio import _max_depth

    raw = orjson.dumps(tree)
    if not isinstance(tree, dict | list):
        return
    assert _max_depth(orjson.loads(raw), raw.count(b"{") + raw.count(b"[")) == _walked_depth(tree)


def test_a_report_period_without_an_offset_says_how_to_write_one(api, demo_org):
    # A time without an offset is another instant at every site: the answer says what to send
    # instead (the offset, or the date alone for that day at each site).
    resp = api.get(
        "/reports/compliance?start=2026-11-01T00:00:00&end=2026-12-01T00:00:00Z", HQ_EMAIL
    )
    body = _envelope(resp, 422)
    message = " ".join(str(v) for v in body["errors"].values()) + body["message"]
    assert "start" in str(body["errors"]) and "+08:00" in message, body
    assert "2026-11-01)" in message, body
    resp = api.get("/reports/compliance?start=yesterday&end=2026-12-01T00:00:00Z", HQ_EMAIL)
    assert "2026-11-01T00:00:00+08:00" in str(_envelope(resp, 422)["errors"])
