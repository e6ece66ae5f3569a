"""The GPU run scripts on a CPU host: every script's DRY_RUN composes and validates its full verl config (through
``recipe_care.main`` and verl's ``validate_config``) and prints it; a plain run stops in seconds without GPUs.

One dry run per script (module fixture, ~15 s each on 2 cores), shared by the assertions below. The CARE run and the
GRPO baseline must differ only in the estimator, RGR and the run's name/folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "run_scripts"
EVAL_STEMS = ("mathvista_testmini", "mmmu_pro_standard10", "mmmu_pro_vision", "mathverse_testmini", "mathvision_test",
              "wemath_testmini", "logicvista_test")


def script_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARE_", "VERL_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        DATA_DIR=str(tmp / "data"),
        OUTPUT_DIR=str(tmp / "outputs"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",  # no GPU, even on a GPU host
        TMPDIR=str(tmp),
    )
    for key in ("DRY_RUN", "NGPUS", "TP", "OFFLOAD", "MODEL_PATH", "EXPERIMENT_NAME", "LOGGER", "WANDB"):
        env.pop(key, None)
    env.update(extra)
    return env


def run_script(name: str, env: dict[str, str], *args: str, timeout: int = 180) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPTS / name), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))
    return proc, time.monotonic() - t0


def printed_config(stdout: str) -> dict:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("[care] plugin ok"))
    end = next(i for i, line in enumerate(lines) if line.startswith("[care] dry run:"))
    body = [line for line in lines[start + 1:end] if not line.startswith(("[", "WARNING"))]
    return yaml.safe_load("\n".join(body))


def flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


DRY_RUNS = {
    # training scripts: an empty DATA_DIR
    "qwen25vl_7b_care.sh": ({}, ()),
    "qwen25vl_7b_grpo.sh": ({}, ()),
    # the smaller-GPU variant and extra hydra overrides (applied last)
    "qwen3vl_8b_care.sh": ({"NGPUS": "4", "TP": "1", "OFFLOAD": "1", "MICRO_LOGPROB": "8"},
                           ("trainer.total_epochs=2", "actor_rollout_ref.rollout.gpu_memory_utilization=0.45")),
    # evaluation: every benchmark file present but logicvista_test
    "eval_benchmarks.sh": ({}, ()),
}


@pytest.fixture(scope="module")
def dry(tmp_path_factory, fixtures_dir):
    """``dry(name) -> (proc, seconds, tmp)``: the script's DRY_RUN, run once per module on first use (so each test's
    time budget holds at most the dry runs it needs)."""
    from data_prep.all import main as prep

    cache: dict = {}
    tmps: dict = {}

    def get(name: str):
        if name not in cache:
            extra_env, args = DRY_RUNS[name]
            group = "eval" if name == "eval_benchmarks.sh" else "train"  # the training scripts share DATA_DIR/OUTPUT_DIR
            if group not in tmps:
                tmps[group] = tmp_path_factory.mktemp(group)
            tmp = tmps[group]
            if name == "eval_benchmarks.sh":
                present = [s for s in EVAL_STEMS if s != "logicvista_test"]
                assert prep(["--out", str(tmp / "data"), "--local-root", str(fixtures_dir), "--only", ",".join(present),
                             "--max-skip-frac", "0.5", "--quiet"]) == 0
                cache["eval_data_before"] = sorted(p.name for p in (tmp / "data").iterdir())
            proc, secs = run_script(name, script_env(tmp, DRY_RUN="1", **extra_env), *args)
            cache[name] = (proc, secs, tmp)
        return cache[name]

    get.cache = cache
    return get


@pytest.mark.parametrize("name", ["qwen25vl_7b_care.sh", "qwen25vl_7b_grpo.sh", "qwen3vl_8b_care.sh", "eval_benchmarks.sh"])
def test_dry_run_composes_validates_and_prints(dry, name):
    proc, secs, tmp = dry(name)
    assert proc.returncode == 0, f"{name} DRY_RUN failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "[validate_config] All configuration checks passed" in proc.stdout  # verl's own validation ran
    cfg = printed_config(proc.stdout)
    assert cfg["trainer"]["use_v1"] is False
    assert cfg["actor_rollout_ref"]["rollout"]["name"] == "vllm"
    assert cfg["data"]["mm_processor_kwargs"] == {"min_pixels": 262144, "max_pixels": 4194304}
    # nothing launched, nothing written or fetched: no run folder, no data files appeared
    assert not (tmp / "outputs").exists()
    assert secs < 120, f"{name} dry run took {secs:.0f} s"


def test_care_config_has_the_authors_hyper_parameters(dry):
    proc, _, tmp = dry("qwen25vl_7b_care.sh")
    cfg = printed_config(proc.stdout)
    actor = cfg["actor_rollout_ref"]["actor"]
    rollout = cfg["actor_rollout_ref"]["rollout"]
    assert cfg["algorithm"]["adv_estimator"] == "care" and cfg["algorithm"]["rgr"]["enable"] is True
    assert cfg["algorithm"]["care"]["K"] == 4 and cfg["algorithm"]["care"]["M"] == 6
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert rollout["n"] == 8 and rollout["temperature"] == 1.0 and rollout["tensor_model_parallel_size"] == 2
    assert actor["optim"]["lr"] == pytest.approx(1e-6) and actor["optim"]["weight_decay"] == pytest.approx(0.01)
    assert actor["optim"]["lr_scheduler_type"] == "constant" and actor["grad_clip"] == 1.0
    assert cfg["data"]["train_batch_size"] == 512 and actor["ppo_mini_batch_size"] == 128 and actor["ppo_epochs"] == 1
    assert actor["ppo_micro_batch_size_per_gpu"] == 4 and rollout["log_prob_micro_batch_size_per_gpu"] == 16
    assert actor["use_dynamic_bsz"] is True
    assert (actor["clip_ratio_low"], actor["clip_ratio_high"], actor["clip_ratio_c"]) == (0.2, 0.3, 3.0)
    assert actor["loss_agg_mode"] == "token-mean"
    assert actor["use_kl_loss"] is True and actor["kl_loss_type"] == "low_var_kl" and actor["kl_loss_coef"] == 0.01
    assert cfg["algorithm"]["use_kl_in_reward"] is False
    assert cfg["data"]["max_response_length"] == 2048 and cfg["data"]["max_prompt_length"] >= 2048
    assert rollout["max_model_len"] == cfg["data"]["max_prompt_length"] + cfg["data"]["max_response_length"]
    assert cfg["data"]["image_patch_size"] == 14
    assert cfg["trainer"]["total_epochs"] == 15 and cfg["trainer"]["test_freq"] == 5
    assert cfg["trainer"]["n_gpus_per_node"] == 8 and cfg["trainer"]["nnodes"] == 1
    assert cfg["data"]["train_files"] == [str(tmp / "data" / "geometry3k_train.parquet")]
    assert cfg["data"]["val_files"] == [str(tmp / "data" / "geometry3k_test.parquet")]
    assert cfg["reward"]["custom_reward_function"]["path"] == "pkg://reward_fns"
    assert cfg["trainer"]["default_local_dir"] == str(tmp / "outputs" / "qwen25vl_7b_care" / "checkpoints")


@pytest.mark.parametrize("name", ["qwen25vl_7b_care.sh", "qwen25vl_7b_grpo.sh"])
def test_missing_training_data_is_reported_not_fetched(dry, name):
    proc, _, tmp = dry(name)
    for stem in ("geometry3k_train", "geometry3k_test"):
        assert f"[care] DRY_RUN: missing data file {tmp / 'data' / stem}.parquet (not fetched)" in proc.stdout
    assert "data_prep.all --out" in proc.stdout
    assert not (tmp / "data").exists()


def test_care_and_grpo_differ_only_in_estimator_and_rgr(dry):
    care = flatten(printed_config(dry("qwen25vl_7b_care.sh")[0].stdout))
    grpo = flatten(printed_config(dry("qwen25vl_7b_grpo.sh")[0].stdout))
    assert set(care) == set(grpo)
    diff = {key for key in care if care[key] != grpo[key]}
    identity = {"trainer.experiment_name", "trainer.default_local_dir", "trainer.validation_data_dir",
                "actor_rollout_ref.rollout.trace.experiment_name"}  # (verl interpolates trainer.experiment_name)
    assert diff == {"algorithm.adv_estimator", "algorithm.rgr.enable"} | identity, sorted(diff)
    assert (care["algorithm.adv_estimator"], grpo["algorithm.adv_estimator"]) == ("care", "grpo")
    assert care["algorithm.rgr.enable"] is True and grpo["algorithm.rgr.enable"] is False
    for key in identity:  # the run's name and folders: the same up to care -> grpo
        assert care[key].replace("care", "grpo") == grpo[key], key


def test_qwen3_small_gpu_variant_and_extra_overrides(dry):
    cfg = printed_config(dry("qwen3vl_8b_care.sh")[0].stdout)
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert cfg["data"]["image_patch_size"] == 16
    assert cfg["algorithm"]["adv_estimator"] == "care" and cfg["actor_rollout_ref"]["rollout"]["n"] == 8
    # env: NGPUS=4 TP=1 OFFLOAD=1 MICRO_LOGPROB=8
    assert cfg["trainer"]["n_gpus_per_node"] == 4
    assert cfg["actor_rollout_ref"]["rollout"]["tensor_model_parallel_size"] == 1
    assert cfg["actor_rollout_ref"]["actor"]["fsdp_config"]["param_offload"] is True
    assert cfg["actor_rollout_ref"]["actor"]["fsdp_config"]["optimizer_offload"] is True
    assert cfg["actor_rollout_ref"]["rollout"]["log_prob_micro_batch_size_per_gpu"] == 8
    assert cfg["actor_rollout_ref"]["rollout"]["log_prob_max_token_len_per_gpu"] == 8 * 4096
    # extra hydra overrides win over the script's own
    assert cfg["trainer"]["total_epochs"] == 2
    assert cfg["actor_rollout_ref"]["rollout"]["gpu_memory_utilization"] == 0.45


def test_eval_config_is_greedy_single_sample_val_only(dry):
    proc, _, tmp = dry("eval_benchmarks.sh")
    cfg = printed_config(proc.stdout)
    val = cfg["actor_rollout_ref"]["rollout"]["val_kwargs"]
    assert val["temperature"] == 0 and val["do_sample"] is False and val["n"] == 1
    assert cfg["trainer"]["val_only"] is True and cfg["trainer"]["val_before_train"] is True
    assert cfg["trainer"]["resume_mode"] == "disable"
    assert cfg["trainer"]["validation_data_dir"] == str(tmp / "outputs" / "eval_Qwen2.5-VL-7B-Instruct" / "generations")
    assert cfg["data"]["val_files"] == [str(tmp / "data" / f"{stem}.parquet") for stem in EVAL_STEMS]
    assert cfg["reward"]["custom_reward_function"]["path"] == "pkg://recipe_care.eval_table"
    assert cfg["reward"]["custom_reward_function"]["reward_kwargs"]["mode"] == "train"
    assert cfg["algorithm"]["rgr"]["enable"] is False
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_eval_dry_run_reports_only_the_missing_file(dry):
    proc, _, tmp = dry("eval_benchmarks.sh")
    missing = [line for line in proc.stdout.splitlines() if "missing data file" in line]
    assert missing == [f"[care] DRY_RUN: missing data file {tmp / 'data' / 'logicvista_test.parquet'} (not fetched)"]
    assert "--only logicvista_test" in proc.stdout
    assert sorted(p.name for p in (tmp / "data").iterdir()) == dry.cache["eval_data_before"]  # nothing fetched


@pytest.mark.parametrize("name", ["qwen25vl_7b_care.sh", "qwen25vl_7b_grpo.sh", "qwen3vl_8b_care.sh", "eval_benchmarks.sh"])
def test_plain_run_without_gpu_fails_in_seconds(tmp_path, name):
    proc, secs = run_script(name, script_env(tmp_path), timeout=60)
    assert proc.returncode != 0
    assert "GPU(s)" in proc.stderr and "0 visible" in proc.stderr and "DRY_RUN=1" in proc.stderr, proc.stderr
    assert secs < 10, f"{name} took {secs:.1f} s to fail"
    # it failed before installing or preparing anything
    assert "pip install" not in proc.stderr and not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()


def test_bad_environment_value_is_named(tmp_path):
    proc, _ = run_script("qwen25vl_7b_care.sh", script_env(tmp_path, NGPUS="eight"), timeout=60)
    assert proc.returncode != 0 and "NGPUS must be a positive integer, got 'eight'" in proc.stderr
    proc, _ = run_script("eval_benchmarks.sh", script_env(tmp_path, MATHVISION_SPLIT="full"), timeout=60)
    assert proc.returncode != 0 and "MATHVISION_SPLIT must be test or testmini" in proc.stderr


# --- the real (non-dry) path up to the launch, on CPU -----------------------------------------------------------
# A fake `nvidia-smi` (8 GPUs) gets the script past its own GPU check and a stub `vllm` package past the install
# check; data_prep.all then prepares the benchmark files from the fixture records (DATA_PREP_ARGS), the decoding
# sidecar is written, and the preflight runs for real: torch sees no GPU, so nothing is launched.


@pytest.fixture(scope="module")
def eval_until_preflight(tmp_path_factory, fixtures_dir):
    tmp = tmp_path_factory.mktemp("real")
    (tmp / "bin").mkdir()
    smi = tmp / "bin" / "nvidia-smi"
    smi.write_text('#!/bin/sh\nfor i in 0 1 2 3 4 5 6 7; do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-fake-$i)"; done\n')
    smi.chmod(0o755)
    (tmp / "stubs" / "vllm").mkdir(parents=True)
    (tmp / "stubs" / "vllm" / "__init__.py").write_text("")
    env = script_env(tmp, DATA_PREP_ARGS=f"--local-root {fixtures_dir} --max-skip-frac 0.5 --quiet",
                     PYTHONPATH=str(tmp / "stubs"))
    env.pop("CUDA_VISIBLE_DEVICES")
    env["PATH"] = f"{tmp / 'bin'}{os.pathsep}{env['PATH']}"
    proc, secs = run_script("eval_benchmarks.sh", env, timeout=300)
    return proc, tmp


def test_real_run_prepares_data_writes_settings_and_stops_at_the_preflight(eval_until_preflight):
    proc, tmp = eval_until_preflight
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "[care] gpus: 8 visible, 8 needed" in out
    assert "pip install" not in out  # recipe_care, verl and (stub) vllm are installed: nothing to install
    for stem in EVAL_STEMS:  # prepared by data_prep.all from the local copies
        assert (tmp / "data" / f"{stem}.parquet").is_file(), stem
    run_dir = tmp / "outputs" / "eval_Qwen2.5-VL-7B-Instruct"
    settings = json.loads((run_dir / "eval_settings.json").read_text())
    assert settings["temperature"] == 0.0 and settings["do_sample"] is False and settings["n"] == 1
    assert settings["max_response_length"] == 2048 and settings["top_p"] == 1.0
    assert settings["val_files"] == [str(tmp / "data" / f"{stem}.parquet") for stem in EVAL_STEMS]
    assert "[preflight] plugin ok" in out and "[preflight] reward ok: mathvista_testmini row 0 verifies" in out
    assert "[preflight] FAILED gpus: 8 GPU(s) needed, 0 visible" in out
    assert "preflight failed (messages above); nothing was launched" in out
    assert not (run_dir / "generations").exists() and not (run_dir / "console.log").exists()


def test_real_run_preflight_accepts_the_prepared_data(eval_until_preflight):
    proc, _ = eval_until_preflight
    assert "[preflight] data ok" in proc.stdout + proc.stderr
