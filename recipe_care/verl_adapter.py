"""The ``care`` advantage estimator as verl 0.9.1 calls it (verl glue; the math lives in ``recipe_care.advantage``).

verl's ``compute_advantage`` passes a custom estimator only ``token_level_rewards, response_mask, index, config``.
``recipe_care.patches`` adds ``batch``, ``non_tensor_batch`` and ``meta_info`` for ``adv_estimator == "care"``
(legacy trainer), so CARE reads everything else from the batch:

| input                | source                                                 | fallback (one warning)          |
|----------------------|--------------------------------------------------------|---------------------------------|
| correctness ``acc``  | ``non_tensor_batch["acc"]`` (reward dict key)           | ``score >= 1``                  |
| z-score reward       | ``token_level_scores.sum(-1)``: the verifier's score,  | ``token_level_rewards.sum(-1)`` |
|                      | before any KL-in-reward penalty (as the authors)        |                                 |
| think/answer spans   | the span keys RGR or the pooling mask put on the batch, | whole response                  |
|                      | else ``responses`` decoded with the trainer's tokenizer |                                 |
| rationale embeddings | ``batch["care_embeddings"]`` (policy hidden states),    | hashed token n-grams of the     |
|                      | dropped from the batch after this call                  | think span                      |
| rescue log-probs     | ``old_log_probs`` (else ``rollout_log_probs``)          | first row of the group          |
| RGR flags            | ``non_tensor_batch["rgr_row"/"rgr_failed"]``            | no RGR rows                     |
| training step        | the trainer's ``global_steps`` (recorded by the         | ``meta_info["global_steps"]``,  |
|                      | ``RayPPOTrainer.__init__`` patch)                       | else 0                          |
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import torch

from recipe_care.advantage import (
    acc_from_scores,
    care_sequence_advantages,
    region_token_advantages,
    uniform_token_advantages,
)
from recipe_care.config import CareConfig, config_get
from recipe_care.diagnostics import care_metrics
from recipe_care.log import warn_once
from recipe_care.ngram_profiles import ngram_embeddings
from recipe_care.spans import anchor_lengths, batch_spans
from recipe_care.step_context import CONTEXT, EMBEDDING_KEY, push_step_metrics

logger = logging.getLogger("recipe_care")


def _float_column(values: Any, n: int, name: str) -> torch.Tensor:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"CARE: non_tensor_batch[{name!r}] must hold numbers, got {values[:3]!r}…") from err
    if arr.size != n:
        raise ValueError(f"CARE: non_tensor_batch[{name!r}] has {arr.size} entries for {n} rows")
    return torch.from_numpy(arr)


def compute_care_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    batch: Any = None,
    non_tensor_batch: Optional[dict] = None,
    meta_info: Optional[dict] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator ``care``: returns ``(advantages, returns)``, both ``[bs, response_len]``."""
    if batch is None or "responses" not in batch.keys():
        raise RuntimeError(
            "CARE needs the whole rollout batch (responses, acc, old log-probs), which only verl's legacy trainer "
            "hands to it (through recipe_care's compute_advantage patch). Run with trainer.use_v1=False "
            "(the recipe's care_trainer.yaml sets it)."
        )
    non_tensor_batch = non_tensor_batch or {}
    meta_info = meta_info or {}
    if index is None:
        index = non_tensor_batch.get("uid")
    if index is None:
        raise ValueError("CARE: the batch has no 'uid' column to group rollouts of the same prompt")
    cfg = CareConfig.from_omegaconf(config_get(config, "care"))
    n = token_level_rewards.shape[0]
    # the verifier's score, as the authors z-score it: token_level_rewards also carries the KL penalty when
    # algorithm.use_kl_in_reward=True, which must not decide which failure is "hard" nor the magnitudes
    if "token_level_scores" in batch.keys():
        rewards = batch["token_level_scores"].sum(-1).to(torch.float64)
    else:
        warn_once(
            "estimator.scores",
            "CARE: the batch has no 'token_level_scores' (verl's legacy trainer always sets them before "
            "compute_advantage); the subgroup z-score uses token_level_rewards instead.",
        )
        rewards = token_level_rewards.sum(-1).to(torch.float64)

    if "acc" in non_tensor_batch:
        acc = _float_column(non_tensor_batch["acc"], n, "acc")
    else:
        warn_once(
            "estimator.acc",
            "CARE: the batch has no 'acc' column, so a rollout counts as correct when its score is >= 1. Return a "
            "dict with an 'acc' key from the reward function (reward.custom_reward_function.path=pkg://reward_fns "
            "does).",
        )
        acc = acc_from_scores(rewards)

    responses = batch["responses"]
    if "attention_mask" in batch.keys():
        valid = batch["attention_mask"][:, -responses.shape[1]:].to(torch.bool)
    else:
        valid = response_mask.to(torch.bool)
    spans = batch_spans(batch, CONTEXT.span_parser(), valid)  # parsed earlier in the step, or now
    think_rate = 0.0
    if spans is not None:
        think_rate = float(spans.has_think.float().mean()) if n else 0.0
        think_mask, answer_mask = spans.think_mask, spans.answer_mask
        think_len, answer_len = anchor_lengths(spans, valid.sum(1))
    else:
        warn_once(
            "estimator.spans",
            "CARE: no tokenizer is known in this process, so <think>/<answer> spans cannot be found: the anchor uses "
            "the response length and token weights cover the whole response. Launch through verl's RayPPOTrainer with "
            "recipe_care installed (its patch records the trainer's tokenizer).",
        )
        think_mask = answer_mask = torch.zeros_like(valid)
        think_len = answer_len = valid.sum(1)

    embeddings = batch[EMBEDDING_KEY] if EMBEDDING_KEY in batch.keys() and cfg.similarity != "ngram" else None
    hidden = embeddings is not None
    if embeddings is None:
        if cfg.similarity == "hidden":
            raise RuntimeError(
                f"CARE: algorithm.care.similarity=hidden but the batch has no '{EMBEDDING_KEY}'. Enable the "
                "embedding worker extension or set algorithm.care.similarity=auto."
            )
        if cfg.similarity == "auto":
            warn_once(
                "estimator.embeddings",
                f"CARE: the batch carries no policy hidden-state embeddings ('{EMBEDDING_KEY}'); hard negatives are "
                "chosen by hashed token n-gram similarity of the <think> spans instead.",
            )
        span = torch.where(think_mask.any(1, keepdim=True), think_mask, valid)
        embeddings = ngram_embeddings(responses, span, n=cfg.ngram_n, dim=cfg.ngram_dim)

    seq_logprob = None
    for key in ("old_log_probs", "rollout_log_probs"):
        if key in batch.keys():
            seq_logprob = (batch[key].to(torch.float64) * response_mask.to(torch.float64)).sum(-1)
            break
    if seq_logprob is None and cfg.rescue != "off":
        warn_once("estimator.logprob",
                  "CARE: no old_log_probs in the batch: the rescue pseudo-anchor is the group's first row.")

    rgr_row = non_tensor_batch.get("rgr_row")
    rgr_failed = non_tensor_batch.get("rgr_failed")
    step = CONTEXT.training_step(meta_info)
    if step is None and cfg.anchor == "random":
        warn_once(
            "estimator.step",
            "CARE: the training step is unknown (no RayPPOTrainer recorded, no meta_info['global_steps']), so "
            "anchor: random draws the same anchors every step. Launch through verl's RayPPOTrainer with recipe_care "
            "installed.",
        )
    result = care_sequence_advantages(
        acc=acc,
        rewards=rewards,
        group_ids=index,
        think_len=think_len,
        answer_len=answer_len,
        embeddings=embeddings,
        seq_logprob=seq_logprob,
        config=cfg,
        rgr_row=None if rgr_row is None else _float_column(rgr_row, n, "rgr_row"),
        rgr_failed=None if rgr_failed is None else _float_column(rgr_failed, n, "rgr_failed"),
        step=0 if step is None else step,
    )
    if cfg.token_weighting == "region":
        trained = response_mask.to(torch.bool)  # context tokens of RGR/multi-turn rows carry no weight
        trained_think, trained_answer = think_mask & trained, answer_mask & trained
        advantages = region_token_advantages(
            seq_advantages=result.seq_advantages,
            response_mask=response_mask,
            think_mask=trained_think,
            answer_mask=trained_answer,
            acc=acc,
            gamma_pos=cfg.gamma_pos,
            think_len=trained_think.sum(1),
            answer_len=trained_answer.sum(1),
        )
    else:
        advantages = uniform_token_advantages(seq_advantages=result.seq_advantages, response_mask=response_mask)
    advantages = advantages.to(token_level_rewards.dtype)
    metrics = care_metrics(result, acc, think_len)
    metrics.update(
        {
            "care/spans_available": float(spans is not None),
            "care/think_span_rate": think_rate,
            "care/hidden_embeddings": float(hidden),
            "care/step": float(-1 if step is None else step),
        }
    )
    push_step_metrics(metrics)
    logger.info("CARE advantage: %s", {k: round(v, 4) for k, v in metrics.items()})
    return advantages, advantages

