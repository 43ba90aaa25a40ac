"""A client that takes one page per sync (stock WatermelonDB: pullChanges returns the page it
got, has_more or not; the next sync continues from that page's cursor) sends the base_rev of
the copy it really edited: it stands as sent, and no overwrite is recorded of a change the
device had pulled and seen."""

from __future__ import annotations

from store.models import Conflict, Inspection
from tests.sync.device import TABLES, Device, SyncFailed
from tests.sync_env import ANA, new_inspection


class OnePagePerSync(Device):
    """Pulls a single page per sync and keeps its cursor, as a client ignoring has_more."""

    def pull(self) -> int:
        params = {} if self.last_pulled_at is None else {"last_pulled_at": self.last_pulled_at}
        if self.limit:
            params["limit"] = self.limit
        resp = self.client.get("/api/v1/sync/pull", query_string=params, headers=self.headers())
        if resp.status_code != 200:
            raise SyncFailed(resp.status_code, resp.get_json())
        body = resp.get_json()
        merged = {t: {"updated": [], "deleted": []} for t in TABLES}
        for table, ch in body["changes"].items():
            merged[table]["updated"].extend(ch["updated"])
            merged[table]["deleted"].extend(ch["deleted"])
        self._apply(merged, body.get("experimentalStrategy"))
        return body["timestamp"]


def test_an_edit_of_a_pulled_page_records_no_overwrite_on_the_next_page(env, device, client, db):
    b = device(ANA, "b")
    a = OnePagePerSync(client, b.token, "a-one-page")
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
