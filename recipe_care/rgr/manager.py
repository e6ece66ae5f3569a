"""``CareAgentLoopManager``: verl's ``AgentLoopManager`` plus Reflection-Guided Resampling inside the rollout phase.

Enable with ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class=recipe_care.rgr.manager.CareAgentLoopManager``
(no ``+`` inside the recipe's own yaml) and ``algorithm.rgr.enable=true``. It runs in the TaskRunner process, where
verl's trainer calls ``generate_sequences`` before it puts the inference engine to sleep, so the repair generation
shares the awake engine of the step. One training step:

1. the normal rollout: ``AgentLoopManager.generate_sequences(prompts)`` (verl, unchanged; rewards come from the
   reward-loop workers, so the output carries ``rm_scores`` and ``acc``);
2. selection (``recipe_care.rgr.core.select_representatives``): per group (``uid``) with a correct rollout and a
   failure, the failure nearest to the anchor; the think/answer spans this parses stay on the output
   (``recipe_care.spans.batch_spans``), so the pooling mask and the estimator of the step do not parse them again;
3. ONE batched repair call ``AgentLoopManager.generate_sequences(repairs)`` for all groups of the step: the repair
   rows are the original prompt rows with ``agent_name = "care_rgr"`` and an ``rgr_request`` (repair context ids,
   T, top-p, max_tokens), padded to a multiple of the agent-loop worker count (padding rows do not generate) and
   unpadded after; the reward-loop workers score them with the same reward function as every row;
4. the splice: each successful repair replaces the failure it repairs, in place (batch size and row order kept),
   with the spans of its new response;
   columns ``rgr_row`` / ``rgr_failed`` (floats 0/1, on every row) tell the ``care`` estimator.

Validation batches (``meta_info["validate"]``) and runs with RGR off only get the two columns (all 0); RGR off uses
verl's own worker class, so it behaves exactly like the parent. Faults of a repair (failed or empty generation, an
error of the repair call such as a reward-function exception, a non-finite score) leave the original row in place;
``rgr/*`` metrics count them per step (``recipe_care.step_context.push_step_metrics``) and ``self.rgr_totals`` over
the run.

Rollout log-probs: the engine reports the repaired tokens' log-probs at the repair temperature / top-p, while the
actor recomputes the old log-probs at the rollout temperature. ``algorithm.rollout_correction.bypass_mode=True``
(engine log-probs as the old policy) is therefore refused at start-up; in verl's default (decoupled) mode
``recipe_care.patches.trainer`` keeps repaired rows out of rollout correction and reports their log-prob gap as
``rgr/rollout_probs_diff_*`` instead of mixing it into ``training/rollout_probs_diff_*``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import ray
import torch

from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopWorker
from verl.protocol import DataProto, pad_dataproto_to_divisor, unpad_dataproto
from verl.utils.ray_utils import auto_await

import recipe_care.rgr.agent_loop  # noqa: F401  (registers the "care_rgr" agent loop in this process)
from recipe_care.advantage import acc_from_scores, is_correct
from recipe_care.config import CareConfig, RgrConfig, config_get, is_care_estimator
from recipe_care.log import warn_once
from recipe_care.rgr.core import (
    FAILED_KEY,
    REPAIR_AGENT_NAME,
    REQUEST_KEY,
    ROW_KEY,
    STATUS_KEY,
    StepStats,
    build_repair_context,
    first_finite,
    fixed_context_tokens,
    positive_mask,
    select_representatives,
    splice_rows,
    truncate_cue,
    zero_flags,
)
from recipe_care.spans import TagSpanParser, batch_spans, response_valid_mask
from recipe_care.step_context import push_step_metrics

logger = logging.getLogger("recipe_care")


class CareAgentLoopWorker(AgentLoopWorker):
    """verl's ``AgentLoopWorker``, unchanged. Defined here so that unpickling it in a Ray worker process imports this
    module, and with it ``recipe_care.rgr.agent_loop``, which registers the ``care_rgr`` agent loop there."""


class CareAgentLoopManager(AgentLoopManager):
    """verl ``AgentLoopManager`` with RGR (see the module docstring)."""

    def __init__(
        self,
        config: Any,
        llm_client: Any,
        teacher_client: Any = None,
        reward_loop_worker_handles: list | None = None,
    ):
        self.rgr_config = RgrConfig.from_omegaconf(config_get(config, "algorithm", "rgr"))
        self.care_config = CareConfig.from_omegaconf(config_get(config, "algorithm", "care"))
        if self.rgr_config.enable:
            self.agent_loop_workers_class = ray.remote(CareAgentLoopWorker)
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles)
        self.rgr_totals: Counter = Counter()
        self.tokenizer = None
        if self.rgr_config.enable:
            self._setup_rgr(config, reward_loop_worker_handles)

    # ------------------------------------------------------------------------------------------------------------
    # setup checks
    # ------------------------------------------------------------------------------------------------------------

    def _setup_rgr(self, config: Any, reward_handles: list | None) -> None:
        from verl.utils.config import omega_conf_to_dataclass

        estimator = config_get(config, "algorithm", "adv_estimator")
        if not is_care_estimator(estimator):
            raise ValueError(
                f"algorithm.rgr.enable=true needs algorithm.adv_estimator=care (got {str(estimator)!r}): only the care "
                "estimator knows what a repaired row (rgr_row / rgr_failed) is"
            )
        if reward_handles is None:
            raise ValueError(
                "RGR needs the rewards inside the rollout, i.e. verl's agent-loop reward workers "
                "(reward_loop_worker_handles), which verl passes only when no colocated reward model is used "
                "(reward.reward_model.enable=false or a standalone reward-model pool)"
            )
        if bool(config_get(config, "algorithm", "rollout_correction", "bypass_mode")):
            raise ValueError(
                "algorithm.rgr.enable=true cannot run with algorithm.rollout_correction.bypass_mode=True: bypass mode "
                "uses the rollout engine's log-probs as the old policy, and a repaired row's tokens were sampled at "
                f"algorithm.rgr.temperature={self.rgr_config.temperature} / top_p={self.rgr_config.top_p} (the "
                "engine reports log-probs after temperature and top-p), not at the rollout temperature the actor "
                "uses, so their PPO ratio and rollout-correction weights would be wrong. Set "
                "algorithm.rollout_correction.bypass_mode=False (verl then recomputes the old log-probs; repaired rows "
                "are kept out of rollout correction) or algorithm.rgr.enable=false."
            )
        if bool(config_get(config, "skip", "rollout", "enable")):
            raise ValueError("RGR cannot run with verl's rollout skip cache (skip.rollout.enable=true): the cache "
                             "would also capture or replay the repair generation")
        self.tokenizer = omega_conf_to_dataclass(config.actor_rollout_ref.model).tokenizer
        self.response_length = int(self.rollout_config.response_length)
        self.cue = truncate_cue(self.tokenizer, self.rgr_config.cue, self.rgr_config.max_cue_tokens)
        self.context_budget = self.response_length - self.rgr_config.max_tokens
        fixed = fixed_context_tokens(self.tokenizer, self.cue)
        if self.context_budget < fixed:
            raise ValueError(
                f"algorithm.rgr.max_tokens={self.rgr_config.max_tokens} plus the fixed part of a repair context "
                f"({fixed} tokens: tags and cue) must fit actor_rollout_ref.rollout.response_length="
                f"{self.response_length}; lower algorithm.rgr.max_tokens or raise data.max_response_length"
            )
        self.span_parser = TagSpanParser(self.tokenizer)

    # ------------------------------------------------------------------------------------------------------------
    # rollout
    # ------------------------------------------------------------------------------------------------------------

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        """verl's rollout, then (training batches, RGR on) one batched repair call and the in-place splice."""
        output = await super().generate_sequences(prompts)
        if not self.rgr_config.enable or prompts.meta_info.get("validate", False):
            output.non_tensor_batch[ROW_KEY], output.non_tensor_batch[FAILED_KEY] = zero_flags(len(output))
            return output
        start = time.perf_counter()
        output, stats = await self._repair(prompts, output)
        stats.seconds = time.perf_counter() - start
        metrics = stats.metrics()
        push_step_metrics(metrics)
        for key, value in metrics.items():
            if key not in ("rgr/pass_rate", "rgr/extra_token_share", "rgr/time_s"):
                self.rgr_totals[key] += value
        logger.info("RGR step: %s", {k: round(v, 4) for k, v in metrics.items()})
        return output

    def _positives(self, output: DataProto) -> torch.Tensor:
        if "acc" in output.non_tensor_batch:
            return positive_mask(output.non_tensor_batch["acc"], len(output))
        warn_once("rgr.acc", "RGR: the reward function returns no 'acc'; a rollout counts as correct when its reward "
                             "is >= 1 (return a dict with 'acc', as reward_fns.compute_score does)")
        return positive_mask(acc_from_scores(output.batch["rm_scores"].sum(-1)).numpy(), len(output))

    def _new_positive(self, rep_out: DataProto, i: int) -> bool | None:
        """Verdict of repair row ``i`` from the same reward as the main rollout; None when it is unusable."""
        score = float(rep_out.batch["rm_scores"][i].sum())
        if not np.isfinite(score):
            return None
        if "acc" in rep_out.non_tensor_batch:
            acc = first_finite(rep_out.non_tensor_batch["acc"], i)
            return None if acc is None else bool(is_correct([acc])[0])
        return bool(is_correct(acc_from_scores([score]))[0])

    async def _repair(self, prompts: DataProto, output: DataProto) -> tuple[DataProto, StepStats]:
        n = len(output)
        stats = StepStats()
        if "uid" not in prompts.non_tensor_batch:
            raise ValueError("RGR needs the 'uid' column of the rollout batch to find the groups of a prompt")
        if "__do_sample__" in prompts.non_tensor_batch:
            raise ValueError("RGR does not support verl's combined REMAX batches (__do_sample__)")
        if len(prompts) != n:
            raise ValueError(f"RGR: rollout output has {n} rows for {len(prompts)} prompts")
        if "rm_scores" not in output.batch.keys():
            raise ValueError("RGR: the rollout output has no rm_scores; the agent-loop reward workers did not score it")
        responses = output.batch["responses"]
        valid = response_valid_mask(output.batch)
        spans = batch_spans(output.batch, self.span_parser)  # the step's one full parse: carried on the batch
        stats.main_tokens = int(output.batch["response_mask"].sum())

        sel = select_representatives(
            prompts.non_tensor_batch["uid"],
            self._positives(output),
            responses,
            valid,
            spans,
            ngram_n=self.care_config.ngram_n,
            ngram_dim=self.care_config.ngram_dim,
        )
        stats.groups = sel.groups
        stats.skipped["no_positive"] = sel.skipped_no_positive
        stats.skipped["no_failure"] = sel.skipped_no_failure
        rgr_row, rgr_failed = zero_flags(n)
        if not sel.rows:
            output.non_tensor_batch[ROW_KEY], output.non_tensor_batch[FAILED_KEY] = rgr_row, rgr_failed
            return output, stats

        # repair requests: the original prompt rows, continued by the care_rgr agent loop from their context
        rows = sel.rows
        k = len(rows)
        stats.triggered = k
        requests = np.empty(k, dtype=object)
        for j, row in enumerate(rows):
            text = self.tokenizer.decode(responses[row][valid[row]].tolist(), skip_special_tokens=True)
            ctx = build_repair_context(self.tokenizer, text, self.cue, self.context_budget)
            stats.cut_contexts += int(ctx.cut_tokens > 0)
            requests[j] = {
                "prefix_ids": ctx.ids,
                "temperature": self.rgr_config.temperature,
                "top_p": self.rgr_config.top_p,
                "max_tokens": min(self.rgr_config.max_tokens, self.response_length - len(ctx.ids)),
                "generate": True,
            }
        batch = prompts.select_idxs(np.asarray(rows, dtype=np.int64))
        batch.meta_info = dict(prompts.meta_info)
        batch.non_tensor_batch["agent_name"] = np.array([REPAIR_AGENT_NAME] * k, dtype=object)
        batch.non_tensor_batch[REQUEST_KEY] = requests
        batch, pad = pad_dataproto_to_divisor(batch, len(self.agent_loop_workers))
        if pad:  # padding rows only satisfy verl's chunking: they never reach the engine
            padded = batch.non_tensor_batch[REQUEST_KEY].copy()
            for j in range(k, k + pad):
                padded[j] = {**padded[j], "generate": False}
            batch.non_tensor_batch[REQUEST_KEY] = padded
        stats.pad_rows = pad

        try:
            rep_out = await super().generate_sequences(batch)  # the step's ONE repair generation call
        except Exception:
            logger.exception("RGR: the repair call failed (%d repairs dropped, original rows kept)", k)
            stats.skipped["reward_error"] = k
            output.non_tensor_batch[ROW_KEY], output.non_tensor_batch[FAILED_KEY] = rgr_row, rgr_failed
            return output, stats
        rep_out = unpad_dataproto(rep_out, pad)

        status = rep_out.non_tensor_batch.get(STATUS_KEY)
        if status is None or len(rep_out) != k:
            raise RuntimeError(f"RGR: the repair call returned {len(rep_out)} rows without {STATUS_KEY!r} for {k} "
                               f"requests; is agent loop {REPAIR_AGENT_NAME!r} the one registered?")
        new_tokens = rep_out.batch["response_mask"].sum(-1)
        keep, verdict = [], []
        for j in range(k):
            stats.repair_tokens += int(new_tokens[j])
            state = str(status[j])
            if state.startswith("gen_error"):
                stats.skipped["gen_error"] += 1
                continue
            if state == "empty":
                stats.skipped["empty"] += 1
                continue
            if state != "ok":
                raise RuntimeError(f"RGR: unexpected repair status {state!r}")
            positive = self._new_positive(rep_out, j)
            if positive is None:
                warn_once("rgr.score", "RGR: a repaired row got a non-finite or non-numeric reward; it is dropped "
                                       "(counted in rgr/skipped_reward_error)")
                stats.skipped["reward_error"] += 1
                continue
            keep.append(j)
            verdict.append(positive)
        stats.passed = sum(verdict)
        stats.failed = len(verdict) - stats.passed
        if keep:
            target = [rows[j] for j in keep]
            repaired = rep_out.select_idxs(np.asarray(keep, dtype=np.int64))
            batch_spans(repaired.batch, self.span_parser)  # spans of the repaired rows only, spliced in with them
            output, report = splice_rows(output, repaired, target)
            if report.filled:
                warn_once("rgr.filled", "RGR: repaired rows have no value for column(s) %s of the rollout output; "
                                        "they hold None there", report.filled)
            if report.dropped:
                warn_once("rgr.dropped", "RGR: column(s) %s of the repair output are not in the rollout output and "
                                         "are not carried into the training batch", report.dropped)
            rgr_row[target] = 1.0
            rgr_failed[[t for t, ok in zip(target, verdict) if not ok]] = 1.0
        output.non_tensor_batch[ROW_KEY], output.non_tensor_batch[FAILED_KEY] = rgr_row, rgr_failed
        return output, stats


__all__ = ["CareAgentLoopManager", "CareAgentLoopWorker"]
