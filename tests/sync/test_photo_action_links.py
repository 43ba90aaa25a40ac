"""A photo may document only an action at its own site: otherwise the action's deletion would
cascade into a photo the deleting user cannot even see."""

from __future__ import annotations

from store.models import Attachment, Conflict
from tests.media.conftest import jpeg
from tests.sync_env import ANA, BEN, new_inspection, photo_record


def test_a_photo_cannot_document_an_action_at_another_site(env, device, db):
    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    ben.sync()
    aid = ben.create("actions", site_id=env["sites"]["S-HOTEL"], title="Leak", status="open")
    ben.sync()
    iid = new_inspection(ana, env, site="N-CANTEEN")  # Ana's; Ben cannot see N-CANTEEN
    att = photo_record(ana, iid, None, jpeg(30, 20), action_id=aid)  # S-HOTEL: not Ana's
    conflicts = ana.sync()["conflicts"]
    assert [(c["kind"], c["id"]) for c in conflicts] == [("out_of_scope", att)]
    kept = db.query(Conflict).filter_by(record_id=att).one()
    assert "another site" in kept.detail and kept.device_value["action_id"] == aid
    ben.delete("actions", aid)
    ben.sync()
    db.expire_all()
    assert db.get(Attachment, att) is None  # never linked, so nothing of Ana's was taken
    assert db.query(Conflict).filter_by(record_id=att).one().device_value["sha256"]
