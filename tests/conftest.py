"""Shared fixtures: the loaded standard and small valid deliveries to break."""
from __future__ import annotations

import pytest

from schemas import Spec, load_spec
from tests.support.deliveries import DeliveryRows, valid_rows

# One headless Chromium for every browser test of the session (tests/support/browser.py).
pytest_plugins = ["tests.support.browser"]


@pytest.fixture(scope="session")
def spec() -> Spec:
    """The standard as loaded from interface_specs/ (once per session)."""
    return load_spec()


@pytest.fixture
def rows(spec: Spec) -> DeliveryRows:
    """A valid delivery for Hubei (42), cycle 202610, three customers — in memory."""
    return valid_rows(spec)
