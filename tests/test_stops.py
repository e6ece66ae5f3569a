"""A stop says why (issue 23): a failed or interrupted run ends its console log with one line, ``[care] stopped: <why>``,
and stops its Ray cluster; the scripts resume by default from their run folder's checkpoint and say so; a test's
subprocess that times out takes its whole process group with it (conftest.run_group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import CARE_VENV, group_members, kill_tree, run_group

REPO = Path(__file__).resolve().parents[1]
LONG_RUNS_SH = REPO / "run_scripts" / "_long_runs.sh"


def _last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


# --- tests and their child processes ----------------------------------------------------------------------------


def test_a_timed_out_subprocess_takes_its_whole_group_with_it(tmp_path):
    pids = tmp_path / "pids"
    # a shell that ignores SIGTERM, with two children in its group
    code = f"trap '' TERM; echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; sleep 301 & echo $! >> {pids}; wait"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_group(["bash", "-c", code], timeout=3, capture_output=True)
    assert time.monotonic() - t0 < 20
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 3
    alive = []
    for pid in started:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    assert alive == []


def test_the_configured_venv_is_kept_for_the_scripts():
    from test_run_scripts import script_env

    env = script_env(Path("/tmp"))
    assert env["CARE_VENV"] == CARE_VENV
    assert Path(CARE_VENV, "bin", "python").exists(), "the tests' venv must be the one the scripts check"


# --- the scripts: resume by default, the stop line ------------------------------------------------------------------


def _bash(script: str, tmp_path: Path, timeout=60) -> subprocess.CompletedProcess:
    return run_group(["bash", "-c", f"set -euo pipefail; . {LONG_RUNS_SH}; {script}"], cwd=tmp_path,
                     capture_output=True, text=True, timeout=timeout)


def test_a_run_folder_with_a_checkpoint_resumes_and_says_so(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "data": {}}\n')
    fresh = _bash('care_resume ckpt metrics.jsonl; echo "${CARE_RESUME[*]} $CARE_RESUMED"; ls', tmp_path)
    assert fresh.stdout.splitlines()[0] == "trainer.resume_mode=disable 0"
    assert "metrics.jsonl" not in fresh.stdout.split() and "metrics." in fresh.stdout  # moved aside, not deleted
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("7")
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "data": {}}\n')
    resumed = _bash('care_resume ckpt metrics.jsonl; echo "${CARE_RESUME[*]} $CARE_RESUMED"; ls', tmp_path)
    assert resumed.stdout.splitlines()[0] == "trainer.resume_mode=auto 7"
    assert "metrics.jsonl" in resumed.stdout.split()
    assert resumed.stderr.strip().count("\n") == 0 and "resuming from the checkpoint of step 7" in resumed.stderr


@pytest.mark.parametrize("cmd,why", [
    ("python3 -c \"raise ValueError('bad value')\"", "[care] stopped: ValueError: bad value (exit status 1)"),
    ("bash -c 'echo working; kill -KILL $$'", "[care] stopped: killed by SIGKILL (exit status 137)"),
    ("python3 -c \"print('[care] stopped: its own words'); raise SystemExit(3)\"", "[care] stopped: its own words"),
])
def test_the_console_log_ends_with_why_the_run_stopped(tmp_path, cmd, why):
    proc = _bash(f"care_run_logged console.log {cmd}", tmp_path)
    assert proc.returncode != 0
    assert _last_line((tmp_path / "console.log").read_text()) == why
    assert (tmp_path / "console.log").read_text().count("[care] stopped:") == 1


def test_a_signal_to_the_script_reaches_the_run_and_is_named(tmp_path):
    script = f". {LONG_RUNS_SH}; care_run_logged console.log python3 -c \"import time; print('up', flush=True); " \
             "time.sleep(120)\""
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "up" not in (tmp_path / "console.log").read_text() if (tmp_path / "console.log").exists() else True:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)  # the script only, as a scheduler may do
        assert proc.wait(timeout=30) == 143
    finally:
        kill_tree(proc.pid)
    assert _last_line((tmp_path / "console.log").read_text()) == \
        "[care] stopped: interrupted by SIGTERM (exit status 143)"
    assert group_members(proc.pid) == []


# --- the recipe's entry point -----------------------------------------------------------------------------------


def test_a_bad_config_fails_fast_with_the_exception_as_last_line(tmp_path):
    proc = run_group([sys.executable, "-m", "recipe_care.main", "trainer.use_v1=True", "algorithm.adv_estimator=care",
                      f"hydra.run.dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    assert _last_line(proc.stdout) == ("[care] stopped: ValueError: algorithm.adv_estimator=care needs verl's legacy "
                                       "trainer: set trainer.use_v1=False")
    assert "Traceback" in proc.stderr


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_sigterm_stops_ray_and_names_the_signal(tmp_path):
    """recipe_care.main's handler around a run holding a local Ray cluster: SIGTERM to the whole group (as a
    preemption does) ends it with the signal's line after ray.shutdown(), and no Ray process is left."""
    code = ("import time, ray\n"
            "from recipe_care.main import run_and_say_why\n"
            "ray.init(num_cpus=1, include_dashboard=False, address='local')\n"
            "print('ray up', flush=True)\n"
            "run_and_say_why(time.sleep, 600)\n")
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    ray_procs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 200
        while "ray up" not in (tmp_path / "out.txt").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "out.txt").read_text()
            time.sleep(0.5)
        ray_procs = psutil.Process(proc.pid).children(recursive=True)
        assert ray_procs, "no Ray process started"
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        kill_tree(proc.pid)
        out.close()
    text = (tmp_path / "out.txt").read_text()
    assert _last_line(text) == "[care] stopped: interrupted by SIGTERM", text[-3000:]
    time.sleep(2)
    alive = [p for p in ray_procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.name() for p in alive]
