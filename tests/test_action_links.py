"""A hand-raised action links only to its own inspection's answer and to someone who works at
its site."""

from __future__ import annotations

from tests.conftest import ANA, BEN, NORTH
from tests.sync_env import answer, new_inspection


def test_an_action_names_an_answer_of_its_own_inspection(api, env, device):
    phone = device(ANA)
    phone.sync()
    mine = new_inspection(phone, env)
    other = new_inspection(phone, env)
    rid = answer(phone, other, "clean", "no")
    phone.sync()
    wrong = {"inspection_id": mine, "response_id": rid, "title": "Mop"}
    resp = api.post("/actions", NORTH, json=wrong)
    assert resp.status_code == 422 and "response_id" in resp.get_json()["errors"]
    right = {"inspection_id": other, "response_id": rid, "title": "Mop"}
    assert api.post("/actions", NORTH, json=right).status_code == 201


def test_an_action_is_assigned_to_someone_who_works_at_its_site(api, env):
    canteen = env["sites"]["N-CANTEEN"]  # Ana's, not Ben's
    elsewhere = {"site_id": canteen, "title": "Fix", "assignee_id": env["users"][BEN]}
    resp = api.post("/actions", NORTH, json=elsewhere)
    assert resp.status_code == 422 and "assignee_id" in resp.get_json()["errors"]
    here = {"site_id": canteen, "title": "Fix", "assignee_id": env["users"][ANA]}
    assert api.post("/actions", NORTH, json=here).status_code == 201
