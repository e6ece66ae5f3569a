"""The recipe's hydra config composes on top of the installed verl and validates; the entry point dry-runs."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import recipe_care

from recipe_care.config import CareConfig, RgrConfig

VALID = [
    "data.train_files=/nonexistent/train.parquet",
    "data.val_files=/nonexistent/test.parquet",
    "actor_rollout_ref.model.path=/nonexistent/model",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
]


def _compose(overrides=()):
    config_dir = Path(recipe_care.__file__).parent / "config"  # installed with the package (package_data)
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="care_trainer", overrides=list(overrides))


def test_composes_with_recipe_defaults():
    cfg = _compose()
    assert cfg.algorithm.adv_estimator == "care"
    assert cfg.trainer.use_v1 is False
    assert cfg.actor_rollout_ref.rollout.agent.agent_loop_manager_class == "recipe_care.rgr.manager.CareAgentLoopManager"
    assert cfg.reward.custom_reward_function.path == "pkg://reward_fns"
    assert cfg.actor_rollout_ref.rollout.n == 8
    # verl's own defaults are still there underneath
    assert cfg.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-6)
    # the yaml spells every CARE field, with the dataclass defaults
    care = CareConfig.from_omegaconf(cfg.algorithm.care)
    assert set(cfg.algorithm.care.keys()) == {f.name for f in dataclasses.fields(CareConfig)}
    assert care == CareConfig()
    assert set(cfg.algorithm.rgr.keys()) == {f.name for f in dataclasses.fields(RgrConfig)}
    assert RgrConfig.from_omegaconf(cfg.algorithm.rgr) == RgrConfig(enable=True)


def test_recipe_keys_override_without_plus():
    cfg = _compose(["algorithm.care.K=2", "algorithm.care.rescue=small", "algorithm.rgr.enable=false"])
    assert CareConfig.from_omegaconf(cfg.algorithm.care).K == 2
    assert cfg.algorithm.care.rescue == "small" and cfg.algorithm.rgr.enable is False


def test_dry_run_validates_and_prints(tmp_path):
    env = dict(os.environ, CARE_DRY_RUN="1")
    proc = subprocess.run([sys.executable, "-m", "recipe_care.main", *VALID], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adv_estimator: care" in proc.stdout and "nothing was launched" in proc.stdout


def test_recipe_validation_rejects_bad_care_key_and_v1():
    from recipe_care.main import validate_recipe_config

    with pytest.raises(ValueError, match=r"unknown key\(s\) \['KK'\]"):
        validate_recipe_config(_compose(["+algorithm.care.KK=3"]))
    with pytest.raises(ValueError, match=r"trainer\.use_v1=False"):
        validate_recipe_config(_compose(["trainer.use_v1=True"]))
