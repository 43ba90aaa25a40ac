"""An action's deletion takes its photos: it may take none its deleter may not delete. A photo
documents only an action at its own site, and only the inspector of an action's inspection
deletes it over sync."""

from __future__ import annotations

from store.models import Action, Attachment, Conflict
from tests.media.conftest import jpeg
from tests.sync_env import ANA, BEN, answer, new_action, new_inspection, photo_record


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


def test_a_colleagues_deletion_of_an_action_does_not_take_the_inspections_photos(env, device, db):
    """Ben may change the action raised on Ana's inspection, not delete it: its deletion would
    take the photo of her failed item, which he may not delete himself."""
    ana = device(ANA, "ana")
    ana.sync()
    iid = new_inspection(ana, env)  # N-HOTEL: Ana's inspection, Ben works there too
    rid = answer(ana, iid, "clean", "no")
    aid = new_action(ana, env, iid, title="Floor sticky", response_id=rid)
    att = photo_record(ana, iid, rid, jpeg(40, 30), action_id=aid)  # documents both
    assert ana.sync()["conflicts"] == []
    ben = device(BEN, "ben")
    ben.sync()
    ben.delete("attachments", att)
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    ben.sync()
    ben.delete("actions", aid)
    assert [(c["id"], c["kind"]) for c in ben.sync()["conflicts"]] == [(aid, "out_of_scope")]
    db.expire_all()
    assert db.get(Attachment, att).deleted_at is None
    assert db.get(Action, aid).deleted_at is None
    kept = db.query(Conflict).filter_by(record_id=aid).one()
    assert kept.device_value == {"id": aid, "_deleted": True}
    ben.sync()
    assert ben.get("actions", aid) is not None  # his phone gets it back
