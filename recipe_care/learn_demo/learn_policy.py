"""The CPU learning run's policy: a small Qwen2.5-VL built from a config, and its format-only warm start.

Step 1 (:func:`build_base`): a random ``Qwen2_5_VLForConditionalGeneration`` (text: 2 layers, hidden 64; vision: depth
1, hidden 32; about 0.2 M parameters, the smoke model's shape) with a byte-level BPE tokenizer trained on the task's
own text (system turn, the three questions, the ``data_prep`` instruction, the RGR cue, the reasoning text), so a
prompt is 137-150 tokens (16 of them the image) where the smoke tokenizer needs about 300. Qwen's special tokens,
chat template and a processor whose ``max_pixels`` makes a 112 px image 16 image tokens, all from
``recipe_care.smoke.tiny_models``.

Step 2 (:func:`warm_start`): a short supervised loop (plain PyTorch, AdamW) on task prompts of its own images
(never a train/validation item) whose targets are ``<think>P</think><answer>L</answer><|im_end|>`` with ``P`` the
fixed reasoning text of :data:`THINK_PHRASES` and ``L`` a letter drawn uniformly **independently of the image**; the
letter's loss term trains the output layer only (:func:`_format_loss`). It teaches the output format only:
afterwards greedy validation gives format 1.0 and accuracy at chance (the step-0 validation of every
``cpu_learn.sh`` run). The prompts are encoded exactly as verl's ``RLHFDataset`` + agent loop do (image part + text
part, the processor's chat template, ``qwen_vl_utils.fetch_image``).

Both steps are cached: a folder holding the marker of the same settings is reused (``python -m
recipe_care.learn_demo.learn_policy --out DIR`` prints the warm-started folder).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

from recipe_care.learn_demo import shapes_task

BUILD_VERSION = 4
WARM_MARKER = ".care_warm_start.json"

#: The format warm start's defaults (``warm_start``, ``warm_settings`` and the command line all read these).
WARM_STEPS = 200  # AdamW steps
WARM_BATCH = 16  # prompts per step
WARM_LR = 3e-3  # far above RL's 3e-4: only the format is taught, on answers that carry no image information
WARM_POOL = 256  # "warm" items (own images, never an RL train/validation item), encoded once

#: Reasoning text(s) of the warm start, uninformative about the image. One fixed text: with two, drawn at random,
#: every sampled response carries a coin flip that has nothing to do with the reward, and GRPO (which gives every
#: token the response's advantage) learned far slower (``benchmarks/bench_learn_plain_grpo.py --phrases 2``).
THINK_PHRASES: tuple[str, ...] = ("The colour of the shape decides the answer.",)

#: Text the task tokenizer is trained on: everything a prompt or a response of the task contains.
def _corpus() -> list[str]:
    from data_prep.prompt import INSTRUCTION

    from recipe_care.config import RgrConfig

    cue = RgrConfig().cue
    return [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
        *[
            f"<|im_start|>user\n{shapes_task.question_body(q)}\n\n{INSTRUCTION}<|im_end|>\n"
            for q in shapes_task.QUESTIONS
        ],
        *[
            f"<|im_start|>assistant\n<think>{p}</think><answer>{x}</answer><|im_end|>\n"
            for p in THINK_PHRASES
            for x in "ABCD"
        ],
        cue,
        "A B C D red green blue yellow circle square triangle",
    ]


def base_kind(*, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> str:
    """The base folder's build marker ``kind`` (part of the warm start's cache key)."""
    return f"shapes-qwen2_5_vl-v{BUILD_VERSION}-h{hidden_size}-l{layers}-seed{seed}"


def build_base(out_dir, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Build (or reuse) the random task policy folder (model initialised from ``seed``, tokenizer, processor)."""
    from recipe_care.smoke import tiny_models as tm

    kind = base_kind(seed=seed, hidden_size=hidden_size, layers=layers)

    def write(folder: Path) -> None:
        import torch
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
        )

        tok = tm._train_tokenizer(_corpus(), vocab_size=1000)
        text = tm._text_kwargs(tok)
        # head_dim 32 (vLLM's CPU attention supports head sizes 32, 64, 80, ...); mrope_section sums to head_dim / 2
        heads = 2
        head_dim = hidden_size // heads
        text.update(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                    num_attention_heads=heads, num_key_value_heads=heads)
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16],
        }
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=tm._vision_config(hidden_size, **tm.QWEN25VL_VISION),
            **tm._vision_token_ids(tok),
            tie_word_embeddings=False,
        )
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
        tm._finish(model, tok, folder)
        pixels = {"min_pixels": 4 * 28 * 28, "max_pixels": 16 * 28 * 28}
        Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**pixels),
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(**pixels),
            chat_template=tm.CHAT_TEMPLATE,
        ).save_pretrained(folder)

    return tm._build_into(Path(out_dir), kind, write)


# ---------------------------------------------------------------------------------------------------------------------
# prompts exactly as verl encodes them
# ---------------------------------------------------------------------------------------------------------------------


def prompt_text(processor, question: str) -> str:
    """The chat-templated prompt of a task item (verl: ``RLHFDataset._build_messages`` + chat template)."""
    from data_prep.prompt import IMAGE_TOKEN, build_content

    body = build_content(shapes_task.question_body(question))
    parts = [{"type": "image"} if seg == IMAGE_TOKEN else {"type": "text", "text": seg}
             for seg in body.replace(IMAGE_TOKEN, f"\0{IMAGE_TOKEN}\0").split("\0") if seg]
    return processor.apply_chat_template([{"role": "user", "content": parts}], add_generation_prompt=True,
                                         tokenize=False)


def load_image(png: bytes):
    """PNG bytes -> the PIL image verl's agent loop hands the processor (``qwen_vl_utils.fetch_image``)."""
    from PIL import Image
    from verl.utils.dataset.vision_utils import process_image

    return process_image(Image.open(io.BytesIO(png)).convert("RGB"), image_patch_size=14)


def encode_prompts(processor, items: list[shapes_task.Item]) -> dict:
    """Processor inputs for a batch of task items (each its phrasing and image), left-padded as verl's rollout."""
    return processor(text=[prompt_text(processor, it.question) for it in items],
                     images=[load_image(it.png) for it in items], padding=True, padding_side="left",
                     return_tensors="pt")


# ---------------------------------------------------------------------------------------------------------------------
# warm start
# ---------------------------------------------------------------------------------------------------------------------


class _PromptPool:
    """Task prompts encoded once (left-padded, one image each); batches are drawn from it."""

    def __init__(self, processor, items: list[shapes_task.Item]):
        enc = encode_prompts(processor, items)
        self.input_ids = enc["input_ids"]
        self.attention_mask = enc["attention_mask"]
        self.grid = enc["image_grid_thw"]
        sizes = self.grid.prod(-1).tolist()
        self.pixels = list(enc["pixel_values"].split(sizes))

    def __len__(self) -> int:
        return len(self.pixels)


def _sft_batch(pool: _PromptPool, idx: list[int], rng, tok):
    """Prompt + target ids, loss only on the response; the target letter is drawn independently of the image."""
    import torch

    targets = [
        f"<think>{THINK_PHRASES[int(rng.integers(len(THINK_PHRASES)))]}</think>"
        f"<answer>{'ABCD'[int(rng.integers(4))]}</answer>{tok.eos_token}"
        for _ in idx
    ]
    tgt = [tok(t, add_special_tokens=False).input_ids for t in targets]
    width = max(map(len, tgt))
    resp = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
    resp_mask = torch.zeros((len(idx), width), dtype=torch.long)
    for i, ids in enumerate(tgt):
        resp[i, : len(ids)] = torch.tensor(ids)
        resp_mask[i, : len(ids)] = 1
    n_prompt = pool.input_ids.shape[1]
    input_ids = torch.cat([pool.input_ids[idx], resp], dim=1)
    attention = torch.cat([pool.attention_mask[idx], resp_mask], dim=1)
    labels = input_ids.masked_fill(attention == 0, -100)
    labels[:, :n_prompt] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "pixel_values": torch.cat([pool.pixels[i] for i in idx]),
        "image_grid_thw": pool.grid[idx],
        "labels": labels,
    }


def _format_loss(model, batch: dict, letter_ids: list[int]):
    """Next-token cross-entropy of the target; the answer letter's term trains the output layer only.

    Step 1: the format tokens (tags, reasoning text, end of turn) train the whole model.
    Step 2: the letter's term reaches ``lm_head`` alone (its input hidden state is detached). Its target is drawn
    independently of the image, so trained through the whole model it would teach the body to make the letter
    position ignore the image: measured on the task policy, the last hidden state's variation across the four colours
    fell from 17% of its norm (random model) to 0.4%, and RL then spent 40 steps at chance before accuracy moved.
    Trained through ``lm_head`` only, the letter still comes out uniform and independent of the image (greedy accuracy
    at chance, every run's step-0 validation), but the body keeps what it sees.
    """
    import torch
    import torch.nn.functional as F

    labels = batch.pop("labels")
    out = model(**batch, output_hidden_states=True)
    target = labels[:, 1:]
    valid = target != -100
    letter = valid & torch.isin(target, torch.tensor(letter_ids))
    fmt = valid & ~letter
    logits = out.logits[:, :-1]
    letter_logits = model.lm_head(out.hidden_states[-1][:, :-1][letter].detach())
    total = F.cross_entropy(logits[fmt], target[fmt], reduction="sum")
    total = total + F.cross_entropy(letter_logits, target[letter], reduction="sum")
    return total / valid.sum()


def _settings(base_info: dict, steps: int, batch: int, lr: float, seed: int, pool_size: int) -> dict:
    return {"version": BUILD_VERSION, "task": shapes_task.DATA_VERSION, "base": base_info, "steps": steps,
            "batch": batch, "lr": lr, "seed": seed, "pool": pool_size, "phrases": list(THINK_PHRASES)}


def warm_settings(*, seed: int = 0, steps: int = WARM_STEPS, batch: int = WARM_BATCH, lr: float = WARM_LR,
                  pool_size: int = WARM_POOL) -> dict:
    """The cache key of the default policy of ``seed`` (what ``--out DIR --seed S`` writes to its marker), computed
    without building anything."""
    from recipe_care.smoke.tiny_models import BUILDER_VERSION

    base_info = {"version": BUILDER_VERSION, "kind": base_kind(seed=seed)}
    return _settings(base_info, steps, batch, lr, seed, pool_size)


def is_current(out_dir, settings: dict) -> bool:
    """True when ``out_dir`` holds a finished warm start made with ``settings`` (its marker says so)."""
    marker = Path(out_dir) / WARM_MARKER
    try:
        return json.loads(marker.read_text()).get("settings") == settings
    except (OSError, ValueError):
        return False


def warm_start(base_dir, out_dir, *, steps: int = WARM_STEPS, batch: int = WARM_BATCH, lr: float = WARM_LR,
               seed: int = 0, pool_size: int = WARM_POOL, log_every: int = 50) -> Path:
    """Supervised format warm start of ``base_dir`` into ``out_dir`` (reused when the marker matches)."""
    import numpy as np
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    base, out = Path(base_dir), Path(out_dir)
    settings = _settings(json.loads((base / ".care_tiny_model.json").read_text()), steps, batch, lr, seed, pool_size)
    if is_current(out, settings):
        return out
    torch.manual_seed(seed)
    rng = np.random.default_rng((seed, 77))
    t0 = time.perf_counter()
    processor = AutoProcessor.from_pretrained(base)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    model.train()
    # images of their own ("warm" items: never the RL train/val items), encoded once
    pool = _PromptPool(processor, [_warm_item(seed, i) for i in range(pool_size)])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    letter_ids = processor.tokenizer.convert_tokens_to_ids(list(shapes_task.LETTERS))
    loss_avg = None
    for step in range(steps):
        idx = rng.choice(len(pool), size=batch, replace=False).tolist()
        loss = _format_loss(model, _sft_batch(pool, idx, rng, processor.tokenizer), letter_ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_avg = loss.item() if loss_avg is None else 0.9 * loss_avg + 0.1 * loss.item()
        if log_every and (step + 1) % log_every == 0:
            print(f"[warm_start] step {step + 1}/{steps} loss {loss_avg:.4f} ({time.perf_counter() - t0:.1f} s)",
                  flush=True)
    model.eval()
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / ".care_tiny_model.json").write_text((base / ".care_tiny_model.json").read_text())
    (tmp / WARM_MARKER).write_text(json.dumps({"settings": settings, "seconds": time.perf_counter() - t0}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _warm_item(seed: int, index: int) -> shapes_task.Item:
    import numpy as np

    rng = np.random.default_rng((seed, 9, index))
    colour = shapes_task.OPTIONS[int(rng.integers(len(shapes_task.OPTIONS)))]
    shape, png = shapes_task.render(rng, colour)
    return shapes_task.Item("warm", index, colour, shape, png)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of the warm-started policy (its base goes beside it)")
    parser.add_argument("--steps", type=int, default=WARM_STEPS)
    parser.add_argument("--batch", type=int, default=WARM_BATCH)
    parser.add_argument("--lr", type=float, default=WARM_LR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    # a cached policy is found without importing torch/transformers or building the base (7 s -> 0.3 s)
    if is_current(out, warm_settings(seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr)):
        print(out)
        return 0
    base = build_base(out.with_name(out.name + "-base"), seed=args.seed)
    print(warm_start(base, out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
