"""Convergence property: devices edit, delete and sync offline in random order; after everyone
syncs, every device holds what the server holds, and every server value a device overwrote
without having seen it is kept in a conflict record."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select

from store.models import Conflict
from tests.conftest import ANA, BEN
from tests.sync.device import Device, SyncFailed
from tests.sync_env import now_ms

TEXT = st.sampled_from(["A", "B", "C", "清洁", "脏", ""])


def make_machine(client, tokens, env, reader):
    class Devices(RuleBasedStateMachine):
        """Three devices of two inspectors sharing the N-HOTEL site."""

        @initialize()
        def start(self):
            reader.wipe()  # each example starts from the same server state
            self.devices = [
                Device(client, tokens[ANA], "ana-1"),
                Device(client, tokens[ANA], "ana-2"),
                Device(client, tokens[BEN], "ben-1"),
            ]
            self.owner = {0: ANA, 1: ANA, 2: BEN}
            for d in self.devices:
                d.sync()
            # (device index, table, id, column) -> value the device had before its own edit
            self.seen: dict[tuple[int, str, str, str], object] = {}

        def _mine(self, i, table):
            dev = self.devices[i]
            ids = []
            for rid, rec in dev.live(table).items():
                insp = (
                    rec
                    if table == "inspections"
                    else dev.get("inspections", rec.get("inspection_id"))
                )
                if (
                    insp
                    and insp.get("status") == "in_progress"
                    and insp.get("inspector_id") in (None, self._user_id(i))
                ):
                    ids.append(rid)
            return sorted(ids)

        def _user_id(self, i):
            return env["users"][self.owner[i]]

        @rule(i=st.integers(0, 2), area=TEXT)
        def create_inspection(self, i, area):
            dev = self.devices[i]
            iid = dev.create(
                "inspections",
                template_id=env["template"],
                site_id=env["sites"]["N-HOTEL"],
                status="in_progress",
                started_at=now_ms(),
                area=area,
            )
            dev.create("responses", inspection_id=iid, item_key="clean", value='"yes"')

        @rule(
            i=st.integers(0, 2),
            k=st.integers(0, 999),
            col=st.sampled_from(["area", "notes"]),
            value=TEXT,
        )
        def edit_inspection(self, i, k, col, value):
            ids = self._mine(i, "inspections")
            if not ids:
                return
            rid = ids[k % len(ids)]
            dev = self.devices[i]
            self.seen.setdefault((i, "inspections", rid, col), dev.get("inspections", rid).get(col))
            dev.update("inspections", rid, **{col: value})

        @rule(
            i=st.integers(0, 2), k=st.integers(0, 999), value=st.sampled_from(["yes", "no", "na"])
        )
        def edit_answer(self, i, k, value):
            ids = self._mine(i, "responses")
            if not ids:
                return
            rid = ids[k % len(ids)]
            dev = self.devices[i]
            self.seen.setdefault(
                (i, "responses", rid, "value"), dev.get("responses", rid).get("value")
            )
            dev.update("responses", rid, value=json.dumps(value))

        @rule(i=st.integers(0, 2), k=st.integers(0, 999))
        def delete_inspection(self, i, k):
            ids = self._mine(i, "inspections")
            if not ids:
                return
            rid = ids[k % len(ids)]
            dev = self.devices[i]
            for resp_id, rec in list(dev.live("responses").items()):
                if rec["inspection_id"] == rid:
                    dev.delete("responses", resp_id)
            dev.delete("inspections", rid)

        @rule(i=st.integers(0, 2))
        def sync(self, i):
            self._sync(i)

        def _sync(self, i):
            dev = self.devices[i]
            for _attempt in range(3):
                pending = {
                    (t, rid, c): rec["raw"].get(c)
                    for t in ("inspections", "responses")
                    for rid, rec in dev.db[t].items()
                    if rec["_status"] == "updated"
                    for c in rec["_changed"]
                    if c != "base_rev"
                }
                before = self._server_values(pending)
                try:
                    dev.sync()
                except SyncFailed as exc:
                    assert exc.status == 409, exc.body
                    continue
                self._check_overwrites(i, pending, before)
                for key in [k for k in self.seen if k[0] == i]:
                    del self.seen[key]
                return
            raise AssertionError("sync did not settle after 3 attempts")

        def _server_values(self, pending):
            out = {}
            for table, rid, col in pending:
                row = reader(table, rid)
                out[(table, rid, col)] = None if row is None else row.get(col)
            return out

        def _check_overwrites(self, i, pending, before):
            for (table, rid, col), value in pending.items():
                server = before[(table, rid, col)]
                seen = self.seen.get((i, table, rid, col), server)
                if server is None or server in (seen, value):
                    continue
                # The device replaced a value it never saw: it must be kept as a conflict.
                found = reader.conflicts(rid, col)
                assert server in found, (table, rid, col, server, found)

        @precondition(lambda self: hasattr(self, "devices"))
        @invariant()
        def scores_are_server_owned(self):
            for dev in self.devices:
                for rec in dev.live("inspections").values():
                    assert rec.get("score") in (None, 0, 0.0, 1, 1.0) or rec.get("score") >= 0

        def teardown(self):
            if not hasattr(self, "devices"):
                return
            for _round in range(3):
                for i in range(3):
                    self._sync(i)
            fresh = Device(client, tokens[ANA], "observer")
            fresh.sync()
            truth = _data(fresh.snapshot())
            for dev in self.devices:
                snap = _data(dev.snapshot())
                for table in ("inspections", "responses"):
                    assert snap[table] == truth[table], (dev.device_id, table)

    return Devices


def _data(snapshot):
    """The records as data: base_rev is the device's own bookkeeping, never sent by pulls."""
    return {
        t: {rid: {k: v for k, v in rec.items() if k != "base_rev"} for rid, rec in recs.items()}
        for t, recs in snapshot.items()
    }


def test_devices_converge_and_overwrites_are_recorded(app, env, api, db):
    tokens = {email: api.login(email)["access_token"] for email in (ANA, BEN)}

    class Reader:
        def __call__(self, table, rid):
            from sync.tables import TABLES

            spec = TABLES[table]
            row = db.execute(select(spec.table).where(spec.table.c.id == rid)).mappings().first()
            return None if row is None or row["deleted_at"] is not None else dict(row)

        def wipe(self):
            from sqlalchemy import delete

            from store.models import Action, Attachment, DeviceState, Inspection, Response

            for model in (Conflict, Attachment, Action, Response, Inspection, DeviceState):
                db.execute(delete(model))

        def conflicts(self, rid, col):
            rows = db.execute(select(Conflict).where(Conflict.record_id == rid)).scalars()
            return [c.server_value for c in rows if c.column == col]

    from hypothesis.stateful import run_state_machine_as_test

    machine = make_machine(app.test_client(), tokens, env, Reader())
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
