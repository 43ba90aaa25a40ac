"""Who may import whom (architecture.md), checked on the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"api", "schemas", "sync", "media", "inspections", "org", "store", "wsgi"}
FRAMEWORKS = {"flask", "flask_smorest", "flask_limiter", "marshmallow", "webargs"}

# package -> (project packages it may import, frameworks it may import)
RULES = {
    "store": (set(), set()),
    "schemas": ({"store"}, {"marshmallow"}),
    "sync": ({"store"}, set()),
    "media": ({"store"}, set()),
    # Review and actions write through the sync engine's change-set writer so REST and sync
    # changes share one rev machinery; sync itself never imports inspections (rules are injected).
    "inspections": ({"store", "sync"}, set()),
    "org": ({"store", "inspections", "sync"}, set()),
    "api": (PROJECT - {"wsgi"}, FRAMEWORKS),
}


def imports_of(path: Path) -> set[str]:
    """Top-level module names a file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_follow_the_rules(package: str) -> None:
    allowed_project, allowed_frameworks = RULES[package]
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    for path in files:
        found = imports_of(path)
        bad_project = (found & PROJECT) - allowed_project - {package}
        bad_frameworks = (found & FRAMEWORKS) - allowed_frameworks
        rel = path.relative_to(ROOT)
        assert not bad_project, f"{rel} imports {sorted(bad_project)}"
        assert not bad_frameworks, f"{rel} imports {sorted(bad_frameworks)}"


def test_sync_and_media_do_not_import_each_other() -> None:
    for a, b in (("sync", "media"), ("media", "sync"), ("sync", "inspections")):
        for path in (ROOT / a).rglob("*.py"):
            assert b not in imports_of(path), f"{path.relative_to(ROOT)} imports {b}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from flask import Flask\nimport api.db\n")
    assert imports_of(bad) == {"flask", "api"}
