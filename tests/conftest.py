"""Shared test helpers. The benchmark fixture records live in the repository: tests/fixtures/benchmarks/."""

import gc
import signal
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"
# the committed warm-started seed-0 policy of the CI learning test (tests/fixtures/learn_policy/README.md)
LEARN_POLICY_FIXTURE = REPO / "tests" / "fixtures" / "learn_policy" / "seed0"


# The two training runs of the suite (minutes each) start first: run_scripts/test.sh runs the suite in 2 workers with
# `--dist loadfile --no-loadscope-reorder`, which hands out test modules in collection order (by default xdist would
# hand out the modules with the most tests first); the other worker meanwhile runs the rest.
SLOW_MODULES = ("test_cpu_learn", "test_e2e_cpu_smoke")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        module = getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1]
        return SLOW_MODULES.index(module) if module in SLOW_MODULES else len(SLOW_MODULES)

    items.sort(key=rank)  # stable: every module keeps its own order


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


def kill_tree(pid: int) -> None:
    """Kill a script and everything it started (driver, raylet, Ray workers), and nothing else."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
