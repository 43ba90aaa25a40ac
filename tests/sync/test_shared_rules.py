"""One rules object serves every request thread of a gunicorn gthread worker: a push planned
while another push runs through the same object must still see its own answers."""

from __future__ import annotations

from sqlalchemy import select

from inspections.plan_rules import InspectionRules
from store.changeset import ChangeSet
from store.models import Conflict, Inspection
from tests.conftest import ANA
from tests.sync_env import answer, new_inspection, now_ms


def test_interleaved_pushes_do_not_share_plan_state(app, env, device, db, monkeypatch):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.sync()
    original = InspectionRules._versions
    interleaved = []

    def versions(self, session, cs, ids):
        # Another request thread's push goes through the same rules object right now.
        if not interleaved:
            interleaved.append(True)
            other = ChangeSet(user_id="u", role="inspector", device_id="d", now_ms=now_ms())
            other.add_new(
                "inspections",
                {
                    "id": "other-thread",
                    "template_id": env["template"],
                    "site_id": env["sites"]["N-HOTEL"],
                    "status": "in_progress",
                },
            )
            self.apply(session, other)
        return original(self, session, cs, ids)

    monkeypatch.setattr(InspectionRules, "_versions", versions)
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    phone.sync()
    assert interleaved
    db.expire_all()
    assert db.get(Inspection, iid).status == "completed"
    kinds = db.execute(select(Conflict.kind).where(Conflict.record_id == iid)).scalars().all()
    assert "incomplete" not in kinds
