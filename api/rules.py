"""Composition: the domain rules the sync engine and REST apply to every change."""

from __future__ import annotations

from flask import current_app

from inspections.plan_rules import InspectionRules


def sync_rules() -> InspectionRules:
    """The app's rules object (one per app)."""
    rules = current_app.extensions.get("inspection_rules")
    if rules is None:
        rules = InspectionRules()
        current_app.extensions["inspection_rules"] = rules
    return rules
