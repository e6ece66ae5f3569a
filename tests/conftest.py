"""Shared test helpers. `shared/` (docs and fixtures) lies beside the repository: ../shared."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CARE_SHARED_DIR", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "benchmarks"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():  # never skip silently: the fixtures are part of the suite
        raise FileNotFoundError(f"benchmark fixtures not found at {FIXTURES}; set CARE_SHARED_DIR to the shared/ folder")
    return FIXTURES
