"""The stages of a lost site's held deletions (sync/holds.py), without a server."""

from __future__ import annotations

from sync import holds
from sync.holds import HELD, PASSED, READY, RELEASED, Hold

S = frozenset({"s"})


def _never(_site: str) -> bool:
    return False


def test_a_loss_is_held_and_moves_on_only_on_pulls_the_device_shows_it_applied():
    held, send = holds.step([], True, 10, 20, S, _never)
    assert (held, send) == ([Hold(S, HELD, 20)], frozenset())
    # A pull from before the holding one (its answer was lost): nothing moves.
    assert holds.step(held, True, 10, 25, frozenset(), _never) == (held, frozenset())
    # From the cursor it handed out, with a new one to hand out: a sync went by.
    held, send = holds.step(held, True, 20, 30, frozenset(), _never)
    assert (held, send) == ([Hold(S, PASSED, 30)], frozenset())
    # A quiet pull (no new cursor) proves nothing about its own answer: nothing moves.
    assert holds.step(held, True, 30, 30, frozenset(), _never) == (held, frozenset())
    held, send = holds.step(held, True, 30, 40, frozenset(), _never)
    assert (held, send) == ([Hold(S, RELEASED, 40)], S)


def test_released_deletions_go_again_until_the_device_shows_it_has_them():
    released = [Hold(S, RELEASED, 40)]
    assert holds.step(released, True, 30, 45, frozenset(), _never) == (released, S)
    assert holds.step(released, False, 40, 45, frozenset(), _never) == (released, frozenset())
    assert holds.step(released, True, 40, 40, frozenset(), _never) == ([], frozenset())


def test_a_push_makes_a_hold_ready_and_the_next_sync_releases_it():
    ready = holds.pushed([Hold(S, HELD, 20)], 20)
    assert ready == [Hold(S, READY, 20)]
    assert holds.step(ready, False, 20, 30, frozenset(), _never) == (ready, frozenset())
    assert holds.step(ready, True, 10, 30, frozenset(), _never) == ([Hold(S, RELEASED, 30)], S)


def test_a_site_given_back_is_held_no_more():
    assert holds.step([Hold(S, READY, 20)], True, 20, 30, frozenset(), lambda s: True) == (
        [],
        frozenset(),
    )


def test_holds_round_trip_through_the_bookkeeping():
    kept = [Hold(S, PASSED, 7), Hold(frozenset({"a", "b"}), HELD, 9)]
    assert holds.load(holds.dump(kept)) == kept
    assert holds.dump([]) is None and holds.load(None) == []


def test_a_refused_push_puts_a_hold_back_and_only_a_push_after_the_hold_readies_it():
    waiting = [Hold(S, PASSED, 30), Hold(frozenset({"t"}), READY, 20), Hold(S, RELEASED, 40)]
    assert holds.refused(waiting) == [
        Hold(S, HELD, 30),
        Hold(frozenset({"t"}), HELD, 20),
        Hold(S, RELEASED, 40),
    ]
    # A push from a device that had not applied the pull that held the site proves nothing.
    assert holds.pushed([Hold(S, HELD, 30)], 20) == [Hold(S, HELD, 30)]
    assert holds.pushed([Hold(S, HELD, 30)], None) == [Hold(S, HELD, 30)]
