"""Policy hidden-state embeddings for CARE's hard-negative selection, computed inside verl's old-log-prob pass.

verl 0.9.1 has no way to return hidden states from ``compute_log_prob``. Two small, named patches add one (listed in
``recipe_care.patches.PATCHED_SYMBOLS``), active only for ``algorithm.adv_estimator=care`` with
``algorithm.care.similarity`` ``auto`` or ``hidden``; every other run goes through verl's original functions:

1. TaskRunner, ``verl.trainer.ppo.ray_trainer.RayPPOTrainer._compute_old_log_prob``: builds the pooling mask (the
   ``<think>`` tokens of each response, else the whole response; the spans come from the batch, where RGR put them
   at rollout time, or are parsed here with the trainer's tokenizer and kept there: ``recipe_care.spans.batch_spans``)
   in verl's no-padding layout and adds it as the tensor key ``care_pool_mask`` to the TensorDict that verl sends to
   ``actor_rollout_wg.compute_log_prob`` (for the duration of this call only, the worker-group method is wrapped on
   the instance); the workers return ``care_embeddings`` next to ``log_probs``, and the wrapper adds that ``[N, H]``
   float32 tensor to the returned DataProto, which ``fit()`` unions into the batch, where the ``care`` estimator
   reads it (``recipe_care.verl_adapter``). For every ``care`` run (``ngram`` included) CARE's TaskRunner keys
   (``recipe_care.step_context.TASK_RUNNER_KEYS``) stay out of the batch for the duration of the pass.
2. Workers, ``verl.workers.engine.fsdp.transformer_impl.FSDPEngineWithLMHead.forward_step``: when the micro-batch
   carries ``care_pool_mask`` (the flag), a forward pre-hook on the policy's ``lm_head`` (its input is the
   last-layer hidden state after the final norm) pools each sample's hidden states over the mask while verl's own
   forward runs, for the remove-padding (packed) and the padded layout, Ulysses sequence-parallel shards included,
   and the ``[b, H]`` result goes into the micro-batch's ``model_output``. verl's micro-batching (static or dynamic
   batch size), ``postprocess_batch_func`` (reordering), ``_postprocess_output`` and the data-parallel collect then
   carry it back like ``log_probs``. The hook exists only during that forward.

The reference pass runs without ``care_embeddings`` and the ``compute_advantage`` patch drops them once the
estimator has used them (``recipe_care.patches.trainer``), so neither the reference workers nor the actor update
receive them.

No extra forward pass: the cost is a gather of the think-token rows of the hidden states and a float32 sum per
micro-batch, and ``N x H`` floats in the batch from the old-log-prob pass to the advantage.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

import torch

from recipe_care.config import CareConfig, config_get, is_care_run
from recipe_care.hidden_pooling import (
    HiddenStatePooler,
    packed_pool_mask,
    response_pool_mask,
    sequence_pool_mask,
)
from recipe_care.log import warn_once
from recipe_care.patches import is_marked, mark
from recipe_care.patches.trainer import task_runner_keys_held_out
from recipe_care.spans import batch_spans, response_valid_mask
from recipe_care.step_context import CONTEXT, EMBEDDING_KEY

logger = logging.getLogger("recipe_care")

MASK_KEY = "care_pool_mask"
SUPPORTED_STRATEGIES = ("fsdp", "fsdp2")


# --------------------------------------------------------------------------------------------------------------
# configuration (TaskRunner)
# --------------------------------------------------------------------------------------------------------------
def similarity_mode(config: Any) -> str | None:
    """``algorithm.care.similarity`` of a ``care`` run (validated by ``CareConfig``); None for other estimators."""
    if not is_care_run(config):
        return None
    return CareConfig.from_omegaconf(config_get(config, "algorithm", "care")).similarity


def embeddings_enabled(config: Any) -> bool:
    """True for ``adv_estimator=care`` with ``algorithm.care.similarity`` other than ``ngram``."""
    mode = similarity_mode(config)
    return mode is not None and mode != "ngram"


def unsupported_reason(config: Any) -> str | None:
    """Why the in-pass embeddings cannot run with this config (None when they can)."""
    strategy = str(config_get(config, "actor_rollout_ref", "actor", "strategy", default="fsdp"))
    if strategy not in SUPPORTED_STRATEGIES:
        return (f"actor_rollout_ref.actor.strategy={strategy}: the hidden-state embeddings hook into verl's FSDP "
                f"engine only (use fsdp or fsdp2)")
    if bool(config_get(config, "actor_rollout_ref", "model", "use_fused_kernels", default=False)):
        return ("actor_rollout_ref.model.use_fused_kernels=True: the fused log-prob kernels never call lm_head, "
                "whose input the embeddings pool (set actor_rollout_ref.model.use_fused_kernels=False)")
    return None


# --------------------------------------------------------------------------------------------------------------
# TaskRunner side: the pooling mask in, the embeddings out
# --------------------------------------------------------------------------------------------------------------
def build_pool_mask(batch: Any) -> torch.Tensor:
    """Jagged nested ``[N, j]`` float32 pooling mask of a rollout DataProto, in the layout of verl's
    ``left_right_2_no_padding`` (same per-sample lengths as the packed ``input_ids``)."""
    attention_mask = batch.batch["attention_mask"]
    valid = response_valid_mask(batch.batch)
    spans = batch_spans(batch.batch, CONTEXT.span_parser())  # parsed by RGR at rollout time, or now (and kept)
    think = None
    if spans is None:
        warn_once(
            "embeddings.spans",
            "CARE: no tokenizer is known in this process, so the hidden-state embeddings pool whole responses instead "
            "of their <think> spans.",
        )
    else:
        think = spans.think_mask
    response_mask = response_pool_mask(think, valid)
    return packed_pool_mask(sequence_pool_mask(response_mask, attention_mask), attention_mask)


def attach_pool_mask(data: Any, mask: torch.Tensor) -> None:
    """Add the mask to the no-padding TensorDict sent to ``compute_log_prob`` (after checking the layouts agree)."""
    input_ids = data["input_ids"]
    if not getattr(input_ids, "is_nested", False):
        raise RuntimeError("CARE embeddings: compute_log_prob received padded input_ids; expected verl's no-padding "
                           "layout (left_right_2_no_padding)")
    if not torch.equal(input_ids.offsets().cpu(), mask.offsets().cpu()):
        raise RuntimeError("CARE embeddings: the pooling mask does not line up with the packed input_ids "
                           f"(lengths {mask.offsets().diff().tolist()[:8]} vs "
                           f"{input_ids.offsets().diff().tolist()[:8]})")
    data[MASK_KEY] = mask


def embeddings_from_output(output: Any, n: int) -> torch.Tensor | None:
    """The ``[N, H]`` float32 embeddings in a ``compute_log_prob`` output TensorDict (None when absent)."""
    if output is None or EMBEDDING_KEY not in output.keys():
        return None
    emb = output[EMBEDDING_KEY]
    if getattr(emb, "is_nested", False):
        emb = torch.stack(list(emb.unbind()))
    emb = emb.to(torch.float32)
    if emb.dim() != 2 or emb.shape[0] != n:
        raise RuntimeError(f"CARE embeddings: expected [{n}, H] from the workers, got {tuple(emb.shape)}")
    return emb


@contextlib.contextmanager
def _capture_log_prob_call(worker_group: Any, mask: torch.Tensor, n: int):
    """Wrap ``worker_group.compute_log_prob`` on the instance for one ``_compute_old_log_prob`` call."""
    name = "compute_log_prob"
    inner = getattr(worker_group, name)
    own = name in vars(worker_group)
    captured: dict = {}

    @functools.wraps(inner)
    def compute_log_prob(data, *args, **kwargs):
        attach_pool_mask(data, mask)
        output = inner(data, *args, **kwargs)
        captured["embeddings"] = embeddings_from_output(output, n)
        return output

    setattr(worker_group, name, compute_log_prob)
    try:
        yield captured
    finally:
        if own:
            setattr(worker_group, name, inner)
        else:
            delattr(worker_group, name)


def _missing_embeddings(mode: str, reason: str) -> None:
    if mode == "hidden":
        raise RuntimeError(f"CARE: algorithm.care.similarity=hidden, but {reason}. Set "
                           "algorithm.care.similarity=auto (n-gram fallback) or ngram.")
    warn_once("embeddings.missing", f"CARE: no policy hidden-state embeddings: {reason}. Hard negatives fall back "
                                    "to n-gram similarity (algorithm.care.similarity=auto).")


def _patch_compute_old_log_prob(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls._compute_old_log_prob

    @functools.wraps(original)
    def _compute_old_log_prob(self, batch, *args, **kwargs):
        mode = similarity_mode(self.config)
        if mode is None:
            return original(self, batch, *args, **kwargs)
        reason = unsupported_reason(self.config) if mode != "ngram" else None
        if mode == "ngram" or reason is not None:
            if reason is not None:
                _missing_embeddings(mode, reason)
            with task_runner_keys_held_out(batch):
                return original(self, batch, *args, **kwargs)
        mask = build_pool_mask(batch)
        n = len(batch)
        with task_runner_keys_held_out(batch), _capture_log_prob_call(self.actor_rollout_wg, mask, n) as captured:
            result = original(self, batch, *args, **kwargs)
        embeddings = captured.get("embeddings")
        if embeddings is None:
            _missing_embeddings(mode, "the actor workers returned none (is recipe_care's verl plugin loaded in the "
                                      "Ray workers? VERL_USE_EXTERNAL_PLUGINS must allow it)")
            return result
        old_log_prob = result[0] if isinstance(result, tuple) else result
        old_log_prob.batch[EMBEDDING_KEY] = embeddings
        return result

    cls._compute_old_log_prob = mark(_compute_old_log_prob)


# --------------------------------------------------------------------------------------------------------------
# worker side: pool inside the FSDP engine's forward
# --------------------------------------------------------------------------------------------------------------
def _patch_forward_step(module: Any) -> None:
    cls = module.FSDPEngineWithLMHead
    original = cls.forward_step
    from verl.utils import tensordict_utils as tu

    @functools.wraps(original)
    def forward_step(self, micro_batch, loss_function, forward_only):
        if MASK_KEY not in micro_batch.keys():
            return original(self, micro_batch, loss_function, forward_only)
        if not forward_only:
            raise RuntimeError(f"CARE embeddings: '{MASK_KEY}' is meant for compute_log_prob, not a training step")
        remove_padding = bool(tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True))
        sp_group = getattr(self, "ulysses_parallel_group", None) if getattr(self, "use_ulysses_sp", False) else None
        pooler = HiddenStatePooler(micro_batch[MASK_KEY], remove_padding=remove_padding, sp_group=sp_group)
        with pooler.attached(self.module):
            loss, output = original(self, micro_batch, loss_function, forward_only)
        output["model_output"][EMBEDDING_KEY] = pooler.result()
        return loss, output

    cls.forward_step = mark(forward_step)


# --------------------------------------------------------------------------------------------------------------
# installation
# --------------------------------------------------------------------------------------------------------------
def patch_engine(module: Any) -> None:
    """Apply patch 2 to an imported ``verl.workers.engine.fsdp.transformer_impl`` (idempotent)."""
    if not is_marked(module.FSDPEngineWithLMHead.forward_step):
        _patch_forward_step(module)


def patch_trainer(module: Any) -> None:
    """Apply patch 1 to an imported ``verl.trainer.ppo.ray_trainer`` (idempotent)."""
    if not is_marked(module.RayPPOTrainer._compute_old_log_prob):
        _patch_compute_old_log_prob(module)
