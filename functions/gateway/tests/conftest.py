"""Fixtures of the gateway tests; the live stack comes from the root conftest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The function's own package (ripple_gateway) lives next to main.py, as in the image.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(scope="session")
def publisher_token(stack) -> str:
    """ripple-publisher: tenant acme, every publish role."""
    return stack.client_token()


@pytest.fixture(scope="session")
def gateway(stack) -> str:
    return stack.gateway_url
