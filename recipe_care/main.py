"""The recipe's entry point: ``python -m recipe_care.main [hydra overrides]``.

It composes ``recipe_care/config/care_trainer.yaml`` (verl's ``ppo_trainer`` plus CARE, RGR, the verifiers and the
legacy trainer), checks the plugin (``recipe_care.preflight``), validates the CARE/RGR sections, and hands the
config to verl's own ``verl.trainer.main_ppo.main`` — no copy of verl's training loop.

``CARE_DRY_RUN=1`` composes and validates the full config (verl's ``validate_config`` included), prints it as YAML and
exits without starting Ray or touching a GPU.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf


def validate_recipe_config(config: DictConfig) -> None:
    """Build the CARE/RGR dataclasses (unknown keys and bad values raise) and check the trainer choice."""
    from recipe_care.config import CareConfig, RgrConfig

    CareConfig.from_omegaconf(config.algorithm.get("care"))
    RgrConfig.from_omegaconf(config.algorithm.get("rgr"))
    if config.algorithm.adv_estimator == "care" and config.trainer.get("use_v1", True):
        raise ValueError("algorithm.adv_estimator=care needs verl's legacy trainer: set trainer.use_v1=False")


def dry_run(config: DictConfig) -> str:
    """Compose-time checks without GPUs: recipe sections plus verl's own ``validate_config``."""
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    validate_recipe_config(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return OmegaConf.to_yaml(config, resolve=True)


@hydra.main(config_path="config", config_name="care_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from recipe_care.preflight import check_plugin

    print(f"[care] {check_plugin()}", flush=True)
    if os.environ.get("CARE_DRY_RUN", "0") == "1":
        print(dry_run(config), flush=True)
        print("[care] dry run: config composed and validated; nothing was launched", flush=True)
        return
    validate_recipe_config(config)
    from verl.trainer.main_ppo import main as verl_main

    verl_main(config)  # hydra.main passes a composed config straight through


if __name__ == "__main__":
    sys.exit(main())
