"""GPU check of the CARE hidden-state embeddings on verl's remove-padding path (flash-attn). Not run in CI.

CI (tests/test_embeddings_verl.py) exercises verl's padded engine path on CPU; the remove-padding (packed,
``use_remove_padding=True``) forward needs flash-attn, so this script checks it on a GPU machine:

1. a rollout batch as verl's legacy trainer holds it (left-padded prompts with one image each, right-padded responses
   with and without ``<think>`` spans, M-RoPE position ids, ``multi_modal_inputs``), for a tiny random Qwen2.5-VL
   built from a config (default) or a local checkpoint (``--model``, e.g. Qwen2.5-VL-7B-Instruct or Qwen3-VL-8B);
2. the reference: plain HF, one unpadded sample at a time, fp32, ``hidden_states[-1]`` mean-pooled over the think
   tokens (whole response without a think span), L2-normalised — and, to show the check can tell, the same pooling
   shifted by one token;
3. per layout (``rmpad``: flash_attention_2 + remove padding; ``padded``: the padded path), in a fresh interpreter
   each (verl's attention monkey patches are process-wide), a real ``TrainingWorker`` with verl's FSDP2 engine and
   verl's real ``RayPPOTrainer._compute_old_log_prob`` (patched by ``recipe_care.patches.hidden_states``) with 2
   emulated data-parallel ranks, once with static micro-batches and once with dynamic batch size;
4. the verdict: for every row, cosine(embedding, reference) >= ``--min-cos`` and the nearest reference row is its
   own (a mix-up of samples or offsets fails); rmpad vs padded embeddings agree (cosine >= ``--min-cos``). Reported
   besides: the margin over the one-token-shifted reference, and rmpad vs padded old log-probs (setup sanity).

Run on a GPU node with the package installed with its ``gpu`` extra (flash-attn):

    python benchmarks/gpu_check_embeddings.py                      # tiny Qwen2.5-VL, rmpad + padded
    python benchmarks/gpu_check_embeddings.py --model /ckpt/Qwen3-VL-8B-Instruct --rows 8
    python benchmarks/gpu_check_embeddings.py --layouts padded     # CPU self-check of the script (no flash-attn)

Exit code 0 when every check passes; a JSON summary goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from recipe_care.test_doubles.vl_rollout_batch import (
    build_rollout_batch, free_port, position_ids, reference_embeddings)


def _setup_env(cuda: bool) -> None:
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(free_port()), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                      TRANSFORMERS_OFFLINE="1")
    if not cuda:  # the CPU self-check goes through the project's CPU backend
        os.environ.update(VERL_PLATFORM="cpu", CARE_CPU_BACKEND="1")


def pool_masks(processor, tensors):
    from recipe_care.hidden_pooling import response_pool_mask
    from recipe_care.spans import TagSpanParser

    r_len = tensors["responses"].shape[1]
    valid = tensors["attention_mask"][:, -r_len:].bool()
    spans = TagSpanParser(processor.tokenizer).parse(tensors["responses"], valid)
    return response_pool_mask(spans.think_mask, valid)


def reference(model_dir: Path, work: Path, rows: int, device: str) -> None:
    """Per-sample fp32 HF reference (sdpa attention), the one-token-shifted variant, and the batch for the layouts."""
    import torch
    from transformers import AutoModelForImageTextToText

    from recipe_care.smoke import build_tiny_qwen25vl

    if not (model_dir / "config.json").is_file():
        build_tiny_qwen25vl(model_dir)
    processor, samples, tensors = build_rollout_batch(model_dir, rows, image_scale=4)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="sdpa",
                                                        torch_dtype=torch.float32).to(device).eval()
    tensors["position_ids"] = position_ids(model, tensors, samples)
    ref, shifted = reference_embeddings(model, tensors, samples, pool_masks(processor, tensors), shifts=(0, 1))
    torch.save({"tensors": tensors, "samples": samples, "reference": ref, "shifted": shifted}, work / "batch.pt")


def run_layout(model_dir: Path, work: Path, layout: str, cuda: bool) -> None:
    """One layout in this interpreter: real TrainingWorker + patched _compute_old_log_prob, static and dynamic."""
    import pickle

    import numpy as np
    import torch

    from recipe_care import patches

    patches.install()
    import verl  # noqa: F401  (the plugin: care estimator, recipe_care.patches; CPU backend on CPU)
    from omegaconf import OmegaConf
    from transformers import AutoProcessor
    from verl import DataProto
    from verl.protocol import BatchData
    from verl.trainer.config import CheckpointConfig
    from verl.trainer.ppo import ray_trainer
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig
    from verl.workers.config.engine import TrainingWorkerConfig
    from verl.workers.engine_workers import TrainingWorker

    from recipe_care.step_context import EMBEDDING_KEY, set_tokenizer

    data = torch.load(work / "batch.pt", weights_only=False)
    tensors, samples = data["tensors"], data["samples"]
    set_tokenizer(AutoProcessor.from_pretrained(model_dir).tokenizer)
    rmpad = layout == "rmpad"
    attn_impl = "flash_attention_2" if rmpad else ("sdpa" if cuda else "eager")
    worker = TrainingWorker(config=TrainingWorkerConfig(
        model_type="language_model",
        model_config=HFModelConfig(path=str(model_dir), use_remove_padding=rmpad,
                                   override_config={"attn_implementation": attn_impl}),
        engine_config=FSDPEngineConfig(strategy="fsdp2", use_torch_compile=False, forward_only=True,
                                       model_dtype="bf16" if cuda else "fp32",
                                       mixed_precision={"param_dtype": "bf16" if cuda else "fp32"},
                                       infer_micro_batch_size_per_gpu=2),
        optimizer_config=FSDPOptimizerConfig(lr=1e-5), checkpoint_config=CheckpointConfig()))
    worker.reset()

    class WorkerGroup:  # the Ray worker group's compute_log_prob with 2 data-parallel ranks, in process
        def compute_log_prob(self, td):
            chunks = BatchData(td).chunk(chunks=2)
            outs = [pickle.loads(pickle.dumps(worker.infer_batch(pickle.loads(pickle.dumps(c))))) for c in chunks]
            return BatchData(outs).concat()

    r_len = tensors["responses"].shape[1]
    mm = []
    for s in samples:
        thw = s["image_grid_thw"]
        mm.append({"pixel_values": s["pixel_values"], "image_grid_thw": thw,
                   "images_seqlens": torch.repeat_interleave(thw[:, 1] * thw[:, 2], thw[:, 0])})
    trainer = type("Trainer", (), {})()
    trainer.config = OmegaConf.create({"algorithm": {"adv_estimator": "care", "care": {"similarity": "hidden"}},
                                       "actor_rollout_ref": {"actor": {"strategy": "fsdp2"},
                                                             "model": {"use_fused_kernels": False}}})
    trainer.actor_rollout_wg = WorkerGroup()
    out = {}
    for mode in ("static", "dynamic"):
        worker.engine_config.use_dynamic_bsz = mode == "dynamic"
        worker.engine_config.infer_max_token_len_per_gpu = int(1.5 * int(tensors["attention_mask"].sum(1).max()))
        t = dict(tensors)
        t["response_mask"] = t["attention_mask"][:, -r_len:].clone()
        batch = DataProto.from_dict(
            tensors=t, non_tensors={"multi_modal_inputs": np.array(mm, dtype=object)},
            meta_info={"temperature": 1.0, "global_token_num": t["attention_mask"].sum(-1).tolist(),
                       "images_seqlens": [int(x) for m in mm for x in m["images_seqlens"].tolist()]})
        old, _ = ray_trainer.RayPPOTrainer._compute_old_log_prob(trainer, batch)
        out[mode] = {"embeddings": old.batch[EMBEDDING_KEY].float(),
                     "old_log_probs": old.batch["old_log_probs"].float(), "response_mask": t["response_mask"]}
    torch.save(out, work / f"{layout}.pt")


def verdict(work: Path, layouts: list[str], min_cos: float) -> dict:
    import torch

    data = torch.load(work / "batch.pt", weights_only=False)
    ref, shifted = data["reference"], data["shifted"]
    summary: dict = {"rows": int(ref.shape[0]), "hidden": int(ref.shape[1]), "checks": {}}
    ok = True
    results = {layout: torch.load(work / f"{layout}.pt", weights_only=False) for layout in layouts}
    for layout, res in results.items():
        for mode, r in res.items():
            emb = r["embeddings"]
            cos = (emb * ref).sum(1)
            cos_shift = (emb * shifted).sum(1)
            nearest_ok = bool(((emb @ ref.T).argmax(1) == torch.arange(len(ref))).all())
            passed = bool(cos.min() >= min_cos) and nearest_ok
            ok &= passed
            summary["checks"][f"{layout}/{mode}"] = {
                "min_cos_to_reference": float(cos.min()), "mean_cos_to_reference": float(cos.mean()),
                "max_cos_to_shifted_reference": float(cos_shift.max()),
                # informational: > 0 means closer to the right tokens than to the one-token-shifted ones (bf16
                # noise can exceed the gap on the tiny random model, whose shifted pooling is ~0.995 close)
                "min_margin_over_shifted": float((cos - cos_shift).min()),
                "nearest_is_own_row": nearest_ok,
                "norm_max_dev": float((emb.norm(dim=1) - 1).abs().max()), "passed": passed}
    if "rmpad" in results and "padded" in results:
        for mode in ("static", "dynamic"):
            a, b = results["rmpad"][mode], results["padded"][mode]
            cos = float((a["embeddings"] * b["embeddings"]).sum(1).min())
            m = a["response_mask"].bool()
            lp = float((a["old_log_probs"] - b["old_log_probs"])[m].abs().max())
            passed = cos >= min_cos
            ok &= passed
            summary["checks"][f"rmpad_vs_padded/{mode}"] = {"min_cos": cos, "old_log_probs_max_abs_diff": lp,
                                                            "passed": passed}
    summary["passed"] = ok
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="local Qwen2.5-VL / Qwen3-VL checkpoint (default: a tiny random Qwen2.5-VL)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--rows", type=int, default=8, help="rollouts in the batch (a multiple of 4)")
    parser.add_argument("--layouts", default="rmpad,padded", help="comma list of rmpad, padded")
    parser.add_argument("--min-cos", type=float, default=0.99, help="per-row cosine to the fp32 reference")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    parser.add_argument("--_layout", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    work = args.work or Path(tempfile.mkdtemp(prefix="care_emb_check_"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or (work / "tiny-qwen25vl")
    _setup_env(cuda)
    if args._layout:
        run_layout(model_dir, work, args._layout, cuda)
        return 0

    layouts = [x for x in args.layouts.split(",") if x]
    if "rmpad" in layouts and not cuda:
        print("rmpad needs a GPU with flash-attn; on CPU run --layouts padded (the script's self-check)",
              file=sys.stderr)
        return 2
    if args.rows % 4:
        print("--rows must be a multiple of 4 (2 emulated data-parallel ranks, micro-batches of 2)", file=sys.stderr)
        return 2
    reference(model_dir, work, args.rows, "cuda" if cuda else "cpu")
    for layout in layouts:
        cmd = [sys.executable, __file__, "--work", str(work), "--rows", str(args.rows), "--_layout", layout]
        if args.model:
            cmd += ["--model", str(args.model)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-6000:], sep="\n", file=sys.stderr)
            print(f"layout {layout} failed", file=sys.stderr)
            return 1
    summary = verdict(work, layouts, args.min_cos)
    summary.update(device=torch.cuda.get_device_name() if cuda else "cpu", model=str(model_dir), layouts=layouts)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    print("PASS" if summary["passed"] else "FAIL")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
