"""The import rule: packages import downward only (an AST check over every module)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "common": set(),
    "dynet_model": {"common"},
    "curation": {"common"},
    "training": {"common", "dynet_model", "curation"},
    "pipeline": {"common", "dynet_model", "curation", "training"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def test_packages_import_downward_only():
    violations = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for top, line in imported_packages(path):
                if top in ALLOWED and top != package and top not in allowed:
                    violations.append(f"{path.relative_to(REPO)}:{line} imports {top}")
    assert not violations, "upward or sideways imports:\n" + "\n".join(violations)


def test_the_rule_itself_catches_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from training.loop import run\nimport curation.score as s\n")
    assert {t for t, _ in imported_packages(bad)} == {"training", "curation"}
