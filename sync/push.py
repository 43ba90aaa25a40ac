"""Push: merge a device's offline changes into the store in one all-or-nothing transaction."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable
from itertools import compress, repeat
from operator import itemgetter, ne
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.changeset import ChangeSet, ConflictNote, Row
from store.db import one_of
from store.enums import INSPECTOR
from store.errors import Conflict, Invalid
from store.models import Blob
from store.signature_limits import blob_problem
from store.types import utcnow
from sync import writer
from sync.revs import resolve_col_rev
from sync.scope import Scope
from sync.tables import PLACEMENT, TABLES, UPLOADED_CONTENT, TableSpec
from sync.validate import REQUIRED, validate_push

# Apply order: parents first, so children can find their inspection (and evidence photos
# their corrective action) in the plan.
ORDER = ("inspections", "responses", "actions", "attachments")
# The tables whose records belong to an inspection.
_CHILDREN = ("responses", "attachments", "actions")


class Rules(Protocol):
    """Domain rules applied to the plan before it is written (lifecycle, scores, actions)."""

    def apply(self, session: Session, cs: ChangeSet) -> None:
        """Amend the plan: refuse locked changes, compute server-owned columns, open actions."""


class StalePush(Conflict):
    """Records changed on the server after the device's last pull."""

    reason = "stale_push"


class AssumedNewExists(Exception):
    """A record taken as new without a lookup is on the server after all: the caller rolls
    back and pushes again with assume_new off."""


class _Unsure(Exception):
    """A record taken as new was not planned as a new row: plan again with lookups."""


# What an upload that came before its record learnt about the bytes.
_UPLOAD_LEARNT = (
    "uploaded",
    "uploaded_by",
    "width",
    "height",
    "exif_captured_at",
    "exif_latitude",
    "exif_longitude",
)


def to_db(kind: str, value: Any) -> Any:
    """Wire value -> stored value of a column of this kind ('' ids mean null; ms numbers
    become ints)."""
    if value is None:
        return None
    if kind == "id":
        return None if value == "" else value
    if kind == "ms" or kind == "int":
        return int(value)
    return value


def _converted(spec: TableSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A table's writable columns that to_db converts: (ids, numbers)."""
    kinds = {c: spec.columns[c].kind for c in sorted(spec.writable)}
    return (
        tuple(c for c, k in kinds.items() if k == "id"),
        tuple(c for c, k in kinds.items() if k in ("ms", "int")),
    )


# Per table, the writable columns whose values a created record's row converts.
_CONVERTED = {name: _converted(spec) for name, spec in TABLES.items()}
_WRITABLE = {name: tuple(sorted(spec.writable)) for name, spec in TABLES.items()}
# Runs an iterator to its end, keeping nothing: each step of new_rows is a map over the rows.
_consume = deque(maxlen=0).extend
# What a new record's place depends on (new_place): the parents it names.
_PLACE_KEY = ("inspection_id", "site_id", "action_id")
# How a refusal names a record's parent, per table.
_PARENT_NAMES = {"inspections": "inspection", "actions": "corrective action"}
# The tables whose records' answer (response_id) is judged here: an action's link is judged
# by the rules (plan_rules._action_links), which keep the action without a link it may not have.
_LINKED = ("attachments",)
# Stands in for an answer a push does not plan: its inspection is no record's (not even none).
_UNPLANNED: Row = {"inspection_id": object()}
# Answers and actions created under an inspection created in the same push are taken as new
# without a lookup on SQLite (for a big push's thousands, 2 to 3 ms of about 40): their ids are a
# device's fresh random ids. The insert's primary key checks the guess, so it holds only when
# each of them is planned as a new row; a push refused, stale, or refusing one of them is planned
# again with every record looked up (push), and a clash at the insert is AssumedNewExists.
# Photos are always looked up: their bytes may have arrived before their record.
_ASSUMED_NEW = frozenset({"responses", "actions"})


def answer_problem(name: str, inspection_id: str | None, answer: Row | None) -> tuple | None:
    """Why a photo or action of this inspection may not name this answer: (detail, kind)."""
    if answer is None:
        return "its answer is not on the server", "invalid_parent"
    if answer.get("inspection_id") != inspection_id:
        return "its answer belongs to another inspection", "invalid_parent"
    # A photo of a deleted answer would have gone with it; an action outlives its answer, as
    # stored ones do.
    if name == "attachments" and answer.get("deleted_at") is not None:
        return "its answer was deleted on the server", "deleted_record"
    return None


def adopt_pending(
    cs: ChangeSet, name: str, pending: Row, row: Row, owner: str | None, unsigned: Any
) -> None:
    """Plan a created record over the pending one its bytes made when they arrived first."""
    # Keep what the upload learnt, take the rest; but only for the uploader's own record
    # describing those very bytes, or anyone who guessed the id could claim evidence they
    # never sent.
    after = cs.add_context(name, pending)
    same = pending.get("uploaded_by") == owner and all(
        pending.get(c) == row.get(c) for c in UPLOADED_CONTENT
    )
    keep = {k: pending[k] if same else None for k in _UPLOAD_LEARNT}
    keep["uploaded"] = bool(same and pending["uploaded"])
    if row.get("kind") == "signature" and unsigned:
        # Bytes processed as the photo the upload guessed serve a signature only if they pass
        # its checks (`unsigned` says why not): else the record waits for bytes, and uploading
        # them again says why they are refused (the upload path's 422).
        keep.update(dict.fromkeys(_UPLOAD_LEARNT[2:]), uploaded=False)
    after.update(row, pending_upload=False, **keep)
    cs.device_changed.setdefault(name, {})[row["id"]] = set(row)


def _changed_columns(spec_name: str, rec: dict[str, Any], is_update: bool) -> list[str]:
    """Writable columns this record changes: `_changed` when present, else all it carries."""
    spec = TABLES[spec_name]
    raw = rec.get("_changed") if is_update else None
    if raw:
        names = [c.strip() for c in raw.split(",")]
        return [c for c in names if c in spec.writable and c in rec]
    return [c for c in rec if c in spec.writable]


def tombstone(session: Session, cs: ChangeSet, name: str, cur: Row) -> None:
    """Plan the deletion of a record and of its live children (stored, or planned in this
    change set), as a device's change: the rules refuse it where they would a push's."""
    after = cs.add_context(name, cur)
    after["deleted_at"] = utcnow()
    changed = cs.device_changed.setdefault(name, {})
    changed[cur["id"]] = changed.get(cur["id"], frozenset()) | {"deleted_at"}
    for child, fk in TABLES[name].children:
        stored = writer.load_rows(session, TABLES[child].table, fk, [cur["id"]])
        planned = [r for r in cs.after.get(child, {}).values() if r.get(fk) == cur["id"]]
        # A child reached through two parents (inspection and response) is planned once.
        rows = {r["id"]: r for r in stored} | {r["id"]: r for r in planned}
        for row in rows.values():
            if cs.after.get(child, {}).get(row["id"], row).get("deleted_at") is None:
                tombstone(session, cs, child, row)


class _Push:
    """The state of one push while it is planned."""

    def __init__(
        self, session: Session, scope: Scope, cs: ChangeSet, assume_new: bool = False
    ) -> None:
        self.session = session
        # Whether created children of created inspections go unlooked-up (_ASSUMED_NEW), and
        # the ids that did, per table.
        self.assume_new = assume_new
        self.assumed: dict[str, list[str]] = {}
        self.scope = scope
        self.cs = cs
        self.existing: dict[str, dict[str, Row]] = {}
        self.base_revs: dict[tuple[str, str], int] = {}
        self.parent_actions: dict[str, Row] = {}
        self.pull_start = -1
        self.pulled: int | None = None
        # new_place's answers, per table and parents a new record names (_PLACE_KEY).
        self.places: dict[tuple, tuple[str | None, tuple | None]] = {}
        # The records this push refused while it was planned, per (table, id): the children
        # naming one of them are refused with it.
        self.refused: dict[tuple[str, str], ConflictNote] = {}
        # Stored answers named by the pushed actions and photos, not pushed (_named_answers);
        # and link's verdicts, per table, answer and inspection.
        self.answers: dict[str, Row] = {}
        self.linked: dict[tuple, tuple[str, str] | None] = {}
        # Why the stored bytes of uploaded attachments the push makes signatures cannot be
        # one, per sha256 (_signature_blobs; None when they can).
        self.unsigned: dict[str, tuple | None] = {}

    # --- loading -----------------------------------------------------------------------

    def load(self, changes: dict[str, dict[str, list]]) -> None:
        lock = self.session.get_bind().dialect.name == "postgresql"
        listed = {
            name: [r["id"] for r in changes[name]["created"] + changes[name]["updated"]]
            + list(changes[name]["deleted"])
            for name in ORDER
            if name in changes
        }
        # The inspections first, locked: those pushed and the parents of every child pushed.
        # The rules judge a child by its inspection's status, so a completion committing
        # meanwhile must wait for this push, or this push for it. Then the children, table by
        # table, whatever order the body lists them in. Every other writer (review, conflict
        # resolution) takes rows in this order too, so none deadlock.
        pushed = set(listed.get("inspections", ()))
        parents, documented = self._parents(changes)
        table = TABLES["inspections"].table
        rows = writer.load_rows(self.session, table, "id", sorted(pushed | parents), lock=lock)
        self.existing["inspections"] = {r["id"]: r for r in rows if r["id"] in pushed}
        for row in rows:
            if row["id"] not in pushed:
                self.cs.add_context("inspections", row)
        fresh: set[str] = set()
        if self.assume_new and "inspections" in changes:
            fresh = {r["id"] for r in changes["inspections"]["created"]}
            fresh -= self.existing["inspections"].keys()
        for name in ORDER[1:]:
            ids = listed.get(name, [])
            if fresh and name in _ASSUMED_NEW and name in changes:
                created = changes[name]["created"]
                ids = [r["id"] for r in created if r.get("inspection_id") not in fresh]
                self.assumed[name] = [r["id"] for r in created if r.get("inspection_id") in fresh]
                ids += listed[name][len(created) :]
            # With the actions, those the pushed photos document: a resolved action's photos
            # are locked with it, so a resolution committing meanwhile must wait for this
            # push, or this push for it.
            extra = documented - set(ids) if name == "actions" else set()
            if not ids and not extra:
                continue
            rows = writer.load_rows(
                self.session, TABLES[name].table, "id", ids + sorted(extra), lock=lock
            )
            if name in listed:
                self.existing[name] = {r["id"]: r for r in rows if r["id"] not in extra}
            if extra:
                self.parent_actions = {r["id"]: r for r in rows if r["id"] in extra}
        # A stored child under another parent than it names that _parents did not look up (a
        # record "created" again under another parent, which placement then refuses; a
        # pending upload's record placed meanwhile): that parent joins the plan too, last.
        stored = [r for n in _CHILDREN for r in self.existing.get(n, {}).values()]
        late = {r.get("inspection_id") for r in stored} - pushed - parents - {None}
        for row in writer.load_rows(self.session, table, "id", sorted(late), lock=lock):
            self.cs.add_context("inspections", row)
        late = (
            {r.get("action_id") for r in self.existing.get("attachments", {}).values()}
            - set(listed.get("actions", ()))
            - documented
            - {None}
        )
        actions = TABLES["actions"].table
        for row in writer.load_rows(self.session, actions, "id", sorted(late), lock=lock):
            self.parent_actions[row["id"]] = row
        self.answers = self._named_answers(changes, set(listed.get("responses", ())))
        self.unsigned = self._signature_blobs(changes)

    def _signature_blobs(self, changes: dict[str, dict[str, list]]) -> dict[str, tuple | None]:
        """Whether the bytes of the uploaded attachments a push makes signatures (created over
        bytes that came first, or relabelled) can serve one: processed as a photo, they passed
        no signature check (blob_problem says why not). One query per 5000 hashes."""
        lists = changes.get("attachments")
        stored = self.existing.get("attachments", {})
        if not lists or not stored:
            return {}
        hashes = {
            row["sha256"]
            for rec in lists["created"] + lists["updated"]
            if rec.get("kind") == "signature"
            and (row := stored.get(rec["id"])) is not None
            and row.get("uploaded")
            and row.get("kind") != "signature"
        }
        ids = sorted(hashes - {None})
        gone = ("not_uploaded", "The server holds no processed bytes for this attachment.")
        found: dict[str, tuple | None] = dict.fromkeys(ids, gone)
        stmt = select(Blob.sha256, Blob.mime, Blob.width, Blob.height)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            for row in self.session.execute(stmt.where(one_of(self.session, Blob.sha256, chunk))):
                found[row.sha256] = blob_problem(row.mime, row.width, row.height)
        return found

    def _named_answers(self, changes: dict[str, dict[str, list]], pushed: set[str]) -> dict:
        """Stored answers the pushed actions and photos newly name and the push does not carry."""
        # Unlocked: an answer a record may name is in the record's inspection, locked above, and
        # no answer moves. One query per 5000, of the columns link reads.
        named: set[str] = set()
        for name in _LINKED:
            lists = changes.get(name)
            if not lists:
                continue
            named.update(map(dict.get, lists["created"], repeat("response_id")))
            stored = self.existing.get(name, {})
            # An update naming the answer its record has is no news: a photo edited again.
            named.update(
                rec.get("response_id")
                for rec in lists["updated"]
                if rec.get("response_id") != (stored.get(rec["id"]) or {}).get("response_id")
            )
        ids = sorted(named - pushed - {None, ""})
        table = TABLES["responses"].table
        stmt = select(table.c.id, table.c.inspection_id, table.c.site_id, table.c.deleted_at)
        out: dict[str, Row] = {}
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            for row in self.session.execute(stmt.where(one_of(self.session, table.c.id, chunk))):
                out[row.id] = dict(row._mapping)
        return out

    def _parents(self, changes: dict[str, dict[str, list]]) -> tuple[set[str], set[str]]:
        """The inspections the pushed child records belong to, and the actions the pushed
        photos document: as the records name them, and as stored for updates and deletions
        (a deletion carries only an id; an update may name another parent than its stored
        one, which must be locked before the record, like the others, not after)."""
        inspections: set[str] = set()
        actions: set[str] = set()
        for name in _CHILDREN:
            lists = changes.get(name)
            if not lists:
                continue
            keys = ("inspection_id", "action_id") if name == "attachments" else ("inspection_id",)
            for records in (lists["created"], lists["updated"]):
                # A pass per column, not a call per record: a big push's thousands of answers
                # name a few dozen inspections.
                inspections.update(map(dict.get, records, repeat("inspection_id")))
                if name == "attachments":
                    actions.update(map(dict.get, records, repeat("action_id")))
            # Created records are not looked up: they are new (a big push's thousands), or a
            # retry naming the parent they were stored under.
            ids = list(lists["deleted"]) + [rec["id"] for rec in lists["updated"]]
            table = TABLES[name].table
            stmt = select(*(table.c[k] for k in keys))
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                for row in self.session.execute(
                    stmt.where(one_of(self.session, table.c.id, chunk))
                ):
                    inspections.add(row[0])
                    actions.add(row[-1] if name == "attachments" else None)
        return inspections - {None}, actions - {None}

    def stale(self, changes: dict[str, dict[str, list]], last: int | None) -> dict[str, list]:
        """Records in scope changed on the server after the device's last pull."""
        cutoff = -1 if last is None else last
        sees = self.scope.sees_site
        out: dict[str, list] = {}
        for name, rows in self.existing.items():
            if name not in changes:
                continue
            # A record outside the scope is refused whatever its rev (an out_of_scope conflict
            # keeps the device's values). Listing it would tell who may not see it that it
            # exists, and send a device taken off its site to pull the site's deletions, its
            # edits with them.
            ids = sorted(
                rid
                for rid, row in rows.items()
                if row["server_rev"] > cutoff
                and not row.get("pending_upload")
                and sees(row.get("site_id"))
            )
            if ids:
                out[name] = ids
        return out

    # --- scope --------------------------------------------------------------------------

    def inspection(self, inspection_id: str | None) -> Row | None:
        if not inspection_id:
            return None
        return self.cs.after.get("inspections", {}).get(inspection_id) or self.existing.get(
            "inspections", {}
        ).get(inspection_id)

    def refuse(
        self,
        name: str,
        rid: str,
        rec: Any,
        detail: str,
        site_id: str | None = None,
        inspection_id: str | None = None,
        kind: str = "out_of_scope",
    ) -> None:
        """Keep a record the server will not take as it is, as a conflict holding it."""
        if inspection_id and site_id and self.scope.sees_site(site_id):
            # Its inspection shows the conflict (has_conflicts), when the pusher sees it: a
            # refusal never writes where the pusher may not.
            self.cs.recompute.add(inspection_id)
            stored = self.existing.get("inspections", {}).get(inspection_id)
            if stored is not None and inspection_id not in self.cs.after.get("inspections", {}):
                # The refused change was to the inspection row itself: the rules flag only
                # the inspections in the plan, so it joins as it is stored.
                self.cs.add_context("inspections", stored)
        note = ConflictNote(
            kind=kind,
            table=name,
            record_id=rid,
            detail=detail,
            inspection_id=inspection_id,
            site_id=site_id,
            device_value=rec,
        )
        self.cs.conflicts.append(note)
        self.refused[(name, rid)] = note

    def owned(self, name: str, insp: Row | None) -> bool:
        """Inspectors edit only their own inspections (or unclaimed ones), with their answers
        and photos; a corrective action is its site's, theirs to change wherever it was raised
        (not to delete: may_delete)."""
        # domain.md: inspectors may change the actions of their sites (REST lets them,
        # action_service); only inspections are editable by their own inspector alone.
        if self.scope.role != INSPECTOR or insp is None or name == "actions":
            return True
        return insp.get("inspector_id") in (None, self.scope.user_id)

    def may_delete(self, name: str, cur: Row, insp: Row | None) -> bool:
        """Whether this user may delete this record: as owned, but an inspector deletes only
        the actions of their own inspections, or those they raised at a site alone."""
        # An action's deletion takes its photos (tombstone): a colleague changing an action may
        # not take the evidence of someone else's inspection with it. REST deletes no action.
        if name != "actions" or self.scope.role != INSPECTOR:
            return self.owned(name, insp)
        if insp is None:
            return cur.get("created_by") == self.scope.user_id
        return insp.get("inspector_id") in (None, self.scope.user_id)

    def site_of(self, name: str, rec: dict[str, Any], cur: Row | None) -> tuple[str | None, str]:
        """The site a record belongs to, and what to say if it cannot be placed."""
        if name == "inspections":
            return (cur or {}).get("site_id") or rec.get("site_id"), "no site"
        if name == "actions":
            if cur is not None:
                return cur.get("site_id"), "no site"
            # An inspection's action is at the inspection's site, whatever site it names.
            insp = self.inspection(rec.get("inspection_id"))
            return (insp["site_id"] if insp else rec.get("site_id")), "no site or inspection"
        insp = self.inspection((cur or {}).get("inspection_id") or rec.get("inspection_id"))
        action_id = (cur or {}).get("action_id") or rec.get("action_id")
        if name == "attachments" and insp is None and action_id:
            return (self.action(action_id) or {}).get("site_id"), "unknown action"
        return (insp or {}).get("site_id"), "unknown inspection"

    def action(self, action_id: str | None) -> Row | None:
        """A corrective action as this push leaves it (or as stored), if known."""
        if not action_id:
            return None
        return (
            self.cs.after.get("actions", {}).get(action_id)
            or self.parent_actions.get(action_id)
            or self.existing.get("actions", {}).get(action_id)
        )

    def foreign_action(self, name: str, rec: dict[str, Any], site: str) -> bool:
        """Whether a photo documents an action at another site than its own: a link across
        sites would let the action's deletion take a photo its deleter cannot see."""
        action = self.action(rec.get("action_id")) if name == "attachments" else None
        return action is not None and action.get("site_id") != site

    def missing_parent(
        self, name: str, rec: dict[str, Any]
    ) -> tuple[str | None, tuple[str, str]] | None:
        """The refusal of a new record whose parent is neither stored nor planned: (site, why)."""
        # A child under an unknown id (a client's bug, or a parent purged long ago) would join
        # whatever record someone creates with that id later, at any site. A parent this push
        # refused passes its refusal, and its site, on.
        named = [] if name == "inspections" else [("inspections", rec.get("inspection_id"))]
        if name == "attachments":
            named.append(("actions", rec.get("action_id")))
        for table, parent_id in named:
            if not parent_id:
                continue
            found = self.inspection(parent_id) if table == "inspections" else self.action(parent_id)
            if found is not None:
                continue
            what = _PARENT_NAMES[table]
            note = self.refused.get((table, parent_id))
            if note is not None:
                return note.site_id, (f"its {what} was refused: {note.detail}", note.kind)
            site, _ = self.site_of(name, rec, None)
            return site, (f"its {what} is not on the server", "invalid_parent")
        return None

    def deleted_parent(self, name: str, rec: dict[str, Any]) -> str | None:
        """Why a new record cannot join its parent (deleted on the server), if it cannot."""
        insp = None if name == "inspections" else self.inspection(rec.get("inspection_id"))
        if insp is not None and insp.get("deleted_at") is not None:
            return "its inspection was deleted on the server"
        action_id = rec.get("action_id") if name == "attachments" else None
        action = action_id and (
            self.cs.after.get("actions", {}).get(action_id) or self.parent_actions.get(action_id)
        )
        if action and action.get("deleted_at") is not None:
            return "its corrective action was deleted on the server"
        return None

    def answer(self, response_id: str) -> Row | None:
        """An answer as this push leaves it (or as stored), if known."""
        return (
            self.cs.after.get("responses", {}).get(response_id)
            or self.existing.get("responses", {}).get(response_id)
            or self.answers.get(response_id)
        )

    def link(self, name: str, response_id: str, inspection_id: str | None) -> tuple | None:
        """Why a photo or action of this inspection may not name this answer: (detail, kind)."""
        # Once per answer and inspection: many photos of a push name the same answers.
        key = (name, response_id, inspection_id)
        if key in self.linked:
            return self.linked[key]
        answer = self.answer(response_id)
        note = self.refused.get(("responses", response_id))
        if answer is None and note is not None:
            found: tuple | None = (f"its answer was refused: {note.detail}", note.kind)
        elif answer is not None and not self.scope.sees_site(answer.get("site_id")):
            # Checked first: what else is true of an answer out of scope is not for the pusher.
            found = ("its answer is outside your scope", "out_of_scope")
        else:
            found = answer_problem(name, inspection_id, answer)
        self.linked[key] = found
        return found

    def links(self, name: str, records: list[dict[str, Any]]) -> list | None:
        """Per record, why it may not name its answer (link); None when every one may."""
        # A pass per column at C speed: an answer planned in this push under the inspection its
        # record names is fine (placed in scope, live), and link judges the others once each
        # (a big push's photos mostly name answers it carries).
        if name not in _LINKED:
            return None
        answers = list(map(dict.get, records, repeat("response_id")))
        if not any(answers):
            return None
        inspections = list(map(dict.get, records, repeat("inspection_id")))
        planned = self.cs.after.get("responses", {})
        found = map(planned.get, answers, repeat(_UNPLANNED))
        owners = map(dict.get, found, repeat("inspection_id"))
        pairs = zip(answers, inspections, strict=True)
        doubtful = set(compress(pairs, map(ne, owners, inspections)))
        judged = {pair: self.link(name, *pair) for pair in doubtful if pair[0]}
        if not any(judged.values()):
            return None
        return [judged.get(pair) for pair in zip(answers, inspections, strict=True)]

    def keep_linked(self, name: str, rid: str, rec: dict, cur: Row, cols: list[str]) -> list[str]:
        """Refuse a move to an answer not of the record's inspection; returns the columns left."""
        # Moving to another answer of its own inspection is fine: a photo filed under the wrong
        # item. The refusal is kept as a conflict, as keep_in_place keeps its own.
        value = to_db("id", rec.get("response_id")) if "response_id" in cols else None
        if not value or value == cur.get("response_id"):
            return cols
        refusal = self.link(name, value, cur.get("inspection_id"))
        if refusal is None:
            return cols
        self.cs.conflicts.append(
            ConflictNote(
                kind="out_of_scope" if refusal[1] == "out_of_scope" else "invalid_value",
                table=name,
                record_id=rid,
                column="response_id",
                inspection_id=cur.get("inspection_id"),
                site_id=cur.get("site_id"),
                server_value=cur.get("response_id"),
                device_value=value,
                detail=f"{refusal[0]}; the server kept the answer it had",
            )
        )
        self.cs.bump(name, rid)  # the device's copy goes back on its next pull
        return [c for c in cols if c != "response_id"]

    def keep_kind(self, rid: str, rec: dict, cur: Row, cols: list[str]) -> list[str]:
        """Refuse relabelling an uploaded attachment a signature its verified bytes cannot be
        (_signature_blobs), kept as a conflict as keep_in_place keeps its content; returns the
        columns left."""
        if not (rec.get("kind") == "signature" and cur.get("uploaded")):
            return cols
        problem = self.unsigned.get(cur.get("sha256") or "")
        if cur.get("kind") == "signature" or problem is None:
            return cols
        self.cs.conflicts.append(
            ConflictNote(
                kind="invalid_value",
                table="attachments",
                record_id=rid,
                column="kind",
                inspection_id=cur.get("inspection_id"),
                site_id=cur.get("site_id"),
                server_value=cur.get("kind"),
                device_value="signature",
                detail=f"{problem[1]} The uploaded bytes are verified and kept as a "
                f"{cur.get('kind')}; a signature is a new attachment",
            )
        )
        self.cs.bump("attachments", rid)  # the device's copy goes back on its next pull
        return [c for c in cols if c != "kind"]

    def keep_in_place(self, name: str, rid: str, rec: dict, cur: Row, cols: list[str]) -> list[str]:
        """Refuse changes of what a record is fixed to, kept as conflicts: its place
        (PLACEMENT; a move somewhere the user may not write is out of scope) and, once its
        bytes are verified, an attachment's content. Returns the columns left to apply."""
        spec = TABLES[name]
        fixed = PLACEMENT.get(name, ())
        if name == "attachments" and cur.get("uploaded"):
            fixed += UPLOADED_CONTENT
        held = {c: to_db(spec.columns[c].kind, rec[c]) for c in cols if c in fixed}
        held = {c: v for c, v in held.items() if v != cur.get(c)}
        if not held:
            return cols
        moved = {c: v for c, v in held.items() if c in PLACEMENT.get(name, ())}
        foreign = bool(moved) and self._foreign(name, {**cur, **moved}, moved)
        for col, value in held.items():
            content = col in UPLOADED_CONTENT and col not in moved
            self.cs.conflicts.append(
                ConflictNote(
                    kind="out_of_scope" if foreign and not content else "invalid_value",
                    table=name,
                    record_id=rid,
                    column=col,
                    inspection_id=rid if name == "inspections" else cur.get("inspection_id"),
                    site_id=cur.get("site_id"),
                    server_value=cur.get(col),
                    device_value=value,
                    detail="the bytes of this photo or signature are verified and kept; "
                    "a new picture is a new attachment"
                    if content
                    else "a record stays at the site and in the inspection it was created in; "
                    "the server kept its place",
                )
            )
        self.cs.bump(name, rid)  # the device's copy goes back on its next pull
        return [c for c in cols if c not in held]

    def _foreign(self, name: str, target: Row, moved: dict[str, Any]) -> bool:
        """Whether a record placed as `target` would be outside what the user may write."""
        if name == "actions":
            insp = self.inspection(target.get("inspection_id"))
            site = moved.get("site_id") or (insp or target).get("site_id")
        else:
            site, _ = self.site_of(name, target, target)
        parent = target if name == "inspections" else self.inspection(target.get("inspection_id"))
        return not site or not self.scope.sees_site(site) or not self.owned(name, parent)

    # --- planning -----------------------------------------------------------------------

    def new_place(self, name: str, rec: dict[str, Any]) -> tuple[str | None, tuple | None]:
        """A new record's site, and (detail, kind) if it may not be created there. It depends
        only on the parents the record names, which planning does not move: worked out once
        per parent, not once per record of a big push."""
        key = (name, *map(rec.get, _PLACE_KEY))
        found = self.places.get(key)
        if found is None:
            found = self.places[key] = self._new_place(name, rec)
        return found

    def _new_place(self, name: str, rec: dict[str, Any]) -> tuple[str | None, tuple | None]:
        missing = self.missing_parent(name, rec)
        if missing is not None:
            return missing
        site, why = self.site_of(name, rec, None)
        if not site:
            return site, (f"outside your scope ({why})", "out_of_scope")
        if not self.scope.sees_site(site):
            return site, ("its site is outside your scope", "out_of_scope")
        if name != "inspections" and not self.owned(
            name, self.inspection(rec.get("inspection_id"))
        ):
            return site, ("the inspection belongs to another inspector", "out_of_scope")
        if self.foreign_action(name, rec, site):
            return site, ("its corrective action is at another site", "out_of_scope")
        gone = self.deleted_parent(name, rec)
        if gone:
            return site, (f"created on the device after {gone}", "deleted_record")
        return site, None

    def upsert(self, name: str, rec: dict[str, Any], is_update: bool) -> None:
        rid = rec["id"]
        cur = self.existing.get(name, {}).get(rid)
        # A record whose bytes came first is new all the same: the upload placed it nowhere,
        # so it is judged where it names, as any new record is.
        if cur is None or cur.get("pending_upload"):
            site, refusal = self.new_place(name, rec)
            if refusal is None and rec.get("response_id"):
                refusal = self.link(name, rec["response_id"], rec.get("inspection_id"))
                if refusal is not None and refusal[1] == "deleted_record":
                    refusal = (f"created on the device after {refusal[0]}", refusal[1])
            insp_id = rid if name == "inspections" else rec.get("inspection_id")
            if refusal is not None:
                self.refuse(name, rid, rec, refusal[0], site, insp_id, kind=refusal[1])
            else:
                self.create(name, rec, site, cur)
            return
        site, why = self.site_of(name, rec, cur)
        insp_id = rid if name == "inspections" else cur.get("inspection_id")
        if not site or not self.scope.sees_site(site):
            self.refuse(
                name,
                rid,
                rec,
                f"outside your scope ({why})" if not site else "its site is outside your scope",
                site,
                insp_id,
            )
            return
        parent = cur if name == "inspections" else self.inspection(insp_id)
        if not self.owned(name, parent):
            self.refuse(
                name, rid, rec, "the inspection belongs to another inspector", site, insp_id
            )
            return
        spec = TABLES[name]
        if cur.get("deleted_at") is not None:
            detail = "changed on the device after it was deleted on the server"
            self.refuse(name, rid, rec, detail, site, insp_id, kind="deleted_record")
            return
        after = self.cs.add_context(name, cur)
        cols = self.keep_in_place(name, rid, rec, cur, _changed_columns(name, rec, is_update))
        if name in _LINKED:
            cols = self.keep_linked(name, rid, rec, cur, cols)
        if name == "attachments" and "kind" in cols:
            cols = self.keep_kind(rid, rec, cur, cols)
        by_id = self.cs.device_changed.setdefault(name, {})
        changed = by_id[rid] = set(by_id.get(rid, ()))
        for col in cols:
            value = to_db(spec.columns[col].kind, rec[col])
            if after.get(col) != value:
                after[col] = value
                changed.add(col)
        if any(
            c in rec and to_db(spec.columns[c].kind, rec[c]) != cur.get(c)
            for c in spec.server_owned
        ):
            self.cs.bump(name, rid)  # the device holds a stale server value: let it converge
        base = rec.get("base_rev")
        if isinstance(base, int | float) and not isinstance(base, bool):
            base = int(base)
            if self.pulled is not None and base > self.pulled:
                # No copy on the device is newer than its pulls reached: such a base_rev (a
                # clock time, say) is no rev, and would hide every concurrent edit. It counts
                # as none was sent.
                base = self.pull_start
            self.base_revs[(name, rid)] = base
        else:
            # No base_rev: the device knew the server as of its latest pull's starting cursor.
            self.base_revs[(name, rid)] = self.pull_start

    def create_all(self, name: str, records: list[dict[str, Any]]) -> None:
        """Plan a table's created records. When the server has none of them and each may be
        created where it names, all at once (a big push's thousands of new records pay no
        calls per record); otherwise one by one, upsert updating or wording the refusals."""
        if not records:
            return
        existing = self.existing.get(name, {})
        cs = self.cs
        parents = (map(dict.get, records, repeat(c)) for c in _PLACE_KEY)
        keys = list(zip(repeat(name), *parents))
        # Once per parent: the same for all who name it.
        firsts = dict(zip(keys, records, strict=True)).values()
        places = [self.new_place(name, rec) for rec in firsts]
        placed = map(self.places.__getitem__, keys)
        links = self.links(name, records)
        if links is not None:
            placed = ((s, why or link) for (s, why), link in zip(placed, links, strict=True))
        ids = list(map(itemgetter("id"), records))
        if (
            not existing.keys().isdisjoint(ids)
            or any(why is not None for _s, why in places)
            or links is not None
        ):
            for rec, (site, refusal) in zip(records, placed, strict=True):
                if rec["id"] in existing or refusal is not None:
                    self.upsert(name, rec, is_update=False)
                else:
                    self.create(name, rec, site, None)
            before, after = cs.before.get(name, {}), cs.after.get(name, {})
            if any(i not in after or before.get(i) is not None for i in self.assumed.get(name, ())):
                raise _Unsure  # one taken as new was refused: the insert never checks it
            return
        rows = self.new_rows(name, records, list(map(itemgetter(0), placed)))
        cs.before.setdefault(name, {}).update(dict.fromkeys(ids))
        cs.table(name).update(zip(ids, rows, strict=True))
        # Rows built together carry the same columns: they share one frozen set of them (a set
        # per row cost a big push a millisecond); whoever adds a column replaces a row's set.
        changed = frozenset(rows[0])
        cs.device_changed.setdefault(name, {}).update(zip(ids, repeat(changed)))

    def new_row(self, name: str, rec: dict[str, Any], site: str | None) -> Row:
        """The row one created record becomes (see new_rows)."""
        return self.new_rows(name, [rec], [site])[0]

    def new_rows(self, name: str, records: list[dict[str, Any]], sites: list) -> list[Row]:
        """The rows created records become: copies of the records holding their writable
        columns (to_db inlined, validation checked their types; every writable column is
        there, null when the record left it out) and what the server fills in. Each step is
        one pass over the records at C speed (copying a record costs a tenth of building a
        row from its columns)."""
        ids, numbers = _CONVERTED[name]
        rows = list(map(dict.copy, records))
        keys = set().union(*records)
        # The client's bookkeeping, and server-owned columns a record may carry, go.
        for key in keys - TABLES[name].writable - {"id"}:
            _consume(map(dict.pop, rows, repeat(key), repeat(None)))
        every = sum(map(len, records)) == len(keys) * len(records)  # all carry the same keys
        for col in _WRITABLE[name]:  # in one order: rows planned alike list their keys alike
            if not (every and col in keys):
                _consume(map(dict.setdefault, rows, repeat(col)))
        columns: dict[str, list] = {}

        def column(col: str) -> list:
            if col not in columns:
                columns[col] = list(map(itemgetter(col), rows))
            return columns[col]

        def put(col: str, values: Iterable) -> None:
            columns.pop(col, None)
            _consume(map(dict.__setitem__, rows, repeat(col), values))

        for col in ids:
            if "" in column(col):  # '' is a null id
                put(col, [v or None for v in column(col)])
        for col in numbers:
            if float in set(map(type, column(col))):
                # Validation let through whole numbers only; JSON may spell them 5.0.
                put(col, [int(v) if type(v) is float else v for v in column(col)])
        # Validation checked created records; an update of a record the server never had
        # is created here and must carry the same.
        required = {col: column(col) for col in REQUIRED.get(name, ())}
        if any(None in values for values in required.values()):
            at = min(values.index(None) for values in required.values() if None in values)
            missing = [c for c, values in required.items() if values[at] is None]
            where = f"{name}.{records[at]['id']}"
            raise Invalid(
                f"The push was refused, nothing applied: {where}.{missing[0]}: is required.",
                errors={f"{where}.{c}": ["is required"] for c in missing},
                reason="invalid_push",
            )
        if name == "inspections":
            put("inspector_id", repeat(self.scope.user_id))
            put("status", [v or "draft" for v in column("status")])
        elif name == "actions":
            put("site_id", sites)
            put("created_by", repeat(self.scope.user_id))
            for col, default in (
                ("status", "open"),
                ("priority", "medium"),
                ("title", "(untitled)"),
            ):
                put(col, [v or default for v in column(col)])
        else:
            put("site_id", sites)
        if name == "attachments":
            put("kind", [v or "photo" for v in column("kind")])
        return rows

    def create(self, name: str, rec: dict[str, Any], site: str, pending: Row | None) -> None:
        row = self.new_row(name, rec, site)
        if pending is not None:
            unsigned = self.unsigned.get(pending.get("sha256") or "")
            adopt_pending(self.cs, name, pending, row, self.scope.user_id, unsigned)
            return
        self.cs.add_new(name, row)
        self.cs.device_changed.setdefault(name, {})[rec["id"]] = set(row)

    def delete(self, name: str, rid: str) -> None:
        cur = self.existing.get(name, {}).get(rid)
        if cur is None or cur.get("deleted_at") is not None:
            return  # unknown or already deleted: nothing to do
        site, _ = self.site_of(name, {}, cur)
        insp_id = rid if name == "inspections" else cur.get("inspection_id")
        parent = cur if name == "inspections" else self.inspection(insp_id)
        if not site or not self.scope.sees_site(site):
            why = "deleting a record outside your scope"
        elif not self.may_delete(name, cur, parent):
            why = (
                "a corrective action is deleted only by its inspection's inspector "
                "(or, raised at the site alone, by whoever raised it)"
                if name == "actions"
                else "deleting a record outside your scope"
            )
        else:
            tombstone(self.session, self.cs, name, cur)
            return
        self.refuse(name, rid, {"id": rid, "_deleted": True}, why, site, insp_id)

    def concurrent_edits(self) -> None:
        """A column changed on the server after the device's base_rev: keep the server's value."""
        for (name, rid), base in self.base_revs.items():
            before = self.cs.before.get(name, {}).get(rid)
            after = self.cs.after.get(name, {}).get(rid)
            if not before or not after:
                continue
            col_revs = before.get("col_revs") or {}
            for col in self.cs.device_changed.get(name, {}).get(rid, ()):
                if col == "deleted_at" or before.get(col) == after.get(col):
                    continue
                rev, writer_device = resolve_col_rev(col_revs.get(col), before["server_rev"])
                if rev > base and not (writer_device and writer_device == self.cs.device_id):
                    insp = rid if name == "inspections" else after.get("inspection_id")
                    self.cs.conflicts.append(
                        ConflictNote(
                            kind="concurrent_edit",
                            table=name,
                            record_id=rid,
                            column=col,
                            inspection_id=insp,
                            site_id=after.get("site_id"),
                            server_value=before.get(col),
                            device_value=after.get(col),
                            detail="changed on the server after this device's copy; "
                            "the device's value was applied, the server's kept here",
                        )
                    )
                    # The rules flagged the inspections before this ran: flag this one too.
                    flagged = self.cs.after.get("inspections", {}).get(insp)
                    if flagged is not None:
                        flagged["has_conflicts"] = True


def push(
    session: Session,
    *,
    scope: Scope,
    device_id: str | None,
    body: Any,
    rules: Rules | None,
    max_records: int,
    now_ms: int,
    pull_start: int | None = None,
    assume_new: bool = False,
    pulled: int | None = None,
) -> dict[str, Any]:
    """Apply a push; raises Invalid (nothing applied) or StalePush (409, nothing applied).
    `assume_new` (SQLite only, _ASSUMED_NEW): raises AssumedNewExists when a record taken as
    new is on the server; roll back and push again without it. `pulled`: the rev the device's
    pulls reached, as the server noted it: no cursor it sends counts beyond it, and a base_rev
    beyond it counts as none (`pull_start`, where its latest pull began, stands in)."""
    changes, last = validate_push(body, max_records)
    if pulled is not None and last is not None:
        # A cursor past what the device pulled (a bug, say a clock time sent as the cursor)
        # would skip the stale check.
        last = min(last, pulled)
    args = (session, scope, device_id, changes, last, rules, now_ms, pull_start, pulled)
    if assume_new and session.get_bind().dialect.name == "sqlite":
        try:
            return _plan_and_write(*args, assume_new=True)
        except _Unsure:
            pass  # nothing is written before the plan is sure
    return _plan_and_write(*args, assume_new=False)


def _plan_and_write(
    session: Session,
    scope: Scope,
    device_id: str | None,
    changes: dict[str, dict[str, list]],
    last: int | None,
    rules: Rules | None,
    now_ms: int,
    pull_start: int | None,
    pulled: int | None,
    assume_new: bool,
) -> dict[str, Any]:
    cs = ChangeSet(user_id=scope.user_id, role=scope.role, device_id=device_id, now_ms=now_ms)
    plan = _Push(session, scope, cs, assume_new)
    plan.pull_start = -1 if pull_start is None else pull_start
    plan.pulled = pulled
    plan.load(changes)
    stale = plan.stale(changes, last)
    if stale and plan.assumed:
        raise _Unsure  # a record taken as new may be stale too: the listing must name it
    if stale:
        listing = "; ".join(f"{t}: {', '.join(ids[:5])}" for t, ids in stale.items())
        raise StalePush(
            f"Some records changed on the server since your last pull ({listing}); "
            "pull, then push again.",
            extra={"stale": stale},
        )
    try:
        for name in ORDER:
            lists = changes.get(name)
            if not lists:
                continue
            plan.create_all(name, lists["created"])
            for rec in lists["updated"]:
                plan.upsert(name, rec, is_update=True)
        for name in reversed(ORDER):
            for rid in (changes.get(name) or {}).get("deleted", []):
                plan.delete(name, rid)
    except Invalid:
        if plan.assumed:  # as the push would be refused with every record looked up
            raise _Unsure from None
        raise
    if rules is not None:
        rules.apply(session, cs)
    plan.concurrent_edits()
    try:
        writer.write(session, cs)
    except (sqlite3.IntegrityError, IntegrityError) as exc:
        # The driver's own error from a batch insert, SQLAlchemy's from a small one.
        if plan.assumed:
            raise AssumedNewExists from exc
        raise
    return {"ok": True, "conflicts": [c.wire() for c in cs.conflicts]}
