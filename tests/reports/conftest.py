"""Fixtures for the report tests: a fresh working directory for whole-pipeline runs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder, as a new user would: runs/, data/ and sqlite files land here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
