"""A client that takes one page per sync (stock WatermelonDB: pullChanges returns the page it
got, has_more or not; the next sync continues from that page's cursor) sends the base_rev of
the copy it really edited: it stands as sent, and no overwrite is recorded of a change the
device had pulled and seen."""

from __future__ import annotations

from store.models import Conflict, Inspection
from tests.sync.device import Device
from tests.sync_env import ANA, new_inspection


def test_an_edit_of_a_pulled_page_records_no_overwrite_on_the_next_page(env, device, client, db):
    b = device(ANA, "b")
    a = Device(client, b.token, "a-one-page", one_page=True)
    a.limit = 10_000
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    a.sync()  # a's copy carries its server_rev; a's pulls are now up to date
    b.sync()
    b.update("inspections", iid, notes="from b")
    b.sync()
    new_inspection(b, env, notes="later")  # a change after b's edit: a second page
    b.sync()

    a.limit = 1
    a.sync()  # one page: b's edit (has_more: true); nothing to push
    assert a.get("inspections", iid)["notes"] == "from b"
    a.update("inspections", iid, notes="from a, having read b's")  # base_rev: b's edit
    a.sync()  # the next page, then the push
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from a, having read b's"
    kinds = [c.kind for c in db.query(Conflict).filter_by(record_id=iid)]
    assert kinds == [], "a recorded overwrite of a value the device had pulled"
