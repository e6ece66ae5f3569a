"""The recipe's hydra config composes on top of the installed verl and validates; the entry point dry-runs."""

import dataclasses
import os
import re
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import recipe_care

from recipe_care.config import CareConfig, RgrConfig
from conftest import run_group

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
    manager = cfg.actor_rollout_ref.rollout.agent.agent_loop_manager_class
    assert manager == "recipe_care.rgr.manager.CareAgentLoopManager"
    assert cfg.reward.custom_reward_function.path == "pkg://reward_fns"
    assert cfg.actor_rollout_ref.rollout.n == 8
    # verl's own defaults are still there underneath
    assert cfg.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-6)
    # the yaml spells every CARE field, with the dataclass defaults
    care = CareConfig.from_omegaconf(cfg.algorithm.care)
    assert set(cfg.algorithm.care.keys()) == {f.name for f in dataclasses.fields(CareConfig)}
    assert care == CareConfig()
    assert {k: cfg.algorithm.care[k] for k in cfg.algorithm.care} == dataclasses.asdict(CareConfig())
    assert set(cfg.algorithm.rgr.keys()) == {f.name for f in dataclasses.fields(RgrConfig)}
    assert RgrConfig.from_omegaconf(cfg.algorithm.rgr) == RgrConfig(enable=True)


def test_recipe_keys_override_without_plus():
    cfg = _compose(["algorithm.care.K=2", "algorithm.care.rescue=small", "algorithm.rgr.enable=false"])
    assert CareConfig.from_omegaconf(cfg.algorithm.care).K == 2
    assert cfg.algorithm.care.rescue == "small" and cfg.algorithm.rgr.enable is False


def test_dry_run_validates_and_prints(tmp_path):
    env = dict(os.environ, CARE_DRY_RUN="1")
    proc = run_group([sys.executable, "-m", "recipe_care.main", *VALID], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adv_estimator: care" in proc.stdout and "nothing was launched" in proc.stdout


def test_recipe_validation_rejects_bad_care_key_and_v1():
    from recipe_care.main import validate_recipe_config

    with pytest.raises(ValueError, match=r"unknown key\(s\) \['KK'\]"):
        validate_recipe_config(_compose(["+algorithm.care.KK=3"]))
    with pytest.raises(ValueError, match=r"trainer\.use_v1=False"):
        validate_recipe_config(_compose(["trainer.use_v1=True"]))


def test_hidden_similarity_with_fused_kernels_is_refused_at_composition():
    from recipe_care.main import validate_recipe_config

    with pytest.raises(ValueError, match=r"similarity=hidden cannot work.*use_fused_kernels=True"):
        validate_recipe_config(_compose(["algorithm.care.similarity=hidden",
                                         "actor_rollout_ref.model.use_fused_kernels=True"]))
    validate_recipe_config(_compose(["algorithm.care.similarity=hidden"]))  # fused kernels off: fine
    validate_recipe_config(_compose(["algorithm.care.similarity=auto",
                                     "actor_rollout_ref.model.use_fused_kernels=True"]))


def test_every_ray_worker_imports_the_plugin():
    cfg = _compose()
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == "recipe_care._verl_plugin"
    assert cfg.ray_kwargs.ray_init.address is None and cfg.ray_kwargs.ray_init.runtime_env.py_modules is None


def _readme_care_table() -> dict[str, str]:
    """``algorithm.care.*`` rows of the README's config-key table: key -> default cell (a row may hold several keys)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = re.split(r"\n#+ ", text.split("### Config keys (`algorithm.care.*`)", 1)[1], maxsplit=1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        values = [v.strip() for v in cells[1].split(",")] if len(keys) > 1 else [cells[1]]
        assert len(values) == len(keys), line
        rows.update(zip(keys, values, strict=True))
    return rows


def _readme_value(cell: str):
    token = cell.strip("`").split(" (")[0].strip().strip("`")
    if token in ("null", "none"):
        return None
    if token in ("true", "false"):
        return token == "true"
    try:
        return float(token)
    except ValueError:
        return token


def test_readme_config_table_matches_care_config():
    """Every CareConfig field has a README row whose default is the dataclass default (and no row for a field that
    does not exist): the README states the defaults, CareConfig defines them."""
    rows = _readme_care_table()
    fields = {f.name: f.default for f in dataclasses.fields(CareConfig)}
    assert set(rows) == set(fields), f"README rows {sorted(rows)} vs CareConfig fields {sorted(fields)}"
    for name, default in fields.items():
        stated = _readme_value(rows[name])
        if isinstance(default, bool) or default is None or isinstance(default, str):
            assert stated == default, f"README says {name} = {rows[name]!r}, CareConfig {default!r}"
        else:
            assert stated == pytest.approx(float(default)), f"README: {name} = {rows[name]!r}, CareConfig {default!r}"
