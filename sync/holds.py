"""Deletions held back for the sites a device lost (access revoked, or the site closed).

WatermelonDB pulls before it pushes and destroys a pulled deletion even over local changes: a
lost site's deletions sent at once would erase, unseen, the edits the device made there offline.
So they wait until its edits have had their chance, judged only by what the device shows it
received: a pull is known applied when a later sync starts from at least the cursor it handed
out (a pull whose answer was lost proves nothing, so one that moves a hold on must hand out a
cursor past the one it was asked from).

- held: the pull that learned of the loss was served;
- passed: the device applied that pull and a sync went by without a push;
- ready: the device pushed since (the push carried its edits there, kept as conflicts); a
  push the server refuses puts them back to held;
- released: the deletions went out; sent again on every sync until the device shows it
  applied them.

Edits made at such a site after the device's last push and before its next pull are still
lost: the protocol's pull-then-push order leaves no way to hear of them first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

HELD, PASSED, READY, RELEASED = "held", "passed", "ready", "released"


@dataclass(frozen=True)
class Hold:
    """Sites whose deletions wait, how far the device has come since (module doc), and the
    cursor handed out by the pull that last moved them on."""

    sites: frozenset[str]
    stage: str
    mark: int


def load(text: str | None) -> list[Hold]:
    """The holds from the device's bookkeeping (dump())."""
    if not text:
        return []
    return [Hold(frozenset(h["sites"]), h["stage"], h["mark"]) for h in orjson.loads(text)]


def dump(holds: Iterable[Hold]) -> str | None:
    """The holds as the device's bookkeeping stores them (none: NULL)."""
    raw = [{"sites": sorted(h.sites), "stage": h.stage, "mark": h.mark} for h in holds]
    return orjson.dumps(raw).decode() if raw else None


def sites(holds: Iterable[Hold]) -> frozenset[str]:
    """Every site held, at any stage."""
    return frozenset().union(*(h.sites for h in holds))


def step(
    holds: list[Hold],
    new_sync: bool,
    low: int,
    end: int,
    lost: frozenset[str],
    visible: Callable[[str], bool],
) -> tuple[list[Hold], frozenset[str]]:
    """One pull from `low` handing out `end`: the holds after it, and the sites whose
    deletions it sends. `new_sync`: not a later page of a paged pull; `lost`: sites lost in
    this pull; `visible`: whether a site is in the user's scope again (given back: nothing to
    delete)."""
    after: list[Hold] = []
    send: set[str] = set()
    moves = new_sync and end > low
    for hold in holds:
        stage, mark = hold.stage, hold.mark
        seen = new_sync and low >= mark  # the device applied the pull that handed out mark
        if stage == RELEASED:
            if seen:
                continue  # the device has them
            if new_sync:
                send |= hold.sites  # that answer never arrived: again
        elif moves and (stage == READY or (seen and stage == PASSED)):
            send |= hold.sites
            stage, mark = RELEASED, end
        elif moves and seen and stage == HELD:
            stage, mark = PASSED, end
        after.append(Hold(hold.sites - lost, stage, mark))
    if lost:
        after.append(Hold(lost, HELD, end))
    kept = [Hold(frozenset(x for x in h.sites if not visible(x)), h.stage, h.mark) for h in after]
    return [h for h in kept if h.sites], frozenset(s for s in send if not visible(s))


def pushed(holds: list[Hold], cursor: int | None) -> list[Hold]:
    """After a push the server accepted, from a device that had pulled up to `cursor`: the
    edits made at the sites it knew were held are in."""
    return [
        Hold(h.sites, READY, h.mark)
        if h.stage in (HELD, PASSED) and cursor is not None and cursor >= h.mark
        else h
        for h in holds
    ]


def refused(holds: list[Hold]) -> list[Hold]:
    """After a push the server refused (409, 422...): it carried none of the device's edits,
    so the deletions wait again, as just held, for one it accepts or a sync without one."""
    return [h if h.stage == RELEASED else Hold(h.sites, HELD, h.mark) for h in holds]
