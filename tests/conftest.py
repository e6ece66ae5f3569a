"""Shared test helpers. The benchmark fixture records live in the repository: tests/fixtures/benchmarks/."""

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
# The venv the run scripts use (run_scripts/_venv.sh): CARE_VENV as documented, else the one running the tests, never a
# new <repo>/.venv (a multi-GB install). Tests that strip CARE_* from a script's environment put this back.
CARE_VENV = os.environ.get("CARE_VENV") or (sys.prefix if sys.prefix != sys.base_prefix else str(REPO / ".venv"))
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
    """Kill a script's process group and everything it started (driver, raylet, Ray workers, vLLM engines, pip), also
    what left the group, and nothing else (the group is the one ``start_new_session=True`` gave it)."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]  # before the kill: orphans are re-parented
    except psutil.NoSuchProcess:
        procs = []
    procs += [p for p in psutil.process_iter() if _pgid(p.pid) == pid and p not in procs]
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of process group ``pgid`` (zombies excluded)."""
    out = []
    for proc in psutil.process_iter():
        try:
            if _pgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def run_group(cmd, *, timeout: float | None = None, input=None, check: bool = False, capture_output: bool = False,
              **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a session (process group) of its own. On a timeout, or anything else that ends the wait
    (pytest-timeout, Ctrl-C), the whole group and every descendant is killed before the error propagates, so no pip,
    Ray or vLLM process outlives its test; members left in the group after a normal exit are killed too."""
    kwargs.setdefault("start_new_session", True)
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else kwargs.pop("stdin", None),
                          **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            kill_tree(proc.pid)
            raise
        finally:
            if kwargs["start_new_session"] and group_members(proc.pid):
                kill_tree(proc.pid)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result
