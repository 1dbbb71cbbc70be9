"""Every function image installs exactly the versions the project pins in pyproject.toml."""

from __future__ import annotations

import tomllib

import pytest

from ripple_stack.settings import REPO_ROOT

PINNED = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
REQUIREMENTS = sorted((REPO_ROOT / "functions").glob("*/requirements.txt"))


@pytest.mark.parametrize("path", REQUIREMENTS, ids=lambda path: path.parent.name)
def test_image_requirements_match_pyproject_pins(path):
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            assert requirement in PINNED, (
                f"{path.relative_to(REPO_ROOT)}: {requirement} differs from pyproject.toml"
            )
