"""The ``care_rgr`` agent loop: continue a failed response from its repair context and write a new answer.

Registered in verl's agent-loop registry (``@register("care_rgr")``) when this module is imported, which happens in
every agent-loop worker process of a run that uses ``CareAgentLoopManager`` (its worker class lives in
``recipe_care.rgr.manager``, which imports this module). A row selects it with ``agent_name = "care_rgr"`` and
carries ``rgr_request = {"prefix_ids", "temperature", "top_p", "max_tokens", "generate"}`` (built by the manager).

What it does, mirroring verl's ``SingleTurnAgentLoop`` for everything but the generation:

1. the prompt is built from the row's ``raw_prompt`` exactly as the single-turn loop builds it (same images through
   ``process_multi_modal_info``, same Continuous Token builder), so the repaired row's prompt is the original prompt;
2. one ``server_manager.generate`` call on ``prompt + prefix`` with the repair sampling parameters (T, top-p,
   ``max_tokens``) and the prompt's images;
3. the output's response is ``prefix + new tokens`` with ``response_mask`` 0 on the prefix (context, not trained, as
   verl does for tool observations) and 1 on the new tokens; rollout log-probs are 0.0 on the prefix.

verl's ``_agent_loop_postprocess`` then pads, computes ``multi_modal_inputs`` / ``position_ids`` on the full sequence,
and the reward-loop worker scores the FULL response (context + new answer) with the run's reward function.

Faults never raise out of the loop: a failed generation gives ``rgr_status = "gen_error: …"`` (empty answer), a
generation without visible text ``"empty"``; padding rows (``generate = False``) never call the server
(``"padding"``). The manager discards all of those and keeps the original row.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

from recipe_care.rgr.core import REPAIR_AGENT_NAME, STATUS_KEY, is_empty_generation

logger = logging.getLogger("recipe_care")

_REQUEST_FIELDS = ("prefix_ids", "temperature", "top_p", "max_tokens", "generate")


@register(REPAIR_AGENT_NAME)
class CareRepairAgentLoop(AgentLoopBase):
    """Continuation agent loop of RGR (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_length = self.rollout_config.response_length

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs) -> AgentLoopOutput:
        request = kwargs.get("rgr_request")
        if not isinstance(request, dict) or any(f not in request for f in _REQUEST_FIELDS):
            raise ValueError(
                f"agent loop {REPAIR_AGENT_NAME!r} needs a per-row 'rgr_request' dict with {_REQUEST_FIELDS} "
                f"(built by recipe_care.rgr.manager.CareAgentLoopManager), got {request!r}"
            )
        priority = int(priority)
        prefix = [int(t) for t in request["prefix_ids"]]
        max_tokens = int(request["max_tokens"])
        if len(prefix) + max_tokens > self.response_length:
            raise ValueError(
                f"RGR repair context ({len(prefix)} tokens) + max_tokens ({max_tokens}) exceeds "
                f"rollout.response_length={self.response_length}"
            )
        messages = list(kwargs["raw_prompt"])

        multi_modal_data = await self.process_multi_modal_info(messages)
        images = multi_modal_data.get("images")
        videos = multi_modal_data.get("videos")
        audios = multi_modal_data.get("audios")
        mm_processor_kwargs = self._get_mm_processor_kwargs(audios)
        self._assert_mm_supported(bool(multi_modal_data))
        mm_inputs: dict[str, Any] = {}
        prompt_ids = await self.ct_build_initial_tokens(
            messages, images=images, videos=videos, audios=audios, mm_inputs_out=mm_inputs
        )
        mm_processor_output = self.build_sglang_video_payload(videos, mm_inputs)

        params = dict(sampling_params)
        params.update(temperature=float(request["temperature"]), top_p=float(request["top_p"]), max_tokens=max_tokens)
        want_logprobs = bool(params.get("logprobs"))

        metrics: dict[str, Any] = {}
        new_ids: list[int] = []
        new_logprobs: list[float] | None = None
        routed_experts = None
        extra_fields: dict[str, Any] = {}
        status = "padding"
        if request["generate"]:
            full_det = getattr(self.rollout_config, "full_determinism", False)
            request_id = f"det-rgr-{priority}" if full_det else uuid4().hex
            with simple_timer("generate_sequences", metrics):
                try:
                    output = await self.server_manager.generate(
                        request_id=request_id,
                        prompt_ids=prompt_ids + prefix,
                        sampling_params=params,
                        image_data=images,
                        audio_data=audios,
                        video_data=videos,
                        mm_processor_output=mm_processor_output,
                        mm_processor_kwargs=mm_processor_kwargs,
                        priority=priority,
                    )
                except Exception as err:  # a failed repair must not fail the step: the manager keeps the original
                    logger.warning("RGR: repair generation failed (row priority %d): %r", priority, err)
                    status = f"gen_error: {type(err).__name__}: {err}"[:500]
                else:
                    new_ids = [int(t) for t in output.token_ids]
                    new_logprobs = list(output.log_probs) if output.log_probs else None
                    routed_experts = output.routed_experts
                    extra_fields = dict(output.extra_fields)
                    metrics["num_preempted"] = output.num_preempted if output.num_preempted is not None else -1
                    status = "empty" if is_empty_generation(self.tokenizer, new_ids) else "ok"
        metrics.setdefault("num_preempted", -1)

        room = self.response_length - len(prefix)
        new_ids = new_ids[:room]
        response_ids = prefix + new_ids
        response_mask = [0] * len(prefix) + [1] * len(new_ids)
        response_logprobs = None
        if want_logprobs:
            got = (new_logprobs or [])[: len(new_ids)]
            response_logprobs = [0.0] * len(prefix) + got + [0.0] * (len(new_ids) - len(got))
        if routed_experts is not None:
            routed_experts = routed_experts[: len(prompt_ids) + self.response_length]

        extra_fields.update({"turn_scores": [], "tool_rewards": [], STATUS_KEY: status})
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_mask=response_mask,
            response_logprobs=response_logprobs,
            routed_experts=routed_experts,
            multi_modal_data=multi_modal_data,
            mm_processor_kwargs=mm_processor_kwargs,
            mm_processor_output=mm_processor_output,
            num_turns=2,
            metrics=metrics,
            extra_fields=extra_fields,
        )
