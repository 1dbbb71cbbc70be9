"""The rooms of the tree and the one way their imports run (README: Layout).

functions/ (the product; its tests may use the running stack) imports none of the local
machinery; the Knative stand-ins (infra/local/knative_standins) never import the stack runner
(ripple_stack) or the delivery tooling (ripple_delivery): the runner starts them and hands them
what a cluster would. A new import against that direction fails here, with the file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = [
    # (folder, packages it must not import)
    ("functions", ("ripple_stack", "knative_standins", "ripple_delivery", "loadtest")),
    ("infra/local/knative_standins", ("ripple_stack", "ripple_delivery", "loadtest")),
    ("infra/local/ripple_stack", ("ripple_delivery", "loadtest")),
]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize(("folder", "forbidden"), RULES, ids=[rule[0] for rule in RULES])
def test_imports_run_one_way(folder, forbidden):
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / folder).rglob("*.py"))
        if "tests" not in path.relative_to(REPO / folder).parts
        for line, module in imported_modules(path)
        if module.split(".")[0] in forbidden
    ]
    assert not wrong, "\n".join(wrong)


def test_make_help_lists_every_target():
    """Every rule a person runs (not the file targets like .ripple/dist/bin/kn) has its `## ` text."""
    makefile = (REPO / "Makefile").read_text()
    rules = re.findall(r"^([a-zA-Z%][a-zA-Z0-9%_-]*):(?!=)(.*)$", makefile, re.MULTILINE)
    silent = [name for name, rest in rules if "## " not in rest]
    assert not silent, f"Makefile targets without a `## ` help text: {', '.join(silent)}"
    assert len(rules) >= 40
