"""The legacy trainer's patches (TaskRunner side), pinned verl 0.9.1; listed in ``recipe_care.patches.PATCHED_SYMBOLS``.

In ``verl.trainer.ppo.ray_trainer``:

1. ``compute_advantage`` — for ``adv_estimator == "care"`` only, the registered estimator also receives
   ``batch``, ``non_tensor_batch`` and ``meta_info`` (as verl does for ``gdpo``), and CARE's TaskRunner keys
   (``recipe_care.step_context.TASK_RUNNER_KEYS``: ``care_embeddings``) leave the batch once it has used them (the
   actor update never needs them); every other estimator goes to verl's original function unchanged.
2. ``RayPPOTrainer.__init__`` — records the trainer in ``recipe_care.step_context`` (a weak reference): its
   tokenizer, which CARE needs to find ``<think>``/``<answer>`` spans in token ids, and its ``global_steps``, the step
   ``anchor: random`` mixes into its seed. Nothing else changes.
3. ``compute_data_metrics`` — appends the failure-signal diagnostics (``signal/*``, for every estimator) and the
   metrics queued in ``recipe_care.step_context`` this step (the estimator's ``care/*``, RGR's ``rgr/*``) to verl's
   step metrics. Errors there are logged, never raised.
4. ``RayPPOTrainer._compute_ref_log_prob`` — the reference pass runs without CARE's TaskRunner keys in the batch
   (taken out for the call, put back after), so they are not shipped to the reference workers. At the authors' scale
   (4,096 rollouts x 3,584 floats) the embeddings alone are 59 MB per pass.

Rows repaired by RGR (``non_tensor_batch["rgr_row"] != 0``) were sampled at the repair temperature/top-p, so the
rollout engine's log-probs of their tokens do not describe the policy the actor recomputes. Two functions that
``fit()`` imports when it calls them keep those rows apart; without repaired rows both are verl's originals:

5. ``verl.utils.debug.metrics.calculate_debug_metrics`` — ``training/rollout_probs_diff_*`` and
   ``training/rollout_actor_probs_pearson_corr`` over the ordinary rows only; the repaired rows get the same metrics
   as ``rgr/rollout_probs_diff_*`` / ``rgr/rollout_actor_probs_pearson_corr``.
6. ``verl.trainer.ppo.rollout_corr_helper.compute_rollout_correction_and_add_to_batch`` — rollout correction (IS
   weights, rejection sampling, ``rollout_corr/*`` metrics) computed on the ordinary rows only; repaired rows keep
   their response mask and get IS weight 1, i.e. they are trained as samples of the old policy, as the authors
   train them. (``algorithm.rollout_correction.bypass_mode=True``, where verl would use the engine's log-probs as the
   old policy, is refused with RGR at start-up by ``recipe_care.rgr.manager``.)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from typing import Any, Iterator

import numpy as np
import torch

from recipe_care.config import is_care_estimator
from recipe_care.patches import is_marked, mark
from recipe_care.step_context import TASK_RUNNER_KEYS

logger = logging.getLogger("recipe_care")

RGR_ROW_KEY = "rgr_row"  # == recipe_care.rgr.core.ROW_KEY (no import: the RGR package needs Ray)


@contextlib.contextmanager
def task_runner_keys_held_out(batch: Any) -> Iterator[None]:
    """Take CARE's TaskRunner keys out of a DataProto for the duration of a worker call, and put them back."""
    held = {key: batch.batch.pop(key) for key in TASK_RUNNER_KEYS if key in batch.batch.keys()}
    try:
        yield
    finally:
        for key, value in held.items():
            batch.batch[key] = value


def drop_task_runner_keys(batch: Any) -> None:
    """Remove CARE's TaskRunner keys from a DataProto (the estimator has used them)."""
    for key in TASK_RUNNER_KEYS:
        if key in batch.batch.keys():
            batch.batch.pop(key)


def _patch_compute_advantage(module: Any) -> None:
    original = module.compute_advantage
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        if not is_care_estimator(adv_estimator):
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
        drop_task_runner_keys(data)  # used; the actor update must not ship them
        return data

    module.compute_advantage = mark(compute_advantage)


def _patch_trainer_init(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        from recipe_care.step_context import set_trainer

        set_trainer(self)

    cls.__init__ = mark(__init__)


def _patch_data_metrics(module: Any) -> None:
    original = module.compute_data_metrics

    @functools.wraps(original)
    def compute_data_metrics(*args, **kwargs):
        metrics = original(*args, **kwargs)
        try:
            from recipe_care.diagnostics import failure_signal_metrics
            from recipe_care.step_context import pop_step_metrics

            batch = kwargs.get("batch", args[0] if args else None)
            metrics.update(failure_signal_metrics(batch))
            metrics.update(pop_step_metrics())
        except Exception:  # diagnostics must never break a training step
            logger.exception("recipe_care: diagnostics failed; training continues")
        return metrics

    module.compute_data_metrics = mark(compute_data_metrics)


def _patch_compute_ref_log_prob(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls._compute_ref_log_prob

    @functools.wraps(original)
    def _compute_ref_log_prob(self, batch, *args, **kwargs):
        with task_runner_keys_held_out(batch):
            return original(self, batch, *args, **kwargs)

    cls._compute_ref_log_prob = mark(_compute_ref_log_prob)


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

    module.calculate_debug_metrics = mark(calculate_debug_metrics)


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

    module.compute_rollout_correction_and_add_to_batch = mark(compute_rollout_correction_and_add_to_batch)


def patch_ray_trainer(module: Any) -> None:
    """Apply patches 1-4 to an imported ``verl.trainer.ppo.ray_trainer`` (idempotent)."""
    if is_marked(module.compute_advantage):
        return
    _patch_compute_advantage(module)
    _patch_trainer_init(module)
    _patch_data_metrics(module)
    _patch_compute_ref_log_prob(module)


def patch_debug_metrics(module: Any) -> None:
    """Apply patch 5 to an imported ``verl.utils.debug.metrics`` (idempotent)."""
    if not is_marked(module.calculate_debug_metrics):
        _patch_debug_metrics(module)


def patch_rollout_correction(module: Any) -> None:
    """Apply patch 6 to an imported ``verl.trainer.ppo.rollout_corr_helper`` (idempotent)."""
    if not is_marked(module.compute_rollout_correction_and_add_to_batch):
        _patch_rollout_correction(module)
