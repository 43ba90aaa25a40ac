"""Records a pull owes a device besides the changes since its cursor: the records of a site it
gained (an inspector's new assignment, a site joining a manager's region) and the tables a
schema migration asks for whole. They go in pages like every other change: a big site's
history in one answer is one that a phone on a poor network may never receive whole.

The device's bookkeeping keeps what is owed and how far each cursor handed out with a part got
(Dump). A pull from one of those cursors carries on from there: the next page of the pull, or
a page retried by a client that applies each page it gets. A pull from any other cursor sends
it all again from the beginning (the answer that carried a part may have been lost, and the
client pulls again from where it started), until a pull from at least the cursor handed out
with the last part shows the device has it all. A page that carries a part therefore never
hands out the cursor it was asked from (in a quiet deployment nothing moves it): it takes a rev
of its own first (FreshCursor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson


class FreshCursor(Exception):
    """This page carries part of a dump but would hand out the cursor it was asked from: a
    retry of it could not be told from the next page. Take a rev (sync/revs.py: advance) and
    pull again."""


# How far a dump got: the task, the site in it, and the last rev sent at that site.
Position = tuple[int, int, int]
_START: Position = (0, 0, -1)
# Cursors remembered with their positions: a pull from an older one starts the dump again.
KEEP_CURSORS = 64


@dataclass(frozen=True)
class Task:
    """The live records of one table whose last change is at or below `as_of` (later changes
    come with the pull's own), at these sites, or (None) wherever the scope reaches."""

    table: str
    sites: tuple[str, ...] | None
    as_of: int


@dataclass(frozen=True)
class Dump:
    """What a device is owed; how far it got as of each cursor handed out with a part
    (oldest first; the last is where the next page starts); and, once all is sent, the
    cursor handed out with the last part."""

    tasks: tuple[Task, ...]
    seen: tuple[tuple[int, Position], ...] = ()
    mark: int | None = None

    @property
    def at(self) -> Position:
        """Where the next page starts."""
        return self.seen[-1][1] if self.seen else _START

    @classmethod
    def load(cls, text: str | None) -> Dump | None:
        """The dump from the device's bookkeeping (dump())."""
        if not text:
            return None
        raw = orjson.loads(text)
        tasks = tuple(
            Task(t["table"], None if t["sites"] is None else tuple(t["sites"]), t["as_of"])
            for t in raw["tasks"]
        )
        seen = tuple((cursor, tuple(at)) for cursor, at in raw["seen"])
        return cls(tasks, seen, raw["mark"])

    def dump(self) -> str:
        """The dump as the device's bookkeeping stores it."""
        tasks = [{"table": t.table, "sites": t.sites, "as_of": t.as_of} for t in self.tasks]
        return orjson.dumps({"tasks": tasks, "seen": self.seen, "mark": self.mark}).decode()


def dump_text(found: Dump | None) -> str | None:
    """The bookkeeping's text for a dump, or none."""
    return None if found is None else found.dump()


def plan(owed: Dump | None, *, first: bool, low: int, end: int, new: list[Task]) -> Dump | None:
    """What this pull (from cursor `low`, its page ending at `end`) owes: nothing on a pull of
    the whole dataset (it sends every record); nothing more once a pull from the last part's
    cursor shows the device has it all; the rest from where a cursor handed out with a part
    got; all of it again, as of this page, from any other cursor; and `new` (as of this page),
    less what is owed already."""
    if first:
        return None
    if owed is not None and owed.mark is not None and low >= owed.mark:
        owed = None
    if owed is not None:
        found = [i for i, (cursor, _at) in enumerate(owed.seen) if cursor == low]
        if found:
            owed = Dump(owed.tasks, owed.seen[: found[0] + 1])
        else:
            owed = Dump(tuple(replace(t, as_of=end) for t in owed.tasks))
    tasks = list(owed.tasks) if owed is not None else []
    for task in new:
        rest = _uncovered(tasks, task, low)
        if rest is not None:
            tasks.append(rest)
    if not tasks:
        return None
    return Dump(tuple(tasks), owed.seen if owed is not None else ())


def _uncovered(tasks: list[Task], task: Task, low: int) -> Task | None:
    """The part of `task` no task owed already covers (None: all of it is covered). A site
    gained again (given back, or back in the region) is covered only by a task taken on after
    the cursor `low` (the same gain, seen again by a retried page): an older task may have
    passed the site while it was out of sight, and the changes made there meanwhile, above
    its `as_of`, went in no page."""
    same = [t for t in tasks if t.table == task.table]
    if task.sites is not None:
        same = [t for t in same if t.as_of > low]
    if any(t.sites is None for t in same):
        return None
    if task.sites is None:
        return task
    covered = {s for t in same for s in t.sites or ()}
    rest = tuple(s for s in task.sites if s not in covered)
    return replace(task, sites=rest) if rest else None


def serve(
    owed: Dump | None,
    budget: int,
    low: int | None,
    end: int,
    sees_site: Callable[[str], bool],
    render: Callable[[Task, str | None, int, int], tuple[int, int | None]],
) -> tuple[Dump | None, bool]:
    """Send up to `budget` owed records through `render(task, site, after, budget)` (which
    returns how many it sent, and the rev of the last when more remain there); returns what is
    owed after this page (remembering how far cursor `end` got) and whether any is left to
    send (the page then says has_more). A site the user no longer sees is skipped: its loss
    reaches the device as deletions. Raises FreshCursor for a part under the cursor `low`
    (None: a rev was taken for this pull already; only a cursor from beyond the counter, which
    no pull hands out, can still meet the page's end)."""
    if owed is None:
        return None, False
    at, more = _send(owed, budget, sees_site, render)
    if at != owed.at and low is not None and end <= low:
        raise FreshCursor()
    seen = [*(s for s in owed.seen if s[0] != end), (end, at)][-KEEP_CURSORS:]
    return Dump(owed.tasks, tuple(seen), None if more else end), more


def _send(
    owed: Dump,
    budget: int,
    sees_site: Callable[[str], bool],
    render: Callable[[Task, str | None, int, int], tuple[int, int | None]],
) -> tuple[Position, bool]:
    """Render owed records from where the dump got, up to the budget: the position after
    them, and whether any is left."""
    task_at, site_at, after = owed.at
    while task_at < len(owed.tasks):
        task = owed.tasks[task_at]
        sites: tuple[str | None, ...] = (None,) if task.sites is None else task.sites
        while site_at < len(sites):
            site = sites[site_at]
            if budget <= 0:
                return (task_at, site_at, after), True
            if site is None or sees_site(site):
                sent, last = render(task, site, after, budget)
                budget -= sent
                if last is not None:  # the page is full: carry on after `last` next time
                    return (task_at, site_at, last), True
            site_at, after = site_at + 1, -1
        task_at, site_at = task_at + 1, 0
    return (task_at, 0, -1), False
