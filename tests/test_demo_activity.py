"""`seed-demo` leaves work to review, made through the same API a phone uses."""

from __future__ import annotations

from api.demo_activity import PLAN
from store.models import Action, Attachment, Inspection


def test_seed_demo_leaves_synced_scored_evidenced_work(app, db):
    # Through the command itself: its requests run inside the command's app context.
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    by_area = {i.area: i for i in db.query(Inspection)}
    assert len(by_area) == len(PLAN)
    for _email, _site, _key, failures, area, approved in PLAN:
        insp = by_area[area]
        assert insp.status == ("approved" if approved else "completed")
        assert insp.media_complete is True and insp.score_percent is not None
        if not failures:
            assert insp.passed is True and insp.critical_failed is False
        # One corrective action per failed item, each with the photo the rule asked for.
        assert db.query(Action).filter_by(inspection_id=insp.id).count() == failures
        evidence = db.query(Attachment).filter_by(inspection_id=insp.id).all()
        assert all(a.uploaded for a in evidence) and (evidence or not failures)
        assert all(not a.signature_stale for a in evidence if a.kind == "signature")
    inspectors = {i.inspector_id for i in by_area.values()}
    assert len(inspectors) == 2  # Ana's and Ben's phones, not one shared identity
