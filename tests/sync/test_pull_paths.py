"""PostgreSQL builds pull pages in one statement; it must give exactly the generic path's page."""

from __future__ import annotations

import orjson
import pytest

from api import db as api_db
from store.models import User
from sync import pull, revs
from sync.scope import scope_for
from tests.conftest import ANA, HQ_EMAIL, NORTH, TEST_DATABASE_URL
from tests.sync_env import answer, new_inspection

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="the one-statement page is PostgreSQL's; SQLite always takes the generic path",
)


def _page(session, scope, builder, low, top, first, limit):
    page = pull.Page()
    end, more = builder(session, scope, page, low, top, first, limit)
    changes = orjson.loads(orjson.dumps(page.changes))
    for table in changes.values():
        table["updated"].sort(key=lambda r: r["id"])
        table["deleted"].sort()
    return changes, end, more


def test_postgres_page_equals_the_generic_page(app, env, device):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, latitude=31.2304, notes="第一次 «quoted» \\ \"x\"")
    answer(phone, iid, "clean", "no", note="Grease\nunder the sink")
    answer(phone, iid, "fridge", 9.5)
    gone = new_inspection(phone, env, site="N-CANTEEN")
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    phone.sync()
    phone.delete("inspections", gone)
    phone.sync()
    with app.app_context():
        session = api_db.session()
        top = revs.current_rev(session)
        for email in (ANA, NORTH, HQ_EMAIL):
            user = session.query(User).filter_by(email=email).one()
            scope = scope_for(session, user)
            for low, first in ((-1, True), (3, False), (top - 6, False)):
                for limit in (1, 5, 1000):
                    fast = _page(session, scope, pull._page_pg, low, top, first, limit)
                    slow = _page(session, scope, pull._page_generic, low, top, first, limit)
                    assert fast == slow, (email, low, limit)
        session.rollback()
