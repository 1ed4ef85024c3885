"""Fixtures for the robustness tests; the reference models live in robustness_reference.py."""

from __future__ import annotations

from typing import Any

import pytest
from robustness_reference import make_batches


@pytest.fixture
def batches_rgb_depth() -> list[dict[str, Any]]:
    return make_batches(("rgb", "depth"))
