"""The recipe learns: a shortened ``run_scripts/cpu_learn.sh`` (``care`` with RGR and hidden-state embeddings, verl
0.9.1's real legacy trainer on CPU, verl's vLLM rollout) lifts held-out accuracy well above the warm-started start.

One run of the script is shared by the tests of this module; it starts from the committed seed-0 warm-started
policy (tests/fixtures/learn_policy; tests/test_learn_policy_fixture.py checks it against a rebuild from scratch).
It is the check that catches what plumbing and math tests cannot: a flipped advantage sign or token advantages
shifted by one position leave every other test green but stop the accuracy from rising (checked by hand, see
docs/benchmarks.md, "The CI learning test").

The run is 30 steps, not the demo's 60, at the demo's settings but for the learning rate: 1e-3 with 10 warmup steps
(:data:`LR_OVERRIDES`) instead of 3e-4, which left greedy accuracy at chance for 10-30 steps in half the runs (CI
ended at 0.25) and so could not tell a working recipe from a broken one in 30 steps.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import LEARN_POLICY_FIXTURE, kill_tree

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_scripts" / "cpu_learn.sh"
STEPS = 30
VAL_EVERY = 10
RISE = 0.10  # held-out accuracy at its best validation after step 0 >= step 0 + RISE
FORMAT_FLOOR = 0.5  # most answers keep the format at every validation (a broken recipe loses it: 0.00)
#: Faster than the demo's lr 3e-4 (docs/benchmarks.md#learning-rate); without warmup, lr 1e-3 broke the format
#: for steps 2-14 in one run (Adam's first steps move every weight by about the learning rate)
LR_OVERRIDES = ("actor_rollout_ref.actor.optim.lr=1e-3", "actor_rollout_ref.actor.optim.lr_warmup_steps=10")
RUN_TIMEOUT_S = 1200  # 3-6 minutes alone, by the host's load; longer beside the rest of the suite; never a hang

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1260)]


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cpu_learn")
    # the committed seed-0 policy as the script's cache: the warm start (38 s) is skipped here and checked against a
    # rebuild from scratch in tests/test_learn_policy_fixture.py
    shutil.copytree(LEARN_POLICY_FIXTURE, out_dir / "policy-seed0")
    env = dict(os.environ)
    env.update(CARE_LEARN_DIR=str(out_dir), ESTIMATORS="care", SEEDS="0", STEPS=str(STEPS), VAL_EVERY=str(VAL_EVERY),
               N_VAL="64", BLANK_IMAGES="0")
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), *LR_OVERRIDES], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # kill_tree kills its process group: nothing of the run outlives the test
    )
    try:
        console, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        console, _ = proc.communicate()
        pytest.fail(f"cpu_learn.sh did not finish in {RUN_TIMEOUT_S} s; last output:\n{console[-6000:]}")
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
    wall = time.monotonic() - start
    run_dir = out_dir / "care-seed0"
    rows = []
    if (run_dir / "curves.csv").is_file():
        with open(run_dir / "curves.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    print(f"cpu_learn.sh: rc={proc.returncode}, {wall:.0f} s wall, val_acc {[r['val_acc'] for r in rows]}")
    return {"rc": proc.returncode, "console": console, "rows": rows, "dir": out_dir, "wall_s": wall}


def _val(rows, key="val_acc"):
    return [float(r[key]) for r in rows]


def test_run_exits_cleanly_and_validates_before_and_after(learn):
    assert learn["rc"] == 0, learn["console"][-6000:]
    steps = [int(r["step"]) for r in learn["rows"]]
    assert steps == list(range(0, STEPS + 1, VAL_EVERY)), steps
    assert (learn["dir"] / "summary.md").is_file() and (learn["dir"] / "curves.png").is_file()


def test_starts_at_chance_with_the_format_learned(learn):
    acc, fmt = _val(learn["rows"]), _val(learn["rows"], "val_format")
    assert acc[0] <= 0.35, f"the warm start must carry no answer information (chance 0.25), got {acc[0]}"
    assert fmt[0] >= 0.9, f"the warm start must teach the format, got {fmt[0]}"


def test_validation_accuracy_and_training_reward_rise_with_care_and_rgr(learn):
    rows = learn["rows"]
    acc, fmt = _val(rows), _val(rows, "val_format")
    train = [float(r["train_reward"]) for r in rows[1:]]  # mean training score of steps 1-10, 11-20, 21-30
    # Three signs of learning, each of which the sabotaged runs (advantage sign flipped, token advantages shifted by
    # one position) fail on their own (docs/benchmarks.md#learning-rate):
    # - held-out accuracy at the best validation after step 0 >= step 0 + 0.10. Honest runs at these settings reached
    #   +0.17 (inside .ci/run) to +0.64; sabotaged runs +0.00 at most (0.25, the start, or 0.00). The best validation,
    #   not the last: at this learning rate the curve is not monotone (one run with 5 warmup steps went 0.34 / 0.78 /
    #   0.25), and greedy accuracy moves in quarters (one colour at a time), so a run a little behind sits still;
    # - the training score of steps 21-30 above that of steps 1-10 (honest: +0.07 to +0.26; sabotaged: down to 0.00);
    # - the format kept by most answers at every validation (honest: 0.72 at the lowest; sabotaged: 0.00).
    assert max(acc[1:]) >= acc[0] + RISE, f"held-out accuracy did not rise by {RISE}: {acc}"
    assert train[-1] > train[0], f"the training score did not rise: {train}"
    assert min(fmt) >= FORMAT_FLOOR, f"format must stay learned: {fmt}"
    last = rows[-1]
    assert float(last["care/hidden_embeddings"]) == 1.0  # hard negatives from policy hidden states
    assert float(last["rgr/triggered"]) > 0  # RGR repaired failures during training
    assert last["signal/fail_adv_share"] != ""


def test_vllm_generates_with_the_synced_weights_at_every_step(learn):
    """The default model family (Qwen2.5-VL) through verl's vLLM rollout: at every step the actor's recomputed
    log-probs of the ordinary rows agree with vLLM's (fp32 on both sides; after 30 steps at lr 1e-3 the largest
    difference seen was 7.7e-4 and the probability correlation 0.9999998), so each step's weight sync reached vLLM.
    Repaired rows are sampled at RGR's T=0.6, top-p 0.95 and are kept out of this metric."""
    assert learn["rc"] == 0, learn["console"][-6000:]
    records = [json.loads(line) for line in (learn["dir"] / "care-seed0" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["data"] for r in records if r["step"] > 0]
    assert len(steps) == STEPS
    for step in steps:
        assert step["training/rollout_probs_diff_valid"] == 1
        assert step["training/rollout_actor_probs_pearson_corr"] > 0.999, step["training/rollout_actor_probs_pearson_corr"]
        assert step["training/rollout_probs_diff_max"] < 5e-3, step["training/rollout_probs_diff_max"]
        assert step["timing_s/update_weights"] > 0
