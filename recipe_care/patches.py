"""The patches of verl code, all in one place (pinned verl 0.9.1; ``tests/test_patches_on_cpu.py`` checks every
symbol still exists). Each is applied right after its module is first imported, by a post-import hook (so
``import verl`` stays cheap in every process).

In ``verl.trainer.ppo.ray_trainer`` (the legacy trainer):

1. ``compute_advantage`` — for ``adv_estimator == "care"`` only, the registered estimator also receives
   ``batch``, ``non_tensor_batch`` and ``meta_info`` (as verl does for ``gdpo``), and ``care_embeddings`` leave the
   batch once it has used them (the actor update never needs them); every other estimator goes to verl's original
   function unchanged.
2. ``RayPPOTrainer.__init__`` — records the trainer (a weak reference): its tokenizer, which CARE needs to find
   ``<think>``/``<answer>`` spans in token ids, and its ``global_steps``, the step ``anchor: random`` mixes into its
   seed. Nothing else changes.
3. ``compute_data_metrics`` — appends the failure-signal diagnostics (for every estimator), the last CARE step's
   ``care/*`` metrics and metrics queued with ``recipe_care.diagnostics.push_step_metrics`` (RGR's ``rgr/*``) to
   verl's step metrics. Errors there are logged, never raised.

Rows repaired by RGR (``non_tensor_batch["rgr_row"] != 0``) were sampled at the repair temperature/top-p, so the
rollout engine's log-probs of their tokens do not describe the policy the actor recomputes. Two functions that
``fit()`` imports when it calls them keep those rows apart; without repaired rows both are verl's originals:

4. ``verl.utils.debug.metrics.calculate_debug_metrics`` — ``training/rollout_probs_diff_*`` and
   ``training/rollout_actor_probs_pearson_corr`` over the ordinary rows only; the repaired rows get the same metrics
   as ``rgr/rollout_probs_diff_*`` / ``rgr/rollout_actor_probs_pearson_corr``.
5. ``verl.trainer.ppo.rollout_corr_helper.compute_rollout_correction_and_add_to_batch`` — rollout correction (IS
   weights, rejection sampling, ``rollout_corr/*`` metrics) computed on the ordinary rows only; repaired rows keep
   their response mask and get IS weight 1, i.e. they are trained as samples of the old policy, as the authors
   train them. (``algorithm.rollout_correction.bypass_mode=True``, where verl would use the engine's log-probs as the
   old policy, is refused with RGR at start-up by ``recipe_care.rgr.manager``.)
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("recipe_care")

TARGET = "verl.trainer.ppo.ray_trainer"
DEBUG_METRICS = "verl.utils.debug.metrics"
ROLLOUT_CORR = "verl.trainer.ppo.rollout_corr_helper"
PATCHED_SYMBOLS = (
    (TARGET, "compute_advantage"),
    (TARGET, "RayPPOTrainer.__init__"),
    (TARGET, "compute_data_metrics"),
    (DEBUG_METRICS, "calculate_debug_metrics"),
    (ROLLOUT_CORR, "compute_rollout_correction_and_add_to_batch"),
)
_MARK = "__care_patched__"
RGR_ROW_KEY = "rgr_row"  # == recipe_care.rgr.core.ROW_KEY (no import: the RGR package needs Ray)


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
        # used; the reference pass is over and the actor update must not ship N x H floats again
        from recipe_care.verl_adapter import EMBEDDING_KEY

        if EMBEDDING_KEY in data.batch.keys():
            data.batch.pop(EMBEDDING_KEY)
        return data

    setattr(compute_advantage, _MARK, True)
    module.compute_advantage = compute_advantage


def _patch_trainer_init(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        from recipe_care.verl_adapter import set_trainer

        set_trainer(self)

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


def repaired_rows(data: Any) -> np.ndarray:
    """Row indices of a DataProto whose ``rgr_row`` flag is set (empty without RGR)."""
    flags = getattr(data, "non_tensor_batch", {}).get(RGR_ROW_KEY)
    if flags is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.asarray(flags, dtype=np.float64).reshape(-1) != 0)


def _rows(data: Any, rows: np.ndarray, keys: tuple[str, ...]) -> Any:
    """A DataProto with only ``keys`` (those present) of ``rows``."""
    from verl import DataProto

    idx = torch.as_tensor(rows, dtype=torch.long)
    return DataProto.from_dict(tensors={k: data.batch[k][idx] for k in keys if k in data.batch.keys()})


def _patch_debug_metrics(module: Any) -> None:
    original = module.calculate_debug_metrics
    keys = ("rollout_log_probs", "old_log_probs", "response_mask", "attention_mask", "responses")

    @functools.wraps(original)
    def calculate_debug_metrics(data):
        rgr = repaired_rows(data)
        if rgr.size == 0:
            return original(data)
        ordinary = np.setdiff1d(np.arange(len(data)), rgr)
        metrics = dict(original(_rows(data, ordinary, keys)))
        repaired = original(_rows(data, rgr, keys))
        metrics.update({"rgr/" + k.split("/", 1)[1]: v for k, v in repaired.items()})
        return metrics

    setattr(calculate_debug_metrics, _MARK, True)
    module.calculate_debug_metrics = calculate_debug_metrics


def _patch_rollout_correction(module: Any) -> None:
    original = module.compute_rollout_correction_and_add_to_batch
    keys = ("old_log_probs", "rollout_log_probs", "response_mask")

    @functools.wraps(original)
    def compute_rollout_correction_and_add_to_batch(batch, rollout_corr_config):
        rgr = repaired_rows(batch)
        if rgr.size == 0:
            return original(batch, rollout_corr_config)
        ordinary = np.setdiff1d(np.arange(len(batch)), rgr)
        mask = batch.batch["response_mask"]
        weights = mask.to(batch.batch["old_log_probs"].dtype).clone()  # IS weight 1 on every token of repaired rows
        metrics: dict = {}
        has_weights = rollout_corr_config.get("rollout_is", None) is not None
        if ordinary.size:
            part, metrics = original(_rows(batch, ordinary, keys), rollout_corr_config)
            idx = torch.as_tensor(ordinary, dtype=torch.long)
            mask = mask.clone()
            mask[idx] = part.batch["response_mask"].to(mask.dtype)
            if "rollout_is_weights" in part.batch.keys():
                weights[idx] = part.batch["rollout_is_weights"].to(weights.dtype)
                has_weights = True
        batch.batch["response_mask"] = mask
        if has_weights:
            batch.batch["rollout_is_weights"] = weights
        return batch, metrics

    setattr(compute_rollout_correction_and_add_to_batch, _MARK, True)
    module.compute_rollout_correction_and_add_to_batch = compute_rollout_correction_and_add_to_batch


def patch_ray_trainer(module: Any) -> None:
    """Apply the three patches to an imported ``verl.trainer.ppo.ray_trainer`` (idempotent)."""
    if getattr(module.compute_advantage, _MARK, False):
        return
    _patch_compute_advantage(module)
    _patch_trainer_init(module)
    _patch_data_metrics(module)


def patch_debug_metrics(module: Any) -> None:
    if not getattr(module.calculate_debug_metrics, _MARK, False):
        _patch_debug_metrics(module)


def patch_rollout_correction(module: Any) -> None:
    if not getattr(module.compute_rollout_correction_and_add_to_batch, _MARK, False):
        _patch_rollout_correction(module)


def is_patched(module: Any) -> bool:
    """Whether recipe_care's patches of ``module`` (one of the three patched verl modules) are installed."""
    if module.__name__ == DEBUG_METRICS:
        return bool(getattr(module.calculate_debug_metrics, _MARK, False))
    if module.__name__ == ROLLOUT_CORR:
        return bool(getattr(module.compute_rollout_correction_and_add_to_batch, _MARK, False))
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
    when_imported(DEBUG_METRICS, patch_debug_metrics)
    when_imported(ROLLOUT_CORR, patch_rollout_correction)
