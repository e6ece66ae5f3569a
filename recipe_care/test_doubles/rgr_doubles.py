"""Test doubles for RGR's CPU tests (never used in training): a scripted LLM server and a scripted verifier.

Moved out of ``recipe_care.rgr`` so the mechanism package holds only shipped code. Importing it imports verl.

* :class:`ScriptedRolloutServer` — a Ray actor with the token-in/token-out ``generate`` of a verl rollout server
  (as verl's vLLM server has) that answers from a script instead of a model, deterministically:
  the main rollout of row ``i`` (verl's request id ``det-{i}`` under ``rollout.full_determinism=true``) gets
  ``main[i]``; the repair of row ``i`` (``det-rgr-{i}``, see ``recipe_care.rgr.agent_loop``) gets ``repair[i]``.
  ``RAISE`` as a scripted text makes that generation raise. Every call is recorded (request id, prompt ids, sampling
  parameters, number of images) for the tests to inspect. To spare a process on small CI machines the same actor is
  also the run's reward-loop worker: it *is* verl's ``RewardLoopWorker`` (subclassed, its ``compute_score`` path
  unchanged), so every row, repaired or not, is scored by verl's reward manager with the configured reward function.
* :class:`DirectServerClient` — verl's ``LLMServerClient`` routed straight to that one server (no load-balancer actor).
* :func:`scripted_reward` — ``reward.custom_reward_function`` for the tests: ``acc = 1`` iff the last
  ``<answer>…</answer>`` equals the ground truth; raises when the response contains :data:`RAISE_REWARD`.
"""

from __future__ import annotations

import re
from typing import Any

from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.workers.rollout.llm_server import LLMServerClient
from verl.workers.rollout.replica import TokenOutput

RAISE = "RAISE"
RAISE_REWARD = "@@"  # short: the repair is cut to max_tokens before the verifier sees it
LOGPROB = -0.25

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def scripted_reward(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    text = str(solution_str)
    if RAISE_REWARD in text:
        raise RuntimeError("scripted reward failure")
    found = _ANSWER.findall(text)
    pred = found[-1].strip() if found else ""
    acc = 1.0 if found and pred == str(ground_truth).strip() else 0.0
    return {"score": acc, "acc": acc, "saw_cue": 1.0 if "<repair>" in text else 0.0, "pred": pred}


class ScriptedRolloutServer(RewardLoopWorker):
    """Scripted rollout server + verl reward-loop worker in one Ray actor (see the module docstring)."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.tokenizer = self.input_tokenizer
        self.response_length = int(config.actor_rollout_ref.rollout.response_length)
        self.main: dict[int, str] = {}
        self.repair: dict[int, str] = {}
        self.calls: list[dict] = []

    async def set_script(self, main: dict, repair: dict) -> None:
        self.main = {int(k): v for k, v in main.items()}
        self.repair = {int(k): v for k, v in repair.items()}
        self.calls = []

    async def get_calls(self) -> list[dict]:
        return list(self.calls)

    async def ready(self) -> bool:
        return True

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        **kwargs: Any,
    ) -> TokenOutput:
        self.calls.append({
            "request_id": request_id,
            "prompt_ids": list(prompt_ids),
            "sampling_params": dict(sampling_params),
            "images": len(image_data or []),
        })
        if request_id.startswith("det-rgr-"):
            text = self.repair[int(request_id[len("det-rgr-"):])]
        elif request_id.startswith("det-"):
            text = self.main[int(request_id[len("det-"):])]
        else:
            raise ValueError(f"scripted server needs rollout.full_determinism=true (request ids det-*), got {request_id}")
        if text == RAISE:
            raise RuntimeError(f"scripted generation failure for {request_id}")
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        limit = int(sampling_params.get("max_tokens", self.response_length))
        ids = ids[: max(1, limit)]
        return TokenOutput(
            token_ids=ids,
            log_probs=[LOGPROB] * len(ids) if sampling_params.get("logprobs") else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={"global_steps": 0},
        )


class DirectServerClient(LLMServerClient):
    """``LLMServerClient`` whose every request goes to one given server actor."""

    def __init__(self, config: Any, server: Any):
        super().__init__(config, load_balancer_handle=None)
        self._server = server

    async def _acquire_server(self, request_id: str, **extra) -> tuple[str, Any]:
        return "scripted", self._server

    def _release_server(self, server_id: str, request_id: str | None = None) -> None:
        return None


def compose_config(model_path: Any, overrides: Any = ()) -> Any:
    """verl 0.9.1's ``ppo_trainer`` config for the RGR tests: the tiny model, the scripted reward, CARE + RGR on,
    ``rollout.full_determinism`` (request ids the scripted server keys on), 2 agent-loop workers, short lengths.
    ``overrides`` (hydra syntax) come last."""
    import os

    import verl
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    base = [
        f"actor_rollout_ref.model.path={model_path}",
        "algorithm.adv_estimator=care",
        "+algorithm.rgr.enable=true",
        "+algorithm.rgr.max_tokens=16",
        "data.max_prompt_length=256",
        "data.max_response_length=96",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.full_determinism=true",
        "actor_rollout_ref.rollout.agent.num_workers=2",
        "reward.custom_reward_function.path=pkg://recipe_care.test_doubles.rgr_doubles",
        "reward.custom_reward_function.name=scripted_reward",
    ]
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=base + list(overrides))
