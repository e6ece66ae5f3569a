"""The CPU rollout server batches concurrent requests (recipe_care/cpu/hf_rollout.py) without changing any result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from conftest import run_group

REPO = Path(__file__).resolve().parents[1]


def _check_batching():
    import asyncio

    import torch
    import verl  # noqa: F401
    from PIL import Image
    from verl.workers.config import RolloutConfig

    from recipe_care.cpu.hf_rollout import HFCPUServer, _mm_token_type_ids

    config = RolloutConfig(name="hfcpu", prompt_length=256, response_length=12, tensor_model_parallel_size=1)
    server = HFCPUServer(config=config, model_config={"path": os.environ["TINY_VL"]}, replica_rank=0)
    proc = server.processor
    images = [Image.new("RGB", (56 + 28 * (i % 2), 56), (40 * i, 200 - 30 * i, 90)) for i in range(6)]
    prompts = []
    for i, image in enumerate(images):  # different texts and image sizes: different prompt lengths
        text = "What is x?" + " Think." * i
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        chat = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompts.append(proc(text=[chat], images=[image], return_tensors="pt")["input_ids"][0].tolist())

    async def many(params, idx):
        return await asyncio.gather(*[
            server.generate(
                prompt_ids=prompts[i], sampling_params=dict(params), request_id=str(i), image_data=[images[i]]
            )
            for i in idx
        ])

    greedy_batched = [o.token_ids for o in asyncio.run(many({"temperature": 0}, range(6)))]
    stats_after_greedy = dict(server.batch_stats)
    greedy_single = [asyncio.run(many({"temperature": 0}, [i]))[0].token_ids for i in range(6)]
    # mixed settings in one burst: one generate per sampling setting; per-row token budgets honoured
    mixed = asyncio.run(_mixed(server, prompts, images))
    batches_for_mixed = server.batch_stats["batches"] - stats_after_greedy["batches"] - 6
    sampled = asyncio.run(many({"temperature": 0.8, "top_p": 1.0, "top_k": -1, "logprobs": True}, range(6)))
    max_err = 0.0
    for i, out in enumerate(sampled):  # batched (left-padded) log-probs = a teacher-forced forward of the row alone
        full = torch.tensor([prompts[i] + out.token_ids])
        vision = proc.image_processor(images=[images[i]], return_tensors="pt")
        with torch.no_grad():
            logits = server.model(
                input_ids=full,
                attention_mask=torch.ones_like(full),
                pixel_values=vision["pixel_values"],
                image_grid_thw=vision["image_grid_thw"],
                mm_token_type_ids=_mm_token_type_ids(full, server.image_token_id, server.video_token_id),
            ).logits[0, len(prompts[i]) - 1 : -1]
        ref = torch.log_softmax(logits / 0.8, -1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
        max_err = max(max_err, float((ref - torch.tensor(out.log_probs)).abs().max()))
    print(json.dumps({
        "greedy_equal": greedy_batched == greedy_single,
        "stats_after_greedy": stats_after_greedy,
        "mixed_lengths": [len(t) for t in mixed],
        "batches_for_mixed": batches_for_mixed,
        "max_lp_err": max_err,
        "eos_cut": all(server.tokenizer.eos_token_id not in o.token_ids[:-1] for o in sampled),
    }))


async def _mixed(server, prompts, images):
    import asyncio

    params = [
        {"temperature": 0, "max_tokens": 3},
        {"temperature": 0, "max_tokens": 7},
        {"temperature": 1.0, "max_tokens": 5},
    ]
    outs = await asyncio.gather(*[
        server.generate(prompt_ids=prompts[i], sampling_params=dict(p), request_id=f"m{i}", image_data=[images[i]])
        for i, p in enumerate(params)
    ])
    return [o.token_ids for o in outs]


def test_concurrent_requests_share_one_generate_and_match_single_requests(tmp_path):
    from recipe_care.testing import build_tiny_qwen25vl

    model = build_tiny_qwen25vl(tmp_path / "vl")
    env = dict(os.environ, CARE_CPU_BACKEND="1", VERL_PLATFORM="cpu", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", TINY_VL=str(model))
    tests = str(REPO / "tests")
    code = f"import sys; sys.path.insert(0, {tests!r}); import test_hfcpu_batching as t; t._check_batching()"
    proc = run_group([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["stats_after_greedy"] == {"batches": 1, "requests": 6, "max_batch": 6}, out
    assert out["greedy_equal"], "left-padded batched greedy decoding must equal one request at a time"
    assert out["max_lp_err"] < 1e-4, out
    assert out["eos_cut"]
    assert out["mixed_lengths"][0] <= 3 and out["mixed_lengths"][1] <= 7 and out["mixed_lengths"][2] <= 5, out
    assert out["batches_for_mixed"] == 2, "greedy and T=1 requests are two generates; different budgets share one"
