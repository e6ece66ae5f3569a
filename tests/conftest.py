"""Shared test helpers. The benchmark fixture records live in the repository: tests/fixtures/benchmarks/."""

import gc
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"


# Modules that start a Ray cluster in the test process (ray.init, cluster_utils) or through verl's entry point. With
# `pytest -n 2` (run_scripts/test.sh) they run one after another in one worker: a cluster of Ray's test utilities
# registers itself as "the current cluster", and a plain ray.init() in a parallel worker would join it.
RAY_MODULES = {"test_registration_on_cpu", "test_rgr_manager_ray", "test_preflight_cluster", "test_run_scripts"}


def pytest_collection_modifyitems(config, items):
    """Parallel runs (pytest-xdist, ``--dist loadgroup``): each test module runs in one worker, so a module-scoped
    fixture (the CPU smoke run, the learning run) runs once; the Ray modules share one group."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        group = "ray" if module in RAY_MODULES or item.get_closest_marker("ray") else module
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():  # never skip silently: the fixtures are part of the suite
        raise FileNotFoundError(f"benchmark fixtures not found at {FIXTURES}: the checkout is incomplete")
    return FIXTURES


def cpu_seconds(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), CPU seconds of this thread spent in it)``, with the cyclic garbage collector paused.

    The suite's process holds torch, verl and sympy objects; a full collection that happens to start inside the timed
    call costs up to a second on a loaded 2-core host and belongs to the process, not to the input being timed. (No
    ``gc.collect()`` before the call: forcing one per timed call cost the suite minutes.)
    """
    gc.disable()
    try:
        start = time.thread_time()
        result = fn(*args, **kwargs)
        return result, time.thread_time() - start
    finally:
        gc.enable()
