"""A small multimodal rollout batch and its plain-HF reference embeddings, for the hidden-state embedding checks.

Used by ``tests/test_embeddings_verl.py`` (CPU, padded layout) and ``benchmarks/gpu_check_embeddings.py`` (GPU,
remove-padding layout). Never used in training; imports torch, transformers and PIL only when called (not verl, so a
caller can compute the reference before verl patches the model classes).

* :func:`build_rollout_batch` — the tensors of verl's legacy trainer batch before ``_compute_old_log_prob``:
  left-padded prompts with one random image each, right-padded responses (:data:`RESPONSES`: with and without
  ``<think>`` spans), the attention mask; plus the per-row pieces (``pixel_values``, ``image_grid_thw``).
* :func:`position_ids` — verl's ``(4, seq)`` Qwen2.5-VL / Qwen3-VL layout: text positions, then the 3 M-RoPE rows.
* :func:`reference_embeddings` — plain HF, one unpadded sample at a time, ``hidden_states[-1]`` mean-pooled over a
  per-row token weight (the think tokens, or the whole response), L2-normalised; optionally shifted by ``k`` tokens
  to show a check can tell an off-by-one.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Sequence

RESPONSES = [
    "<think>x is 5 because 2 plus 3</think><answer>5</answer>",
    "the answer is 3",  # no think span: pool the whole response
    "<think>add the sides then divide by two</think> <answer>12</answer>",
    "<think>unclosed reasoning about the angle",  # think runs to the end
    "<think>short</think><answer>7</answer>",
    "<think>the triangle is right so use pythagoras and get 10</think><answer>10</answer>",
    "no tags here, just words and 42",
    "<think>maybe</think><answer>x</answer>",
]


def free_port() -> int:
    """A free local TCP port (for ``MASTER_PORT`` of a one-process torch.distributed group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_rollout_batch(model_dir: Path, rows: int = len(RESPONSES), image_scale: int = 1):
    """``(processor, per-row pieces, tensors)``: row ``i`` answers :data:`RESPONSES` ``[i % 8]`` to a prompt with one
    random image of 56x56 (even rows) or 84x56 (odd rows) pixels times ``image_scale``; ``tensors`` holds
    ``prompts``, ``responses``, ``input_ids`` and ``attention_mask`` as the legacy trainer lays them out."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    rng = np.random.default_rng(0)
    pieces = []
    for i in range(rows):
        text = RESPONSES[i % len(RESPONSES)]
        width, height = (56, 56) if i % 2 == 0 else (84, 56)
        pixels = rng.integers(0, 255, (height * image_scale, width * image_scale, 3), dtype=np.uint8)
        prompt = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what is x" + " ?" * (i % 3) +
                  "<|im_end|>\n<|im_start|>assistant\n")
        enc = processor(text=[prompt], images=[Image.fromarray(pixels)], return_tensors="pt")
        response = tok.encode(text, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
        pieces.append(dict(prompt=enc["input_ids"][0], response=torch.tensor(response),
                           pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"]))
    n = len(pieces)
    prompt_len = max(len(p["prompt"]) for p in pieces)
    response_len = max(len(p["response"]) for p in pieces) + 2
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    prompts = torch.full((n, prompt_len), pad, dtype=torch.long)
    responses = torch.full((n, response_len), pad, dtype=torch.long)
    attention_mask = torch.zeros(n, prompt_len + response_len, dtype=torch.long)
    for i, p in enumerate(pieces):
        lp, lr = len(p["prompt"]), len(p["response"])
        prompts[i, prompt_len - lp:] = p["prompt"]
        responses[i, :lr] = p["response"]
        attention_mask[i, prompt_len - lp:prompt_len] = 1
        attention_mask[i, prompt_len:prompt_len + lr] = 1
    tensors = dict(prompts=prompts, responses=responses, input_ids=torch.cat([prompts, responses], dim=1),
                   attention_mask=attention_mask)
    return processor, pieces, tensors


def position_ids(model: Any, tensors: dict, pieces: Sequence[dict]):
    """verl's ``(n, 4, seq)`` position ids for Qwen2.5-VL / Qwen3-VL: text positions, then the 3 M-RoPE rows, at the
    valid positions (1 elsewhere)."""
    import torch

    image_token = model.config.image_token_id
    input_ids, attention_mask = tensors["input_ids"], tensors["attention_mask"]
    n, seq = input_ids.shape
    pos = torch.ones(n, 4, seq, dtype=torch.long)
    for i, piece in enumerate(pieces):
        keep = attention_mask[i].bool()
        ids = input_ids[i, keep].unsqueeze(0)
        vision, _ = model.model.get_rope_index(ids, (ids == image_token).to(torch.int32),
                                               image_grid_thw=piece["image_grid_thw"])
        pos[i, 0, keep] = torch.arange(int(keep.sum()))
        pos[i, 1:, keep] = vision[:, 0, :].to(pos.device)
    return pos


def reference_embeddings(model: Any, tensors: dict, pieces: Sequence[dict], pool_weights, shifts: Sequence[int] = (0,)):
    """One ``(n, hidden)`` tensor per shift ``k``: for each row, unpadded, on the model's device, ``hidden_states[-1]``
    (as fp32 on the CPU) of the response tokens moved ``k`` positions left, mean-pooled with the row's
    ``pool_weights`` (``(n, response_len)``), L2-normalised."""
    import torch

    image_token = model.config.image_token_id
    device = next(model.parameters()).device
    prompt_len = tensors["prompts"].shape[1]
    out: list[list] = [[] for _ in shifts]
    for i, piece in enumerate(pieces):
        keep = tensors["attention_mask"][i].bool()
        ids = tensors["input_ids"][i, keep].unsqueeze(0).to(device)
        with torch.no_grad():
            hidden = model(input_ids=ids, pixel_values=piece["pixel_values"].to(device),
                           image_grid_thw=piece["image_grid_thw"].to(device),
                           mm_token_type_ids=(ids == image_token).to(torch.int32),
                           output_hidden_states=True).hidden_states[-1][0].float().cpu()
        response_len = int(tensors["attention_mask"][i, prompt_len:].sum())
        weights = pool_weights[i, :response_len].to(torch.float32)
        end = hidden.shape[0]
        for k, shift in enumerate(shifts):
            rows = hidden[end - response_len - shift:end - shift]
            mean = (rows * weights[:, None]).sum(0) / weights.sum()
            out[k].append(mean / mean.norm())
    return tuple(torch.stack(o) for o in out)
