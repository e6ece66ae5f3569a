"""An HF-``generate`` rollout backend named ``hfcpu`` for verl 0.9.1's server-based rollout (CPU tests only).

verl 0.9.1 talks to rollout engines only through three pieces, all of which are provided here:

* :class:`HFCPUServer`: a Ray actor that owns a copy of the model and answers the token-in/token-out
  ``generate(prompt_ids=, sampling_params=, image_data=, ...) -> TokenOutput`` call of the agent loop, plus the control
  calls of a replica (``sleep``, ``wake_up``, ``abort_all_requests`` … all trivially satisfied on a CPU);
* :class:`HFCPUReplica` (a ``RolloutReplica``): launches one such server per replica for ``LLMServerManager``;
* :class:`HFCPUServerAdapter` (a ``BaseRollout``): lives inside the FSDP actor worker and pushes the trained weights
  to the server (checkpoint-engine backend ``naive``).

They are registered through verl's two rollout registries (``_ROLLOUT_REGISTRY`` and ``RolloutReplicaRegistry``) and
selected with ``actor_rollout_ref.rollout.name=hfcpu``.

A random tiny model would happily sample ``<|image_pad|>`` and friends, which breaks verl's M-RoPE position ids over
prompt+response; the server therefore suppresses every special token except EOS (and any id past the tokenizer).
Log-probabilities are computed from the raw logits divided by the temperature (what the actor recomputes), not from
the processed sampling scores.

The agent loop sends every sample of a step as its own concurrent request. The server queues them and generates the
whole queue in one batched ``generate`` per sampling setting (left-padded prompts, images concatenated in order,
each row cut at its own EOS and token budget): it waits until no new request has arrived for
``CARE_HFCPU_BATCH_WINDOW_MS`` (default 50 ms; at most ``CARE_HFCPU_BATCH_MAX_WAIT_MS``, default 500 ms, and
``CARE_HFCPU_MAX_BATCH`` rows, default 256), and requests that arrive while a batch runs form the next one. 64 short
responses then cost one ``generate`` instead of 64 (``get_batch_stats`` counts calls and requests).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hfcpu"


def server_actor_name(replica_rank: int) -> str:
    return f"{ROLLOUT_NAME}_server_{replica_rank}_0"


def _eos_ids(tokenizer, generation_config) -> set[int]:
    ids = set()
    for source in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else list(source))
    return ids


def suppressed_token_ids(tokenizer, vocab_size: int, eos_ids: set[int]) -> list[int]:
    """Every special id except EOS, plus ids the tokenizer cannot decode (``len(tokenizer) .. vocab_size-1``)."""
    special = set(tokenizer.all_special_ids)
    suppressed = {i for i in special if i not in eos_ids and i < vocab_size}
    suppressed.update(range(len(tokenizer), vocab_size))
    return sorted(suppressed)


def _mm_token_type_ids(input_ids: torch.Tensor, image_token_id: int | None, video_token_id: int | None):
    types = torch.zeros_like(input_ids, dtype=torch.int32)
    if image_token_id is not None:
        types[input_ids == image_token_id] = 1
    if video_token_id is not None:
        types[input_ids == video_token_id] = 2
    return types


@dataclass
class _Request:
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    image_data: list[Any] | None
    future: asyncio.Future | None


class HFCPUServer:
    """Ray actor serving ``generate`` with ``transformers`` on the CPU; concurrent requests are batched."""

    def __init__(self, config, model_config, replica_rank: int = 0):
        from transformers import GenerationConfig
        from verl.utils.config import omega_conf_to_dataclass
        from verl.utils.model import convert_weight_keys, get_hf_auto_model_class
        from verl.workers.config import HFModelConfig

        self.config = omega_conf_to_dataclass(config)
        self.model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        self.global_steps: int | None = None
        # sampling is reproducible from the rollout's seed (verl's ``actor_rollout_ref.rollout.seed``)
        torch.manual_seed(int(getattr(self.config, "seed", 0) or 0) + replica_rank)
        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor
        hf_config = self.model_config.hf_config

        auto_cls = get_hf_auto_model_class(hf_config)
        self.model = auto_cls.from_pretrained(
            self.model_config.local_path, dtype=torch.float32, attn_implementation="eager"
        ).eval()
        self.model.requires_grad_(False)

        # Actor-side (HF checkpoint) parameter names -> this model's state_dict keys.
        own = self.model.state_dict()
        self._key_map = {converted: key for key, converted in zip(own, convert_weight_keys(dict(own), self.model))}

        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        base_generation = getattr(self.model, "generation_config", None) or GenerationConfig()
        self.eos_ids = _eos_ids(self.tokenizer, base_generation)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.suppress_ids = suppressed_token_ids(self.tokenizer, vocab_size, self.eos_ids)
        self.image_token_id = getattr(hf_config, "image_token_id", None)
        self.video_token_id = getattr(hf_config, "video_token_id", None)
        self._lock = asyncio.Lock()
        self._pending: list[_Request] = []
        self._batcher: asyncio.Task | None = None
        self.batch_window_s = float(os.environ.get("CARE_HFCPU_BATCH_WINDOW_MS", "50")) / 1000.0
        self.max_wait_s = float(os.environ.get("CARE_HFCPU_BATCH_MAX_WAIT_MS", "500")) / 1000.0
        self.max_batch = int(os.environ.get("CARE_HFCPU_MAX_BATCH", "256"))
        self.batch_stats = {"batches": 0, "requests": 0, "max_batch": 0}
        self.last_update: dict[str, Any] = {}
        print(
            f"[hfcpu] server {server_actor_name(replica_rank)} ready: {type(self.model).__name__}, "
            f"vocab {vocab_size}, {len(self.suppress_ids)} suppressed ids, eos {sorted(self.eos_ids)}, "
            f"nice {os.nice(0)}",
            flush=True,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # token-in/token-out generation
    # ----------------------------------------------------------------------------------------------------------------

    def _max_new_tokens(self, sampling_params: dict[str, Any], prompt_len: int) -> int:
        budget = self.config.prompt_length + self.config.response_length - prompt_len
        default = min(self.config.response_length, budget)
        requested = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens", default))
        return max(1, min(int(requested), max(budget, 1)))

    @staticmethod
    def _sampling_key(sampling_params: dict[str, Any]) -> tuple:
        """Requests with equal keys share one batched ``generate`` (max_new_tokens may differ: cut per row)."""
        temperature = float(sampling_params.get("temperature", 1.0) or 0.0)
        if temperature <= 0.0:
            return ("greedy", float(sampling_params.get("repetition_penalty", 1.0)))
        top_k = int(sampling_params.get("top_k", -1) or -1)
        return (
            temperature,
            float(sampling_params.get("top_p", 1.0)),
            top_k if top_k > 0 else -1,
            float(sampling_params.get("repetition_penalty", 1.0)),
        )

    @torch.no_grad()
    def _generate_batch_sync(self, requests: list[_Request]) -> list[tuple[list[int], list[float]]]:
        """One HF ``generate`` for requests with the same sampling key: left-padded prompts, per-row EOS and length
        cuts, log-probs of the raw logits / temperature."""
        from transformers import GenerationConfig

        params = requests[0].sampling_params
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
        for i, r in enumerate(requests):  # left padding, as generation needs
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(list(r.prompt_ids), dtype=torch.long)
            attention_mask[i, width - len(r.prompt_ids) :] = 1
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        images = [img for r in requests for img in (r.image_data or [])]
        if images:
            if self.processor is None:
                raise ValueError("hfcpu: images given but the model has no processor")
            vision = self.processor.image_processor(images=images, return_tensors="pt")
            inputs["pixel_values"] = vision["pixel_values"]
            inputs["image_grid_thw"] = vision["image_grid_thw"]
            types = _mm_token_type_ids(input_ids, self.image_token_id, self.video_token_id)
            inputs["mm_token_type_ids"] = types * attention_mask.to(types.dtype)  # padding is text
        budgets = [self._max_new_tokens(r.sampling_params, len(r.prompt_ids)) for r in requests]

        temperature = float(params.get("temperature", 1.0) or 0.0)
        greedy = temperature <= 0.0
        top_k = int(params.get("top_k", -1) or -1)
        generation_config = GenerationConfig(
            max_new_tokens=max(budgets),
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else float(params.get("top_p", 1.0)),
            top_k=None if greedy or top_k <= 0 else top_k,
            repetition_penalty=float(params.get("repetition_penalty", 1.0)),
            suppress_tokens=self.suppress_ids or None,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        out = self.model.generate(**inputs, generation_config=generation_config)
        new = out.sequences[:, width:]
        scale = 1.0 if greedy else temperature
        if out.logits:
            logits = torch.stack(out.logits, dim=1).float() / scale  # (batch, steps, vocab)
            token_lp = torch.log_softmax(logits, dim=-1).gather(-1, new[:, : logits.shape[1], None])[..., 0]
        else:
            token_lp = torch.zeros_like(new, dtype=torch.float32)
        results = []
        for i, budget in enumerate(budgets):
            ids = new[i, :budget].tolist()
            for j, tok in enumerate(ids):  # cut after the first EOS (kept, as vLLM does)
                if tok in self.eos_ids:
                    ids = ids[: j + 1]
                    break
            results.append((ids, token_lp[i, : len(ids)].tolist()))
        return results

    def _generate_sync(self, prompt_ids, sampling_params, image_data) -> tuple[list[int], list[float]]:
        """One request on its own (the batched path with a batch of one)."""
        return self._generate_batch_sync([_Request(list(prompt_ids), dict(sampling_params), image_data, None)])[0]

    async def _batch_loop(self) -> None:
        """Serve the queue: wait until requests stop arriving (``batch_window_s`` without a new one), then generate
        everything queued in as few ``generate`` calls as there are sampling keys."""
        loop = asyncio.get_running_loop()
        while self._pending:
            started = loop.time()
            seen = -1
            while (
                len(self._pending) != seen
                and len(self._pending) < self.max_batch
                and loop.time() - started < self.max_wait_s
            ):
                seen = len(self._pending)
                await asyncio.sleep(self.batch_window_s)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            groups: dict[tuple, list[_Request]] = {}
            for request in batch:
                groups.setdefault(self._sampling_key(request.sampling_params), []).append(request)
            async with self._lock:
                for group in groups.values():
                    try:
                        results = await asyncio.to_thread(self._generate_batch_sync, group)
                    except Exception as err:  # noqa: BLE001 - every waiting request gets the error
                        for request in group:
                            if not request.future.done():
                                request.future.set_exception(err)
                        continue
                    for request, result in zip(group, results):
                        if not request.future.done():
                            request.future.set_result(result)
                    self.batch_stats["batches"] += 1
                    self.batch_stats["requests"] += len(group)
                    self.batch_stats["max_batch"] = max(self.batch_stats["max_batch"], len(group))

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        if video_data or audio_data:
            raise NotImplementedError("hfcpu rollout supports text and images only")
        sampling_params = dict(sampling_params)
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(list(prompt_ids), sampling_params, image_data, future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._batch_loop())
        token_ids, log_probs = await future
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs if sampling_params.get("logprobs") else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    async def get_batch_stats(self) -> dict[str, int]:
        """How many ``generate`` calls served how many requests (largest batch too), since the server started."""
        return dict(self.batch_stats)

    # ----------------------------------------------------------------------------------------------------------------
    # weight sync
    # ----------------------------------------------------------------------------------------------------------------

    def _copy_weights(self, named_tensors: dict[str, torch.Tensor]) -> float:
        own = self.model.state_dict()
        max_delta = 0.0
        with torch.no_grad():
            for name, tensor in named_tensors.items():
                target = own[self._key_map[name]]
                source = tensor.to(dtype=target.dtype)
                if target.numel():
                    max_delta = max(max_delta, (target - source).abs().max().item())
                target.copy_(source)
        return max_delta

    async def update_weights(self, named_tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Copy the actor's full tensors (HF checkpoint names) into the served model; fail on unknown names."""
        unknown = sorted(set(named_tensors) - set(self._key_map))
        if unknown:
            raise KeyError(f"hfcpu update_weights: {len(unknown)} unknown parameter names, e.g. {unknown[:3]}")
        async with self._lock:
            max_delta = self._copy_weights(named_tensors)
        self.last_update = {"tensors": len(named_tensors), "of": len(self._key_map), "max_abs_delta": max_delta}
        print(
            f"[hfcpu] update_weights: {len(named_tensors)}/{len(self._key_map)} tensors, max_abs_delta={max_delta:.6g}",
            flush=True,
        )
        return self.last_update

    async def get_last_update(self) -> dict[str, Any]:
        return dict(self.last_update)

    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    # ----------------------------------------------------------------------------------------------------------------
    # replica control calls: nothing to free or resume on a CPU
    # ----------------------------------------------------------------------------------------------------------------

    async def ready(self) -> bool:
        return True

    async def wake_up(self, tags: list[str] | None = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def wait_for_requests_to_drain(self):
        while self._pending or (self._batcher is not None and not self._batcher.done()):
            await asyncio.sleep(0.01)
        async with self._lock:
            return

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False):
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True):
        return {"aborted": False, "request_id": request_id}

    async def resume_generation(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class HFCPUReplica(RolloutReplica):
    """One :class:`HFCPUServer` per replica; tensor/data/pipeline parallel sizes must be 1."""

    async def launch_servers(self):
        if self.world_size != 1:
            raise ValueError(f"hfcpu rollout needs tp=dp=pp=1 (world size 1), got {self.world_size}")
        name = server_actor_name(self.replica_rank)
        server = (
            ray.remote(HFCPUServer)
            .options(name=name, num_cpus=0, max_concurrency=self.max_concurrency)
            .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        )
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{ROLLOUT_NAME}://{name}"


class HFCPUServerAdapter(BaseRollout):
    """Inside the trainer worker: pushes the trained weights to this rank's :class:`HFCPUServer`."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank if replica_rank == -1 else replica_rank  # rollout world size is 1
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        wire_format: str = "named_tensors",
        global_steps: int | None = None,
        **kwargs,
    ):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hfcpu rollout takes full named tensors, got wire_format={wire_format!r}")
        named = {}
        with torch.no_grad():
            for name, tensor in weights:
                if hasattr(tensor, "full_tensor"):
                    tensor = tensor.full_tensor()
                named[name] = tensor.detach().to("cpu").clone()
        server = self._server_handle()
        await server.update_weights.remote(named)
        if global_steps is not None:
            await server.set_global_steps.remote(global_steps)


def register_hfcpu_rollout() -> None:
    """Register ``hfcpu`` in verl's rollout registries (idempotent)."""
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{__name__}.HFCPUServerAdapter"
    RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)


def _load_replica() -> type[RolloutReplica]:
    return HFCPUReplica
