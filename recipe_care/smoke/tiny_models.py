"""Tiny random Qwen2.5-VL / Qwen3-VL / Qwen2 checkpoints for CPU tests, built locally in a few seconds, no download.

Each builder writes a folder that loads offline with ``AutoTokenizer`` / ``AutoProcessor`` (VL) / ``AutoConfig`` /
``AutoModelForImageTextToText`` (VL) or ``AutoModelForCausalLM`` (text-only):

* a byte-level BPE tokenizer trained here with ``tokenizers`` on a small built-in corpus (chat words, math, digits),
  with Qwen's special tokens (``<|endoftext|>`` = 0 = pad, ``<|im_start|>``, ``<|im_end|>`` = eos, vision tokens),
  ``<think>``/``</think>``/``<answer>``/``</answer>`` as ordinary (non-special) single tokens, and a Qwen-style chat
  template;
* a random model (``torch.manual_seed(0)``, fp32) whose ``vocab_size`` equals ``len(tokenizer)`` exactly, so every
  sampled id decodes to a real token;
* (VL) a ``Qwen2_5_VLProcessor`` with a tiny ``max_pixels`` so that any image becomes at most 16 ``<|image_pad|>``
  tokens and prompts stay short.

Builds are idempotent: a folder holding the completion marker of the current builder version is left as is. A build
goes to a temporary sibling folder first and is renamed into place, so concurrent builders never see half a folder.

CLI: ``python -m recipe_care.smoke.tiny_models --out DIR [--model qwen25vl|qwen3vl|qwen2]`` prints the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

BUILDER_VERSION = 2  # 2: head_dim 32 (vLLM-CPU attention supports head sizes 32, 64, 80, ...; not 16)
MARKER = ".care_tiny_model.json"

# Qwen2.5(-VL) special tokens, in Qwen's order. ``<|endoftext|>`` gets id 0.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
REASONING_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Qwen-style chat template: default system turn, ``<|im_start|>role\n...<|im_end|>\n`` turns, image/video parts as
# ``<|vision_start|><|image_pad|><|vision_end|>`` (the processor expands the pad token), generation prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

_CORPUS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
    "<|im_start|>user\nWhat is the value of x in the figure? Answer in \\boxed{}.<|im_end|>\n",
    (
        "<|im_start|>assistant\n<think>The angle sum of a triangle is 180 degrees, so x = 180 - 60 - 70 = 50.</think>"
        "<answer>\\boxed{50}</answer><|im_end|>\n"
    ),
    "<think>Let me think step by step.</think> <answer>42</answer>",
    "<think>First compute the area: 3 * 4 / 2 = 6.</think><answer>6</answer>",
    "<think>Wait, that is wrong. Let me check again.</think>\n<answer>B</answer>",
    (
        "Question: Choose the correct option (A) (B) (C) (D). Hint: Please answer the question and provide the correct"
        " option letter, e.g., A, B, C, D, at the end."
    ),
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 25 30 36 45 50 60 90 100 120 180 360 3.14 1/2 2/3 0.5 -1 -2",
    "x + y = 10, 2x - y = 2, x^2 + y^2 = z^2, \\frac{1}{2}, \\sqrt{2}, \\pi, \\angle ABC = 30^\\circ, a*b=c",
    "The answer is (C). The perimeter of the square is 4 times the side length. The radius of the circle is r.",
    "the image shows a chart with a line, a bar, a triangle, a circle and a rectangle; how many objects are there?",
]
_VOCAB_SIZE = 512  # target size of the trained BPE, special tokens included; actual size is len(tokenizer)


def _train_tokenizer(corpus: list[str] | None = None, vocab_size: int = _VOCAB_SIZE):
    """Train a byte-level BPE on ``corpus`` (default: the built-in one) and wrap it as a Qwen-style fast tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = (_CORPUS if corpus is None else list(corpus)) * 8 + ["<think>", "</think>", "<answer>", "</answer>"] * 40
    bpe.train_from_iterator(corpus, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    # Reasoning tags as ordinary (non-special) added tokens: one id each, kept by ``skip_special_tokens`` decoding and
    # never suppressed by the CPU rollout.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TAGS])
    tok.chat_template = CHAT_TEMPLATE
    assert tok.convert_tokens_to_ids(PAD_TOKEN) == 0, "pad must be id 0"
    return tok


def _is_complete(folder: Path, kind: str) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("version") == BUILDER_VERSION and info.get("kind") == kind


def _build_into(out_dir: Path, kind: str, write) -> Path:
    out_dir = Path(out_dir)
    if _is_complete(out_dir, kind):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        write(tmp)
        (tmp / MARKER).write_text(json.dumps({"version": BUILDER_VERSION, "kind": kind}))
        if _is_complete(out_dir, kind):  # a concurrent builder won the race
            return out_dir
        if out_dir.exists():  # incomplete or stale leftover
            shutil.rmtree(out_dir)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not _is_complete(out_dir, kind):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _text_kwargs(tok) -> dict:
    return {
        "vocab_size": len(tok),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        # head_dim 64 / 2 = 32: the smallest head size vLLM's CPU attention supports
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": tok.convert_tokens_to_ids(PAD_TOKEN),
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def _vision_config(out_hidden_size: int, **model_specific) -> dict:
    """The tiny vision tower of every VL builder here (depth 1, hidden 32, 2 heads, 2 x 2 merge) and the model's own
    keys (patch size, window or DeepStack settings)."""
    return {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": out_hidden_size,
            "spatial_merge_size": 2, "temporal_patch_size": 2, **model_specific}


# Qwen2.5-VL's own vision keys: 14-pixel patches, windowed attention (the one block attends fully)
QWEN25VL_VISION = {"patch_size": 14, "window_size": 56, "fullatt_block_indexes": [0]}


def _vision_token_ids(tok) -> dict:
    """The config's vision token ids, from the tokenizer's Qwen special tokens."""
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}


def _finish(model, tok, folder: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id
    )
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def build_tiny_qwen25vl(out_dir) -> Path:
    """Build (or reuse) a tiny random ``Qwen2_5_VLForConditionalGeneration`` with tokenizer and processor."""

    def write(folder: Path) -> None:
        import torch
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
        )

        tok = _train_tokenizer()
        text = _text_kwargs(tok)
        # mrope_section must sum to head_dim / 2 = (64 / 2) / 2 = 16.
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]}
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=_vision_config(text["hidden_size"], **QWEN25VL_VISION),
            **_vision_token_ids(tok),
            tie_word_embeddings=False,
        )
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
        _finish(model, tok, folder)
        pixels = {"min_pixels": 4 * 28 * 28, "max_pixels": 16 * 28 * 28}
        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**pixels),
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(**pixels),
            chat_template=CHAT_TEMPLATE,
        )
        processor.save_pretrained(folder)

    return _build_into(Path(out_dir), "qwen2_5_vl", write)


# Qwen3-VL's chat template has no default system turn (Qwen2.5-VL's adds "You are a helpful assistant."); turns and
# vision placeholders are the same.
QWEN3VL_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}",
    "",
)


def build_tiny_qwen3vl(out_dir) -> Path:
    """Build (or reuse) a tiny random ``Qwen3VLForConditionalGeneration`` with tokenizer and processor.

    What makes it Qwen3-VL and not a renamed Qwen2.5-VL: 16-pixel patches (32 pixels per merged image token), the
    vision tower's learned position embeddings and DeepStack features, interleaved M-RoPE in the text model, and
    Qwen3-VL's chat template (no default system turn).
    """

    def write(folder: Path) -> None:
        import torch
        from transformers import (
            Qwen2VLImageProcessor,
            Qwen3VLConfig,
            Qwen3VLForConditionalGeneration,
            Qwen3VLProcessor,
            Qwen3VLVideoProcessor,
        )

        tok = _train_tokenizer()
        text = _text_kwargs(tok)
        text["head_dim"] = text["hidden_size"] // text["num_attention_heads"]  # 32
        # Qwen3-VL's [24, 20, 20] for head_dim 128, scaled to head_dim 32 (sums to head_dim / 2 = 16)
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [6, 5, 5],
            "mrope_interleaved": True,
        }
        config = Qwen3VLConfig(
            text_config=text,
            # 16-pixel patches; learned position embeddings on an 8 x 8 grid, interpolated to each image's
            vision_config=_vision_config(text["hidden_size"], patch_size=16, num_position_embeddings=64,
                                         deepstack_visual_indexes=[0]),
            **_vision_token_ids(tok),
            tie_word_embeddings=False,
        )
        torch.manual_seed(0)
        model = Qwen3VLForConditionalGeneration(config).to(torch.float32).eval()
        _finish(model, tok, folder)
        pixels = {"min_pixels": 4 * 32 * 32, "max_pixels": 16 * 32 * 32, "patch_size": 16, "merge_size": 2}
        processor = Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(**pixels),
            tokenizer=tok,
            video_processor=Qwen3VLVideoProcessor(**pixels),
            chat_template=QWEN3VL_CHAT_TEMPLATE,
        )
        processor.save_pretrained(folder)

    return _build_into(Path(out_dir), "qwen3_vl", write)


def build_tiny_qwen2(out_dir) -> Path:
    """Build (or reuse) a tiny random text-only ``Qwen2ForCausalLM`` with its tokenizer."""

    def write(folder: Path) -> None:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        tok = _train_tokenizer()
        config = Qwen2Config(
            **_text_kwargs(tok),
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False,
        )
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.float32).eval()
        _finish(model, tok, folder)

    return _build_into(Path(out_dir), "qwen2", write)


BUILDERS = {"qwen25vl": build_tiny_qwen25vl, "qwen3vl": build_tiny_qwen3vl, "qwen2": build_tiny_qwen2}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (reused when already complete)")
    parser.add_argument("--text-only", action="store_true", help="build the text-only Qwen2 instead of Qwen2.5-VL")
    parser.add_argument("--model", choices=sorted(BUILDERS), default="qwen25vl",
                        help="which model to build (default qwen25vl; --text-only is --model qwen2)")
    args = parser.parse_args(argv)
    folder = BUILDERS["qwen2" if args.text_only else args.model](args.out)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
