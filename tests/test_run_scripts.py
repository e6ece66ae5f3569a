"""The GPU run scripts on a CPU host: every script's DRY_RUN composes and validates its full verl config (through
``recipe_care.main`` and verl's ``validate_config``) and prints it; a plain run stops in seconds without GPUs.

One dry run per script (module fixture, ~15 s each on 2 cores), shared by the assertions below. The CARE run and the
GRPO baseline must differ only in the estimator, RGR and the run's name/folders. Static checks read the scripts
themselves: one ``python -m recipe_care.main`` call each, ``"$@"`` last, headers that state the real defaults, no
training setting spelled both in a script and in ``care_trainer.yaml``. The memory test recomputes the arithmetic of
docs/run_scripts.md ("Memory") from the composed configs and checks both the budget and the document.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import CARE_VENV, run_group

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "run_scripts"
GPU_SCRIPTS = ("qwen25vl_7b_care.sh", "qwen25vl_7b_grpo.sh", "qwen3vl_8b_care.sh", "eval_benchmarks.sh")
TRAIN_SCRIPTS = GPU_SCRIPTS[:3]
EVAL_STEMS = ("mathvista_testmini", "mmmu_pro_standard10", "mmmu_pro_vision", "mathverse_testmini", "mathvision_test",
              "wemath_testmini", "logicvista_test")


def script_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARE_", "VERL_"))}
    env.update(
        CARE_VENV=CARE_VENV,  # the configured venv (conftest): never a new <repo>/.venv and a multi-GB install
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        DATA_DIR=str(tmp / "data"),
        OUTPUT_DIR=str(tmp / "outputs"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",  # no GPU, even on a GPU host
        TMPDIR=str(tmp),
    )
    for key in ("DRY_RUN", "NGPUS", "NNODES", "RAY_ADDRESS", "TP", "OFFLOAD", "MODEL_PATH", "EXPERIMENT_NAME",
                "LOGGER", "WANDB", "MICRO_UPDATE", "MICRO_LOGPROB", "GPU_MEM_UTIL", "ROLLOUT_BATCH", "MINI_BATCH",
                "TOTAL_EPOCHS"):
        env.pop(key, None)
    env.update(extra)
    return env


def run_script(name: str, env: dict[str, str], *args: str, timeout: int = 180):
    t0 = time.monotonic()
    proc = run_group(["bash", str(SCRIPTS / name), *args], env=env, capture_output=True, text=True,
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


SMALL_GPU_ENV = {"OFFLOAD": "1", "MICRO_UPDATE": "2", "MICRO_LOGPROB": "4", "GPU_MEM_UTIL": "0.5"}  # 8 x 40-48 GB
DRY_RUNS = {
    # training scripts: an empty DATA_DIR
    "qwen25vl_7b_care.sh": ({}, ()),
    "qwen25vl_7b_grpo.sh": ({}, ()),
    # the documented 40-48 GB variant on two nodes of 4 GPUs (a Ray cluster), and extra hydra overrides (applied last)
    "qwen3vl_8b_care.sh": (SMALL_GPU_ENV | {"NGPUS": "4", "NNODES": "2", "RAY_ADDRESS": "10.0.0.1:6379", "TP": "4"},
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
            # the training scripts share DATA_DIR/OUTPUT_DIR
            group = "eval" if name == "eval_benchmarks.sh" else "train"
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


@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_dry_run_composes_validates_and_prints(dry, name):
    proc, secs, tmp = dry(name)
    assert proc.returncode == 0, f"{name} DRY_RUN failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
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
    # memory (docs/run_scripts.md, "Memory"): dynamic batches of MICRO_x * 4096 tokens per GPU, chunked entropy
    assert actor["use_dynamic_bsz"] is True and actor["ppo_max_token_len_per_gpu"] == 4 * 4096
    assert rollout["log_prob_max_token_len_per_gpu"] == 6 * 4096
    assert cfg["actor_rollout_ref"]["ref"]["log_prob_max_token_len_per_gpu"] == 6 * 4096
    assert actor["entropy_from_logits_with_chunking"] is True
    # the paper's hidden-state embeddings, required rather than silently replaced by n-grams
    assert cfg["actor_rollout_ref"]["model"]["use_fused_kernels"] is False
    assert cfg["algorithm"]["care"]["similarity"] == "hidden"
    # the recipe travels to every Ray worker (one node or many)
    runtime_env = cfg["ray_kwargs"]["ray_init"]["runtime_env"]
    assert runtime_env["py_modules"] == [str(REPO / "recipe_care"), str(REPO / "reward_fns")]
    assert runtime_env["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == "recipe_care._verl_plugin"
    assert runtime_env["env_vars"]["VERL_FILE_LOGGER_PATH"] == str(tmp / "outputs/qwen25vl_7b_care/metrics.jsonl")
    assert cfg["ray_kwargs"]["ray_init"]["address"] is None
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
                "actor_rollout_ref.rollout.trace.experiment_name",  # (verl interpolates trainer.experiment_name)
                "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"}  # the run's metrics file
    assert diff == {"algorithm.adv_estimator", "algorithm.rgr.enable"} | identity, sorted(diff)
    assert (care["algorithm.adv_estimator"], grpo["algorithm.adv_estimator"]) == ("care", "grpo")
    assert care["algorithm.rgr.enable"] is True and grpo["algorithm.rgr.enable"] is False
    for key in identity:  # the run's name and folders: the same up to care -> grpo
        assert care[key].replace("care", "grpo") == grpo[key], key


def test_qwen3_small_gpu_multi_node_variant_and_extra_overrides(dry):
    cfg = printed_config(dry("qwen3vl_8b_care.sh")[0].stdout)
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert cfg["data"]["image_patch_size"] == 16
    assert cfg["algorithm"]["adv_estimator"] == "care" and cfg["actor_rollout_ref"]["rollout"]["n"] == 8
    # env: NGPUS=4 NNODES=2 RAY_ADDRESS=10.0.0.1:6379 TP=4 OFFLOAD=1 MICRO_UPDATE=2 MICRO_LOGPROB=4 GPU_MEM_UTIL=0.5
    assert cfg["trainer"]["n_gpus_per_node"] == 4 and cfg["trainer"]["nnodes"] == 2
    assert cfg["ray_kwargs"]["ray_init"]["address"] == "10.0.0.1:6379"
    assert cfg["actor_rollout_ref"]["rollout"]["tensor_model_parallel_size"] == 4
    assert cfg["actor_rollout_ref"]["actor"]["fsdp_config"]["param_offload"] is True
    assert cfg["actor_rollout_ref"]["actor"]["fsdp_config"]["optimizer_offload"] is True
    assert cfg["actor_rollout_ref"]["actor"]["ppo_max_token_len_per_gpu"] == 2 * 4096
    assert cfg["actor_rollout_ref"]["rollout"]["log_prob_max_token_len_per_gpu"] == 4 * 4096
    assert cfg["actor_rollout_ref"]["ref"]["log_prob_max_token_len_per_gpu"] == 4 * 4096
    # extra hydra overrides win over the script's own (GPU_MEM_UTIL=0.5)
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
    assert cfg["reward"]["custom_reward_function"]["path"] == "pkg://reward_fns.evaluation"
    assert cfg["reward"]["custom_reward_function"]["reward_kwargs"]["mode"] == "train"
    assert cfg["algorithm"]["rgr"]["enable"] is False
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_eval_dry_run_reports_only_the_missing_file(dry):
    proc, _, tmp = dry("eval_benchmarks.sh")
    missing = [line for line in proc.stdout.splitlines() if "missing data file" in line]
    assert missing == [f"[care] DRY_RUN: missing data file {tmp / 'data' / 'logicvista_test.parquet'} (not fetched)"]
    assert "--only logicvista_test" in proc.stdout
    assert sorted(p.name for p in (tmp / "data").iterdir()) == dry.cache["eval_data_before"]  # nothing fetched


@pytest.mark.parametrize("name", GPU_SCRIPTS)
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
    proc, _ = run_script("qwen25vl_7b_grpo.sh", script_env(tmp_path, OFFLOAD="yes please"), timeout=60)
    assert proc.returncode != 0 and "OFFLOAD must be 0 or 1, got 'yes please'" in proc.stderr
    proc, _ = run_script("qwen3vl_8b_care.sh", script_env(tmp_path, ROLLOUT_BATCH="-8"), timeout=60)
    assert proc.returncode != 0 and "ROLLOUT_BATCH must be a positive integer, got '-8'" in proc.stderr


@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_several_nodes_without_a_cluster_address_fail_in_seconds(tmp_path, name):
    proc, secs = run_script(name, script_env(tmp_path, NNODES="2", DRY_RUN="1"), timeout=60)
    assert proc.returncode != 0 and "NNODES=2 needs a running Ray cluster" in proc.stderr, proc.stderr
    assert "RAY_ADDRESS=<head ip>:6379" in proc.stderr and "Several nodes" in proc.stderr
    assert secs < 10


# --- the real (non-dry) path up to the launch, on CPU -----------------------------------------------------------
# A fake `nvidia-smi` (8 GPUs) gets the script past its own GPU check and a stub `vllm` package past the install
# check; data_prep.all then prepares the benchmark files from the fixture records (DATA_PREP_ARGS), the decoding
# sidecar is written, and the preflight runs for real: torch sees no GPU, so nothing is launched.


@pytest.fixture(scope="module")
def eval_until_preflight(tmp_path_factory, fixtures_dir):
    tmp = tmp_path_factory.mktemp("real")
    (tmp / "bin").mkdir()
    smi = tmp / "bin" / "nvidia-smi"
    smi.write_text('#!/bin/sh\nfor i in 0 1 2 3 4 5 6 7; do echo "GPU $i: NVIDIA H100 80GB (UUID: GPU-$i)"; done\n')
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


# --- the scripts' shape (static) -----------------------------------------------------------------------------------
def call_lines(name: str) -> list[str]:
    """The arguments of the script's one ``python -m recipe_care.main`` call, one per line."""
    lines = (SCRIPTS / name).read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if "-m recipe_care.main" in line and not line.lstrip().startswith("#")]
    assert len(starts) == 1, f"{name}: {len(starts)} recipe_care.main calls"
    assert lines[starts[0]] == 'care_launch "$PY" -m recipe_care.main \\', lines[starts[0]]
    args = []
    for line in lines[starts[0] + 1:]:
        args.append(line.strip().removesuffix("\\").strip())
        if not line.endswith("\\"):
            break
    return args


OVERRIDE = re.compile(r'^(?:\$\{(?P<var>[A-Z_]+):\+)?(?P<plus>\+{0,2})(?P<key>[a-z_][\w.]*)=(?P<value>.*?)\}?$')


def overrides(name: str) -> list[dict]:
    out = []
    for arg in call_lines(name)[:-1]:
        match = OVERRIDE.match(arg)
        assert match, f"{name}: not one hydra override per line: {arg!r}"
        out.append(match.groupdict())
    return out


@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_each_script_is_one_call_with_the_callers_overrides_last(name):
    args = call_lines(name)
    assert args[-1] in ('"$@"', '"$@" || rc=$?'), args[-1]
    keys = [o["key"] for o in overrides(name)]
    assert len(keys) == len(set(keys)), f"{name}: a key is set twice"
    assert len(keys) >= 20  # the run is spelled out in the script, not assembled elsewhere


def test_venv_check_reads_the_pins_without_importing_or_reinstalling(tmp_path):
    # every script sources _venv.sh; its checks read package metadata (importing torch + verl took 17 s per start)
    check = ('. run_scripts/_venv.sh && _care_has "torch==$CARE_TORCH" "torchvision==$CARE_TORCHVISION" "verl==0.9.1"'
             ' && ! _care_has "torch==0.0.1" && ! _care_has "no-such-distribution==1.0" && echo pins-ok')
    t0 = time.monotonic()
    proc = run_group(["bash", "-c", check], env=script_env(tmp_path), capture_output=True, text=True,
                          timeout=120, cwd=str(REPO))
    assert proc.stdout.strip() == "pins-ok", proc.stdout + proc.stderr
    assert "installing" not in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 10


def test_common_sh_is_machinery_only():
    text = (SCRIPTS / "_common.sh").read_text()
    settings = re.findall(r"^\s*\+*(?:data|actor_rollout_ref|algorithm|trainer|reward|ray_kwargs)\.[\w.]+=", text, re.M)
    assert settings == [], f"training settings in _common.sh: {settings}"


def test_the_grpo_script_is_the_care_script_but_estimator_and_rgr():
    def body(name):
        return [line for line in (SCRIPTS / name).read_text().splitlines() if not line.startswith("#")]

    care, grpo = body("qwen25vl_7b_care.sh"), body("qwen25vl_7b_grpo.sh")
    diff = sorted(set(care) ^ set(grpo))
    assert len(care) == len(grpo) and diff == sorted([
        'EXPERIMENT_NAME="${EXPERIMENT_NAME:-qwen25vl_7b_care}"',
        'EXPERIMENT_NAME="${EXPERIMENT_NAME:-qwen25vl_7b_grpo}"',
        "    algorithm.adv_estimator=care \\", "    algorithm.adv_estimator=grpo \\",
        "    algorithm.rgr.enable=True \\", "    algorithm.rgr.enable=False \\",
    ]), diff


def _yaml_leaves() -> dict:
    raw = yaml.safe_load((REPO / "recipe_care" / "config" / "care_trainer.yaml").read_text())
    raw.pop("hydra"), raw.pop("defaults")
    return flatten(raw)


@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_no_setting_is_stated_both_in_a_script_and_in_the_yaml(name):
    """A script spells what differs from care_trainer.yaml; a yaml value is never repeated (it would drift). The
    estimator/RGR pair stays visible in the training scripts; ``${VAR:+...}`` lines apply only when VAR is set."""
    leaves = _yaml_leaves()
    for o in overrides(name):
        if o["var"] or o["key"] not in leaves or leaves[o["key"]] is None:
            continue
        if name in TRAIN_SCRIPTS and o["key"] in ("algorithm.adv_estimator", "algorithm.rgr.enable"):
            continue
        if o["value"].startswith(("$", '"$')):  # from the environment: a training script would repeat the yaml's
            # default in its own; the evaluation run sets its own values (val-only, one batch per GPU)
            assert name not in TRAIN_SCRIPTS, f"{name}: {o['key']} has a default in the script and in the yaml"
            continue
        assert str(o["value"]).lower() != str(leaves[o["key"]]).lower(), f"{name}: {o['key']} repeats the yaml's value"


@pytest.mark.parametrize("name", GPU_SCRIPTS)
def test_headers_state_the_real_defaults(name):
    text = (SCRIPTS / name).read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    defaults = dict(re.findall(r'^([A-Z_]+)="\$\{\1:-(.*)\}"$', text, re.M))
    assert "NGPUS" in defaults and "MODEL_PATH" in defaults
    for var, value in defaults.items():
        assert re.search(rf"\b{var}\b", header), f"{name}: {var} is not documented in the header"
        stated = re.findall(rf"\b{var} \[([^\]]*)\]", header)
        if "$(" in value or not stated:
            continue
        assert {s.replace("<repo>", "$CARE_REPO") for s in stated} == {value}, f"{name}: {var} [{stated}] vs {value!r}"


# --- memory (docs/run_scripts.md, "Memory") --------------------------------------------------------------------------
GIB = 2 ** 30
ALLOWANCE_GIB = 8  # CUDA context + NCCL 3, a sleeping vLLM 3, all-gathered FSDP units 2: allowances, not measured
CONTEXT_GIB = 3    # the training process's CUDA context + NCCL while vLLM is awake
MODELS = {  # text model of each config.json; parameter counts (vision tower included) from the model cards
    "Qwen2.5-VL-7B": {"params": 8.29e9, "hidden": 3584, "intermediate": 18944, "layers": 28, "vocab": 152064},
    "Qwen3-VL-8B": {"params": 8.77e9, "hidden": 4096, "intermediate": 12288, "layers": 36, "vocab": 151936},
}


def memory_estimate(cfg: dict, model: dict, card_gib: float) -> dict[str, float]:
    """Per-GPU peak (GiB) of each phase of a training step, from the composed config (the formulas of the doc)."""
    actor, ref, rollout = (cfg["actor_rollout_ref"][k] for k in ("actor", "ref", "rollout"))
    assert actor["use_dynamic_bsz"] and rollout["log_prob_use_dynamic_bsz"] and ref["log_prob_use_dynamic_bsz"]
    p, h, i, n_layers, v = (model[k] for k in ("params", "hidden", "intermediate", "layers", "vocab"))
    world = cfg["trainer"]["n_gpus_per_node"] * cfg["trainer"]["nnodes"]
    offload = actor["fsdp_config"]["param_offload"]
    per_token = (3 * i + 4 * h) * 2  # forward activations: MLP intermediates + hidden streams, bf16
    t_lp, t_ref, t_up = (rollout["log_prob_max_token_len_per_gpu"], ref["log_prob_max_token_len_per_gpu"],
                         actor["ppo_max_token_len_per_gpu"])
    chunk = actor["entropy_from_logits_chunk_size"] if actor["entropy_from_logits_with_chunking"] else None
    resident = 0 if offload else 16 * p / world  # fp32 params + grads + Adam m, v, sharded over the world
    terms = {
        "logprob_state": 4 * p / world if offload else resident,
        "logprob_logits": t_lp * v * 2,
        "logprob_entropy": 3 * chunk * v * 4 if chunk else 2 * t_lp * v * 2,
        "logprob_activations": t_lp * per_token,
        "logprob_pooling": t_lp * h * 4,
        "update_state": 8 * p / world if offload else resident,
        "update_logits": t_up * v * 2,
        "update_checkpoints": n_layers * t_up * h * 2,
        "update_layer": 2 * t_up * per_token,
    }
    gib = {k: value / GIB for k, value in terms.items()}
    gib["logprob_tokens"], gib["update_tokens"] = t_lp, t_up
    gib["logprob"] = ALLOWANCE_GIB + sum(gib[k] for k in terms if k.startswith("logprob_"))
    gib["ref"] = ALLOWANCE_GIB + (resident + 4 * p / world + t_ref * (v * 2 + per_token)) / GIB
    gib["update"] = ALLOWANCE_GIB + sum(gib[k] for k in terms if k.startswith("update_"))
    gib["optimizer"] = ALLOWANCE_GIB + 16 * p / world / GIB
    gib["rollout"] = rollout["gpu_memory_utilization"] * card_gib + CONTEXT_GIB + resident / GIB
    return gib


def memory_table(configs: dict) -> list[str]:
    """The rows of the doc's table: one column per (model, card) with the budgets of that card's composed config."""
    columns = [(model, card, configs[card]) for card in (80, 40) for model in MODELS]
    rows = {
        "log-prob pass: tokens per GPU T": lambda e: f"{e['logprob_tokens']:,}",
        "actor state": lambda e: f"{e['logprob_state']:.1f}",
        "logits, bf16": lambda e: f"{e['logprob_logits']:.1f}",
        "entropy": lambda e: f"{e['logprob_entropy']:.1f}",
        "activations": lambda e: f"{e['logprob_activations']:.1f}",
        "hidden-state pooling": lambda e: f"{e['logprob_pooling']:.1f}",
        "**log-prob pass peak**": lambda e: f"**{e['logprob']:.1f}**",
        "reference pass peak": lambda e: f"{e['ref']:.1f}",
        "update pass: tokens per GPU T": lambda e: f"{e['update_tokens']:,}",
        "actor state (update)": lambda e: f"{e['update_state']:.1f}",
        "logits, bf16 (update)": lambda e: f"{e['update_logits']:.1f}",
        "checkpointed layer inputs": lambda e: f"{e['update_checkpoints']:.1f}",
        "one layer recomputed + its gradients": lambda e: f"{e['update_layer']:.1f}",
        "**update pass peak**": lambda e: f"**{e['update']:.1f}**",
        "optimizer step": lambda e: f"{e['optimizer']:.1f}",
        "**rollout (vLLM awake)**": lambda e: f"**{e['rollout']:.1f}**",
    }
    out = []
    for label, cell in rows.items():
        cells = [cell(memory_estimate(cfg, MODELS[model], card)) for model, card, cfg in columns]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def test_composed_configs_fit_the_documented_memory_budget(dry):
    """Every phase's estimated peak stays under 75 % of the card, for both models, with the budgets each script
    composes: the defaults for 80 GB, the documented 40-48 GB variant (qwen3 dry run) for 40 GB; and the numbers in
    docs/run_scripts.md are these. The old default (65,536 log-prob tokens, whole-vocabulary entropy) would not fit."""
    configs = {80: printed_config(dry("qwen25vl_7b_care.sh")[0].stdout),
               40: printed_config(dry("qwen3vl_8b_care.sh")[0].stdout)}
    configs[40]["actor_rollout_ref"]["rollout"]["gpu_memory_utilization"] = 0.5  # the variant's GPU_MEM_UTIL, not
    # the test's extra override
    for card, cfg in configs.items():
        for model in MODELS.values():
            peaks = memory_estimate(cfg, model, card)
            for phase in ("logprob", "ref", "update", "optimizer"):
                assert peaks[phase] <= 0.75 * card, (card, phase, peaks)
            assert peaks["rollout"] <= 0.9 * card, (card, peaks)
    grpo = printed_config(dry("qwen25vl_7b_grpo.sh")[0].stdout)
    qwen25 = MODELS["Qwen2.5-VL-7B"]
    assert memory_estimate(grpo, qwen25, 80) == memory_estimate(configs[80], qwen25, 80)
    old = json.loads(json.dumps(configs[80]))
    old["actor_rollout_ref"]["rollout"]["log_prob_max_token_len_per_gpu"] = 16 * 4096
    old["actor_rollout_ref"]["actor"]["entropy_from_logits_with_chunking"] = False
    doc = (REPO / "docs" / "run_scripts.md").read_text()
    old_peak = memory_estimate(old, qwen25, 80)["logprob"]
    assert old_peak > 80 and f"≈ {old_peak:.1f} GiB" in doc
    old["actor_rollout_ref"]["rollout"]["log_prob_max_token_len_per_gpu"] = 6 * 4096  # today's budget, no chunking
    assert f"≈ {memory_estimate(old, qwen25, 80)['logprob']:.1f} GiB at 24,576 tokens" in doc
    missing = [row for row in memory_table(configs) if row.split(" | ", 1)[1] not in doc]
    assert not missing, "docs/run_scripts.md's memory table is out of date; expected rows:\n" + "\n".join(
        memory_table(configs))
