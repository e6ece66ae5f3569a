"""The patches of verl code, all in one place (pinned verl 0.9.1; ``tests/test_patches_on_cpu.py`` checks every
symbol still exists). All three live in ``verl.trainer.ppo.ray_trainer`` (the legacy trainer) and are applied right
after that module is first imported, by a post-import hook (so ``import verl`` stays cheap in every process):

1. ``compute_advantage`` — for ``adv_estimator == "care"`` only, the registered estimator also receives
   ``batch``, ``non_tensor_batch`` and ``meta_info`` (as verl does for ``gdpo``); every other estimator goes to
   verl's original function unchanged.
2. ``RayPPOTrainer.__init__`` — records the trainer's tokenizer, which CARE needs to find ``<think>``/``<answer>``
   spans in token ids. Nothing else changes.
3. ``compute_data_metrics`` — appends the failure-signal diagnostics (for every estimator), the last CARE step's
   ``care/*`` metrics and metrics queued with ``recipe_care.diagnostics.push_step_metrics`` (RGR's ``rgr/*``) to
   verl's step metrics. Errors there are logged, never raised.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

logger = logging.getLogger("recipe_care")

TARGET = "verl.trainer.ppo.ray_trainer"
PATCHED_SYMBOLS = (
    (TARGET, "compute_advantage"),
    (TARGET, "RayPPOTrainer.__init__"),
    (TARGET, "compute_data_metrics"),
)
_MARK = "__care_patched__"


def _is_care(adv_estimator: Any) -> bool:
    return str(getattr(adv_estimator, "value", adv_estimator)) == "care"


def _patch_compute_advantage(module: Any) -> None:
    original = module.compute_advantage
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        if not _is_care(adv_estimator):
            return original(data, adv_estimator, *args, **kwargs)
        bound = signature.bind(data, adv_estimator, *args, **kwargs)
        bound.apply_defaults()
        if "response_mask" not in data.batch.keys():
            data.batch["response_mask"] = module.compute_response_mask(data)
        estimator = module.core_algos.get_adv_estimator_fn("care")
        advantages, returns = estimator(
            token_level_rewards=data.batch["token_level_rewards"],
            response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch.get("uid"),
            config=bound.arguments["config"],
            batch=data.batch,
            non_tensor_batch=data.non_tensor_batch,
            meta_info=data.meta_info,
        )
        data.batch["advantages"] = advantages
        data.batch["returns"] = returns
        return data

    setattr(compute_advantage, _MARK, True)
    module.compute_advantage = compute_advantage


def _patch_trainer_init(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        from recipe_care.verl_adapter import set_tokenizer

        set_tokenizer(getattr(self, "tokenizer", None))

    setattr(__init__, _MARK, True)
    cls.__init__ = __init__


def _patch_data_metrics(module: Any) -> None:
    original = module.compute_data_metrics

    @functools.wraps(original)
    def compute_data_metrics(*args, **kwargs):
        metrics = original(*args, **kwargs)
        try:
            from recipe_care.diagnostics import failure_signal_metrics, pop_step_metrics
            from recipe_care.verl_adapter import pop_last_metrics

            batch = kwargs.get("batch", args[0] if args else None)
            metrics.update(failure_signal_metrics(batch))
            metrics.update(pop_last_metrics())
            metrics.update(pop_step_metrics())
        except Exception:  # diagnostics must never break a training step
            logger.exception("recipe_care: diagnostics failed; training continues")
        return metrics

    setattr(compute_data_metrics, _MARK, True)
    module.compute_data_metrics = compute_data_metrics


def patch_ray_trainer(module: Any) -> None:
    """Apply the three patches to an imported ``verl.trainer.ppo.ray_trainer`` (idempotent)."""
    if getattr(module.compute_advantage, _MARK, False):
        return
    _patch_compute_advantage(module)
    _patch_trainer_init(module)
    _patch_data_metrics(module)


def is_patched(module: Any) -> bool:
    return all(
        getattr(obj, _MARK, False)
        for obj in (module.compute_advantage, module.RayPPOTrainer.__init__, module.compute_data_metrics)
    )


def install() -> None:
    """Patch now if the legacy trainer is already imported, else when it gets imported (once per process)."""
    from recipe_care import embedding_patch
    from recipe_care.post_import import when_imported

    embedding_patch.install()  # policy hidden-state embeddings in the old-log-prob pass (docs/embeddings.md)
    when_imported(TARGET, patch_ray_trainer)
