"""CARE hidden-state embeddings through verl 0.9.1's real code path on CPU (padded layout).

One fresh interpreter (this file run as a script: the CPU platform, verl's Qwen2.5-VL monkey patches and our patches
are process-wide, so they stay out of the pytest process) builds a tiny random Qwen2.5-VL, a rollout batch the way the
legacy trainer holds it (left-padded prompts with one image each, right-padded responses with and without ``<think>``
spans, M-RoPE position ids, ``multi_modal_inputs``), and a real ``TrainingWorker`` with verl's FSDP2 engine. Then it
calls verl's real ``RayPPOTrainer._compute_old_log_prob`` (patched by ``recipe_care.patches.hidden_states``) on a
stand-in trainer whose ``actor_rollout_wg.compute_log_prob`` does what the Ray worker group does with 2 data-parallel
ranks: verl's ``BatchData`` chunk, ``TrainingWorker.infer_batch`` on each chunk (``engine.infer_batch`` →
``prepare_micro_batches`` → patched ``forward_step`` → ``postprocess_batch_func`` → ``_postprocess_output``), verl's
``BatchData`` concat. Scenarios: static micro-batches of 2, dynamic batch size (rows reordered across micro-batches),
the same batch with ``similarity=ngram`` (carrying the span keys RGR would have left on it) and with ``grpo`` (patch
inactive). CARE's TaskRunner keys (the parsed spans) stay on the batch and never reach the workers.

The reference is computed before verl touches the model classes: plain HF, one unpadded sample at a time,
``output_hidden_states=True``, ``hidden_states[-1]`` mean-pooled over the think tokens (whole response when there is
no think span), L2-normalised.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run_group

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4


# --------------------------------------------------------------------------------------------------------------
# the probe (runs in its own interpreter)
# --------------------------------------------------------------------------------------------------------------
def probe(model_dir: Path) -> dict:
    from recipe_care.test_doubles.vl_rollout_batch import (
        build_rollout_batch, free_port, position_ids, reference_embeddings)

    os.environ.update(VERL_PLATFORM="cpu", CARE_CPU_BACKEND="1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                      LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                      TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    import pickle

    import numpy as np
    import torch
    from transformers import AutoModelForImageTextToText

    from recipe_care.hidden_pooling import output_head, response_pool_mask
    from recipe_care.spans import TagSpanParser
    from recipe_care.smoke import build_tiny_qwen25vl

    build_tiny_qwen25vl(model_dir)
    processor, rows, tensors = build_rollout_batch(model_dir)
    ref_model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="eager").eval()
    tensors["position_ids"] = position_ids(ref_model, tensors, rows)
    r_len = tensors["responses"].shape[1]
    resp_valid = tensors["attention_mask"][:, -r_len:].bool()
    spans = TagSpanParser(processor.tokenizer).parse(tensors["responses"], resp_valid)
    pool = response_pool_mask(spans.think_mask, resp_valid)
    (reference,) = reference_embeddings(ref_model, tensors, rows, pool)
    del ref_model

    # ---- verl from here on. Our post-import hook goes in first, then ``import verl`` runs the plugin, which installs
    # the same patches again (idempotent: each verl attribute is wrapped once).
    from recipe_care import patches

    patches.install()
    import verl  # noqa: F401
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.protocol import BatchData
    from verl.trainer.config import CheckpointConfig
    from verl.trainer.ppo import ray_trainer
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig
    from verl.workers.config.engine import TrainingWorkerConfig
    from verl.workers.engine.fsdp import transformer_impl
    from verl.workers.engine_workers import TrainingWorker

    from recipe_care.spans import SPAN_KEYS, batch_spans
    from recipe_care.step_context import EMBEDDING_KEY, set_tokenizer

    result: dict = {"patched": [patches.is_patched(ray_trainer, ("hidden_states",)),
                                patches.is_patched(transformer_impl, ("hidden_states",)),
                                patches.is_patched(ray_trainer, ("trainer",))]}
    set_tokenizer(processor.tokenizer)

    model_config = HFModelConfig(path=str(model_dir), use_remove_padding=False,
                                 override_config={"attn_implementation": "eager"})
    engine_config = FSDPEngineConfig(strategy="fsdp2", use_torch_compile=False, forward_only=True,
                                     mixed_precision={"param_dtype": "fp32"}, infer_micro_batch_size_per_gpu=2)
    worker = TrainingWorker(config=TrainingWorkerConfig(
        model_type="language_model", model_config=model_config, engine_config=engine_config,
        optimizer_config=FSDPOptimizerConfig(lr=1e-5), checkpoint_config=CheckpointConfig()))
    worker.reset()
    head = output_head(worker.engine.module)
    hooks_before = len(head._forward_pre_hooks)  # FSDP2's own
    seq_lengths = tensors["attention_mask"].sum(1).tolist()

    calls = {"micro_batches": 0}
    original_forward_step = transformer_impl.FSDPEngineWithLMHead.forward_step

    def counting_forward_step(self, micro_batch, *args, **kwargs):
        calls["micro_batches"] += 1
        calls.setdefault("sizes", []).append(int(micro_batch.batch_size[0]))
        calls.setdefault("lengths", []).extend(micro_batch["input_ids"].offsets().diff().tolist())
        return original_forward_step(self, micro_batch, *args, **kwargs)

    transformer_impl.FSDPEngineWithLMHead.forward_step = counting_forward_step

    class WorkerGroup:
        """What the Ray worker group does for compute_log_prob with 2 data-parallel ranks, in process."""

        def compute_log_prob(self, data):
            self.received = set(data.keys())
            chunks = BatchData(data).chunk(chunks=2)
            # Ray pickles each chunk to its worker and each output back
            outputs = [pickle.loads(pickle.dumps(worker.infer_batch(pickle.loads(pickle.dumps(c))))) for c in chunks]
            return BatchData(outputs).concat()

    def make_batch():
        mm = []
        for r in rows:  # as verl's agent loop builds them (_compute_multi_modal_inputs)
            thw = r["image_grid_thw"]
            mm.append({"pixel_values": r["pixel_values"], "image_grid_thw": thw,
                       "images_seqlens": torch.repeat_interleave(thw[:, 1] * thw[:, 2], thw[:, 0])})
        t = dict(tensors)
        t["response_mask"] = t["attention_mask"][:, -r_len:].clone()
        meta = {"temperature": 1.0,  # as fit() sets them before _compute_old_log_prob
                "global_token_num": t["attention_mask"].sum(-1).tolist(),
                "images_seqlens": [int(x) for m in mm for x in m["images_seqlens"].tolist()]}
        return DataProto.from_dict(tensors=t, non_tensors={"multi_modal_inputs": np.array(mm, dtype=object)},
                                   meta_info=meta)

    def run(estimator: str, similarity: str, dynamic: bool):
        worker.engine_config.use_dynamic_bsz = dynamic
        # a token budget of 1.5 longest rows: 3+ micro-batches per rank, rows regrouped by length
        worker.engine_config.infer_max_token_len_per_gpu = int(1.5 * int(tensors["attention_mask"].sum(1).max()))
        config = OmegaConf.create({
            "algorithm": {"adv_estimator": estimator, "care": {"similarity": similarity}},
            "actor_rollout_ref": {"actor": {"strategy": "fsdp2"}, "model": {"use_fused_kernels": False}},
        })
        trainer = type("Trainer", (), {})()
        trainer.config, trainer.actor_rollout_wg = config, WorkerGroup()
        batch = make_batch()
        if similarity == "ngram":  # the spans RGR's rollout manager leaves on the batch
            batch_spans(batch.batch, TagSpanParser(processor.tokenizer))
        keys_before = sorted(batch.batch.keys())
        calls.update(micro_batches=0, sizes=[], lengths=[])
        old, _mfu = ray_trainer.RayPPOTrainer._compute_old_log_prob(trainer, batch)
        emb = old.batch[EMBEDDING_KEY] if EMBEDDING_KEY in old.batch.keys() else None
        return {
            "keys": sorted(old.batch.keys()),
            "batch_keys_added": sorted(set(batch.batch.keys()) - set(keys_before)),
            "batch_keys_lost": sorted(set(keys_before) - set(batch.batch.keys())),
            "span_keys_shipped": sorted(set(SPAN_KEYS) & trainer.actor_rollout_wg.received),
            "wg_restored": "compute_log_prob" not in vars(trainer.actor_rollout_wg),
            "micro_batches": calls["micro_batches"],
            "micro_batch_sizes": calls["sizes"],
            "rows_in_forward_order": calls["lengths"] == seq_lengths,
            "extra_hooks_left": len(head._forward_pre_hooks) - hooks_before,
            "old_log_probs": old.batch["old_log_probs"],
            "embeddings": emb,
        }

    static = run("care", "auto", dynamic=False)
    dynamic = run("care", "hidden", dynamic=True)
    ngram = run("care", "ngram", dynamic=False)
    grpo = run("grpo", "auto", dynamic=False)

    def err(emb):
        return None if emb is None else float((emb - reference).abs().max())

    for name, res in (("static", static), ("dynamic", dynamic), ("ngram", ngram), ("grpo", grpo)):
        emb = res.pop("embeddings")
        res["max_err"] = err(emb)
        res["shape"] = None if emb is None else list(emb.shape)
        res["dtype"] = None if emb is None else str(emb.dtype)
        res["norms"] = None if emb is None else emb.norm(dim=1).tolist()
        res["logprob_diff_vs_grpo"] = float((res.pop("old_log_probs") - grpo["old_log_probs"]).abs().max()) \
            if name != "grpo" else 0.0
        result[name] = res
    grpo.pop("old_log_probs", None)
    result["rows"] = len(rows)
    result["span_keys"] = list(SPAN_KEYS)
    result["hidden_size"] = int(reference.shape[1])
    result["think_rows"] = spans.has_think.tolist()
    # the pooled embeddings differ between rows (no accidental broadcast of one row)
    result["reference_min_pairwise_dist"] = float(torch.pdist(reference).min())
    return result


# --------------------------------------------------------------------------------------------------------------
# pytest side
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("emb_probe")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_", "CARE_"))}
    proc = run_group([sys.executable, __file__, str(out / "model"), str(out / "result.json")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"probe failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return json.loads((out / "result.json").read_text())


def test_patches_are_installed_in_the_probe_process(probe_result):
    # the hidden-state patches on the trainer and the engine, and the trainer patches next to them
    assert probe_result["patched"] == [True, True, True]


def test_static_micro_batches_pool_the_think_tokens_like_the_hf_reference(probe_result):
    res = probe_result["static"]
    assert "care_embeddings" in res["keys"]
    assert res["shape"] == [probe_result["rows"], probe_result["hidden_size"]] and res["dtype"] == "torch.float32"
    assert res["max_err"] < TOL, res["max_err"]
    assert all(abs(n - 1.0) < 1e-5 for n in res["norms"])
    # 8 rows, 2 data-parallel ranks, micro-batches of 2 rows
    assert res["micro_batches"] == 4 and res["micro_batch_sizes"] == [2, 2, 2, 2] and res["rows_in_forward_order"]
    assert probe_result["reference_min_pairwise_dist"] > 1e-3
    assert probe_result["think_rows"].count(False) == 2  # two rows pool their whole response


def test_dynamic_batch_size_restores_the_row_order(probe_result):
    res = probe_result["dynamic"]
    assert res["max_err"] < TOL, res["max_err"]
    assert res["micro_batches"] >= 5, res["micro_batch_sizes"]  # more micro-batches than rows/2, uneven sizes
    assert not res["rows_in_forward_order"]  # verl regrouped the rows; postprocess_batch_func restored the order


def test_embeddings_ride_along_without_changing_the_log_probs_or_the_batch(probe_result):
    # same micro-batches as the grpo run: bit-identical log-probs; other micro-batches: padding-level differences
    assert probe_result["static"]["logprob_diff_vs_grpo"] == 0.0
    assert probe_result["dynamic"]["logprob_diff_vs_grpo"] < 1e-5
    for name in ("static", "dynamic"):
        res = probe_result[name]
        assert res["keys"] == ["care_embeddings", "entropys", "old_log_probs"]
        assert res["wg_restored"] and res["extra_hooks_left"] == 0
        # the pooling mask parsed the spans and kept them on the batch for the estimator; the workers never saw them
        assert res["batch_keys_added"] == sorted(probe_result["span_keys"]) and res["batch_keys_lost"] == []
        assert res["span_keys_shipped"] == []


@pytest.mark.parametrize("name", ["ngram", "grpo"])
def test_inactive_unless_care_with_hidden_similarity(probe_result, name):
    res = probe_result[name]
    assert res["shape"] is None and "care_embeddings" not in res["keys"]
    assert res["keys"] == ["entropys", "old_log_probs"]
    assert res["logprob_diff_vs_grpo"] == 0.0 and res["extra_hooks_left"] == 0
    # ngram: the span keys already on the batch stay there and are not shipped; grpo: nothing of CARE's is added
    assert res["batch_keys_added"] == res["batch_keys_lost"] == res["span_keys_shipped"] == []


if __name__ == "__main__":
    model_dir, out_file = Path(sys.argv[1]), Path(sys.argv[2])
    out_file.write_text(json.dumps(probe(model_dir)))
