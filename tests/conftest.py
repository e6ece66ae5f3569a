"""Shared test helpers. The benchmark fixture records live in the repository: tests/fixtures/benchmarks/."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():  # never skip silently: the fixtures are part of the suite
        raise FileNotFoundError(f"benchmark fixtures not found at {FIXTURES}: the checkout is incomplete")
    return FIXTURES
