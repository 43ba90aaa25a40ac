"""A record refused while a push is planned flags its inspection (sync-protocol.md, Push step 9:
has_conflicts), as the rules' own refusals do."""

from __future__ import annotations

from store.models import Conflict, Inspection
from tests.sync_env import ANA, BEN, answer, new_inspection


def test_an_out_of_scope_conflict_flags_its_inspection(env, device, db):
    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    iid = new_inspection(ana, env)
    rid = answer(ana, iid, "fridge", 3)
    ana.sync()
    ben.sync()  # Ben sees N-HOTEL, but the inspection is Ana's
    ben.update("responses", rid, value="12", note="Ben says it is warm")
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    db.expire_all()
    assert db.query(Conflict).filter_by(inspection_id=iid, resolved_at=None).count() == 1
    assert db.get(Inspection, iid).has_conflicts is True
    ana.sync()
    assert ana.get("inspections", iid)["has_conflicts"] is True  # her device learns it too


def test_a_refused_change_to_the_inspection_itself_flags_it(env, device, db):
    """Ben's edit of Ana's inspection row (not of its answers) is refused before the rules run:
    the inspection is flagged all the same, and Ana's device learns it."""
    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    ben.sync()
    ben.update("inspections", iid, notes="Ben's view of Ana's run")
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    db.expire_all()
    assert db.get(Inspection, iid).has_conflicts is True
    ana.sync()
    assert ana.get("inspections", iid)["has_conflicts"] is True
    assert ana.get("inspections", iid).get("notes") in (None, "")
