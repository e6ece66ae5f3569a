"""Pooling math of the CARE hidden-state embeddings (``recipe_care.hidden_pooling``) and its glue helpers.

The layout tests use a tiny random Qwen2.5-VL built from a config on CPU (eager attention, fp32): the reference is
``model(..., output_hidden_states=True).hidden_states[-1]`` of each sample alone, mean-pooled over its think tokens
(whole response without a think span), L2-normalised. The packed (remove-padding) layout is laid out here from those
per-sample hidden states, because the packed forward itself needs flash-attn (``benchmarks/gpu_check_embeddings.py``
checks it on a GPU); the padded layout is a real batched forward with right padding. Interpreters that need verl's
process-wide state run in subprocesses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from recipe_care.hidden_pooling import (
    finish_mean,
    l2_normalize,
    packed_partial_sums,
    packed_pool_mask,
    padded_from_packed,
    pool_packed,
    pool_padded,
    response_pool_mask,
    sequence_pool_mask,
)
from conftest import run_group

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


def _naive(hidden_rows: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    out = []
    for h, m in zip(hidden_rows, masks):
        w = m.to(torch.float64)
        mean = (h.to(torch.float64) * w[:, None]).sum(0) / w.sum() if w.sum() > 0 else torch.zeros(h.shape[1])
        out.append(mean / mean.norm() if mean.norm() > 0 else mean)
    return torch.stack(out).to(torch.float32)


# --------------------------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------------------------
def test_response_pool_mask_uses_the_think_span_else_the_whole_response():
    valid = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    think = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]], dtype=torch.bool)
    got = response_pool_mask(think, valid)
    assert got.tolist() == [[False, True, True, False, False],  # think span
                            [True, True, True, False, False],  # no think: whole valid response
                            [False, True, False, False, False]]  # think outside the valid tokens never counts
    assert torch.equal(response_pool_mask(None, valid), valid)  # no tokenizer: whole responses


def test_sequence_and_packed_masks_follow_verls_no_padding_layout():
    from tensordict import TensorDict
    from verl.workers.utils.padding import left_right_2_no_padding

    # 3 rows, prompt 4 (left-padded), response 3 (right-padded)
    attn = torch.tensor([[0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]])
    resp = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=torch.bool)
    seq = sequence_pool_mask(resp, attn)
    assert seq.tolist()[1] == [False] * 5 + [True, True]
    packed = packed_pool_mask(seq, attn)
    input_ids = torch.arange(21).reshape(3, 7) + 100
    td = TensorDict({"input_ids": input_ids, "attention_mask": attn, "response_mask": attn[:, -3:],
                     "position_ids": torch.cumsum(attn, 1)}, batch_size=[3])
    td = left_right_2_no_padding(td)
    assert torch.equal(packed.offsets(), td["input_ids"].offsets())
    assert packed.dtype == torch.float32
    # the marked packed tokens are exactly the response tokens marked in the padded layout
    assert sorted(td["input_ids"].values()[packed.values() > 0].tolist()) == sorted(input_ids[seq].tolist())
    assert td["input_ids"].values()[packed.values() > 0].tolist() == [104, 112, 113, 118]


# --------------------------------------------------------------------------------------------------------------
# pooling math
# --------------------------------------------------------------------------------------------------------------
def _random_case(seed=0, lengths=(5, 9, 3, 7), h=16):
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randn(n, h, generator=g) for n in lengths]
    masks = [(torch.rand(n, generator=g) > 0.5).float() for n in lengths]
    masks[2] = torch.zeros(lengths[2])  # a row without any pooled token
    return rows, masks, torch.tensor(lengths)


def test_pool_packed_equals_per_sample_mean_and_ignores_the_tail_pad():
    rows, masks, lengths = _random_case()
    ref = _naive(rows, masks)
    packed = torch.cat(rows + [torch.full((6, rows[0].shape[1]), 1e3)])  # tail pad (static bucket / SP pad)
    got = pool_packed(packed.unsqueeze(0), torch.cat(masks), lengths)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert torch.allclose(got, ref, atol=TOL)
    assert torch.equal(got[2], torch.zeros_like(got[2]))  # no pooled token: zero row, no NaN
    with pytest.raises(ValueError, match="fewer than"):
        pool_packed(packed[:10], torch.cat(masks), lengths)
    with pytest.raises(ValueError, match="pool mask has"):
        pool_packed(packed, torch.cat(masks)[:-1], lengths)


def test_pool_padded_equals_per_sample_mean():
    rows, masks, lengths = _random_case(seed=1)
    width = int(lengths.max()) + 2
    hidden = torch.full((len(rows), width, rows[0].shape[1]), -7.0)  # padding columns hold garbage
    for i, r in enumerate(rows):
        hidden[i, : len(r)] = r
    mask = padded_from_packed(torch.cat(masks), lengths, width)
    assert mask.shape == (4, width) and float(mask[:, int(lengths.max()):].abs().sum()) == 0
    assert torch.allclose(pool_padded(hidden, mask), _naive(rows, masks), atol=TOL)
    # a mask narrower than the hidden states is padded with zeros
    assert torch.allclose(pool_padded(hidden, mask[:, : int(lengths.max())]), _naive(rows, masks), atol=TOL)


@pytest.mark.parametrize("sp", [2, 3, 4])
def test_sequence_parallel_shards_sum_to_the_whole_sequence(sp):
    """Ulysses SP: each rank holds one contiguous slice of the padded packed sequence; the sums of all slices
    (all-reduced in the engine) give the same embeddings as the unsharded pooling."""
    rows, masks, lengths = _random_case(seed=2)
    packed = torch.cat(rows)
    total = packed.shape[0]
    padded_len = -(-total // sp) * sp
    packed = torch.cat([packed, torch.full((padded_len - total, packed.shape[1]), 5.0)])
    local = padded_len // sp
    sums = torch.zeros(len(rows), packed.shape[1])
    counts = torch.zeros(len(rows))
    for rank in range(sp):
        s, c = packed_partial_sums(packed[rank * local:(rank + 1) * local].unsqueeze(0), torch.cat(masks), lengths,
                                   start=rank * local)
        sums += s
        counts += c
    assert torch.allclose(finish_mean(sums, counts), pool_packed(packed, torch.cat(masks), lengths), atol=TOL)
    assert torch.equal(counts, torch.stack([m.sum() for m in masks]))


def test_l2_normalize_keeps_zero_rows():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


# --------------------------------------------------------------------------------------------------------------
# tiny Qwen2.5-VL: packed and padded layouts against the HF hidden_states[-1] reference
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vl(tmp_path_factory):
    import numpy as np
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from recipe_care.spans import TagSpanParser
    from recipe_care.smoke import build_tiny_qwen25vl

    path = build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "qwen25vl")
    model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(path)
    tok = processor.tokenizer
    rng = np.random.default_rng(0)
    texts = ["<think>x is 5 since 2 plus 3</think><answer>5</answer>", "plain answer 3",
             "<think>right angle so use the sides</think> <answer>10</answer>"]
    samples = []
    for i, text in enumerate(texts):
        image = Image.fromarray(rng.integers(0, 255, (56, 56 + 28 * i, 3), dtype=np.uint8))
        prompt = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what is x" + " ?" * i + \
                 "<|im_end|>\n<|im_start|>assistant\n"
        enc = processor(text=[prompt], images=[image], return_tensors="pt")
        resp = torch.tensor(tok.encode(text, add_special_tokens=False) + [tok.eos_token_id])
        samples.append(dict(ids=torch.cat([enc["input_ids"][0], resp]), prompt_len=enc["input_ids"].shape[1],
                            pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"], resp=resp))
    parser = TagSpanParser(tok)
    r_len = max(len(s["resp"]) for s in samples)
    responses = torch.zeros(len(samples), r_len, dtype=torch.long)
    valid = torch.zeros(len(samples), r_len, dtype=torch.bool)
    for i, s in enumerate(samples):
        responses[i, : len(s["resp"])] = s["resp"]
        valid[i, : len(s["resp"])] = True
    spans = parser.parse(responses, valid)
    assert spans.has_think.tolist() == [True, False, True]
    pool = response_pool_mask(spans.think_mask, valid)
    image_token = model.config.image_token_id
    hidden, masks = [], []
    for i, s in enumerate(samples):
        ids = s["ids"].unsqueeze(0)
        with torch.no_grad():
            out = model(input_ids=ids, pixel_values=s["pixel_values"], image_grid_thw=s["image_grid_thw"],
                        mm_token_type_ids=(ids == image_token).to(torch.int32), output_hidden_states=True)
        hidden.append(out.hidden_states[-1][0])
        m = torch.zeros(len(s["ids"]))
        m[s["prompt_len"]:] = pool[i, : len(s["resp"])].float()
        masks.append(m)
    return dict(model=model, samples=samples, hidden=hidden, masks=masks, pool=pool, tok=tok)


def test_reference_pools_think_tokens_only(vl):
    # the pooled positions are the think-span tokens (row 1 has none: its whole response)
    tok = vl["tok"]
    s0 = vl["samples"][0]
    pooled = tok.decode(s0["ids"][vl["masks"][0] > 0])
    assert pooled.replace(" ", "") == "xis5since2plus3"
    assert int(vl["masks"][1].sum()) == len(vl["samples"][1]["resp"])


def test_packed_layout_matches_the_hf_reference(vl):
    ref = _naive(vl["hidden"], vl["masks"])
    packed = torch.cat(vl["hidden"] + [torch.randn(3, vl["hidden"][0].shape[1])]).unsqueeze(0)  # + tail pad
    # the mask built the way the TaskRunner builds it: left/right-padded batch -> packed layout
    samples = vl["samples"]
    p_len = max(s["prompt_len"] for s in samples)
    r_len = vl["pool"].shape[1]
    attn = torch.zeros(len(samples), p_len + r_len, dtype=torch.long)
    for i, s in enumerate(samples):
        attn[i, p_len - s["prompt_len"]:p_len] = 1
        attn[i, p_len:p_len + len(s["resp"])] = 1
    mask = packed_pool_mask(sequence_pool_mask(vl["pool"], attn), attn)
    got = pool_packed(packed, mask.values(), mask.offsets().diff())
    assert torch.allclose(got, ref, atol=TOL), (got - ref).abs().max()
    assert float(torch.pdist(ref).min()) > 1e-3  # distinct rows: a mix-up between samples would show


def test_padded_layout_matches_the_hf_reference(vl):
    """A real batched forward with right padding (verl's padded engine layout) pooled with the packed mask."""
    model, samples = vl["model"], vl["samples"]
    ref = _naive(vl["hidden"], vl["masks"])
    lengths = torch.tensor([len(s["ids"]) for s in samples])
    width = int(lengths.max())
    ids = torch.zeros(len(samples), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(samples):
        ids[i, : len(s["ids"])] = s["ids"]
        attn[i, : len(s["ids"])] = 1
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=attn, pixel_values=torch.cat([s["pixel_values"] for s in samples]),
                    image_grid_thw=torch.cat([s["image_grid_thw"] for s in samples]),
                    mm_token_type_ids=(ids == model.config.image_token_id).to(torch.int32),
                    output_hidden_states=True)
    mask = padded_from_packed(torch.cat(vl["masks"]), lengths, width)
    got = pool_padded(out.hidden_states[-1], mask)
    assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()


def test_lm_head_input_is_the_last_hidden_state(vl):
    """What the engine hook reads (lm_head's input) is hidden_states[-1] (after the final norm)."""
    from recipe_care.hidden_pooling import output_head

    model, s = vl["model"], vl["samples"][0]
    seen = []
    handle = output_head(model).register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(input_ids=s["ids"].unsqueeze(0), pixel_values=s["pixel_values"], image_grid_thw=s["image_grid_thw"],
                  mm_token_type_ids=(s["ids"] == model.config.image_token_id).to(torch.int32).unsqueeze(0))
    finally:
        handle.remove()
    assert len(seen) == 1 and torch.allclose(seen[0][0], vl["hidden"][0], atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# glue helpers (no verl process state)
# --------------------------------------------------------------------------------------------------------------
def test_enabled_only_for_care_without_ngram_and_unsupported_configs_are_named():
    from omegaconf import OmegaConf

    from recipe_care.patches.hidden_states import (
        embeddings_enabled,
        similarity_mode,
        unsupported_reason,
    )

    def cfg(est="care", sim=None, strategy="fsdp2", fused=False):
        algo = {"adv_estimator": est}
        if sim is not None:
            algo["care"] = {"similarity": sim}
        return OmegaConf.create({"algorithm": algo, "actor_rollout_ref": {
            "actor": {"strategy": strategy}, "model": {"use_fused_kernels": fused}}})

    assert embeddings_enabled(cfg()) and similarity_mode(cfg()) == "auto"  # CareConfig's default
    assert embeddings_enabled(cfg(sim="hidden"))
    assert not embeddings_enabled(cfg(sim="ngram"))
    assert not embeddings_enabled(cfg(est="grpo", sim="hidden")) and similarity_mode(cfg(est="grpo")) is None
    with pytest.raises(ValueError):
        similarity_mode(cfg(sim="cosine"))
    assert unsupported_reason(cfg()) is None and unsupported_reason(cfg(strategy="fsdp")) is None
    assert "use_fused_kernels=False" in unsupported_reason(cfg(fused=True))
    assert "strategy=megatron" in unsupported_reason(cfg(strategy="megatron"))


def test_pooler_fails_clearly_when_lm_head_does_not_run_once():
    from recipe_care.hidden_pooling import HiddenStatePooler

    lengths = torch.tensor([2, 3])
    mask = torch.nested.nested_tensor_from_jagged(torch.ones(5), offsets=torch.tensor([0, 2, 5]))
    model = torch.nn.Module()
    model.lm_head = torch.nn.Linear(4, 7)
    pooler = HiddenStatePooler(mask, remove_padding=True)
    with pooler.attached(model):
        pass  # a fused-kernel forward: lm_head never called
    with pytest.raises(RuntimeError, match="use_fused_kernels=False"):
        pooler.result()
    pooler = HiddenStatePooler(mask, remove_padding=True)
    x = torch.randn(1, 6, 4)
    with pooler.attached(model):
        model.lm_head(x)
    assert not model.lm_head._forward_pre_hooks  # removed after the forward
    assert torch.allclose(pooler.result(), pool_packed(x, torch.ones(5), lengths))


def test_install_is_idempotent_in_a_fresh_interpreter():
    """The post-import hook wraps the loader of ray_trainer once for the trainer and the hidden-state patches;
    everything is patched once, however often ``install()`` runs (the plugin runs it, this test runs it before and
    after ``import verl``)."""
    code = """
from recipe_care import patches
patches.install()
import verl
import verl.trainer.ppo.ray_trainer as rt
import verl.workers.engine.fsdp.transformer_impl as ti
assert patches.is_patched(rt, ("trainer",)), "trainer patches"
assert patches.is_patched(rt, ("hidden_states",)) and patches.is_patched(ti), "hidden-state patches"
inner = rt.RayPPOTrainer._compute_old_log_prob.__wrapped__
assert not hasattr(inner, "__wrapped__"), "patched twice"
assert not hasattr(ti.FSDPEngineWithLMHead.forward_step.__wrapped__, "__wrapped__"), "patched twice"
assert not hasattr(rt.compute_advantage.__wrapped__, "__wrapped__"), "patched twice"
patches.install()
assert rt.RayPPOTrainer._compute_old_log_prob.__wrapped__ is inner, "install() is not idempotent"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_", "CARE_"))}
    proc = run_group([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_sequence_parallel_pooler_all_reduces_the_shards_over_gloo():
    """HiddenStatePooler with an SP group: 2 processes (gloo), each holding its contiguous slice of the padded packed
    hidden states as verl's Ulysses slicing gives it, agree with the unsharded pooling."""
    code = r"""
import os, socket, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
from recipe_care.hidden_pooling import HiddenStatePooler, pool_packed

def run(rank, port, q):
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 8, 4])
    values = (torch.rand(17, generator=g) > 0.4).float()
    hidden = torch.randn(1, 18, 6, generator=g)  # 17 tokens + 1 SP pad -> 2 slices of 9
    mask = torch.nested.nested_tensor_from_jagged(values, offsets=torch.tensor([0, 5, 13, 17]))
    model = torch.nn.Module(); model.lm_head = torch.nn.Linear(6, 3)
    pooler = HiddenStatePooler(mask, remove_padding=True, sp_group=dist.group.WORLD)
    with pooler.attached(model):
        model.lm_head(hidden[:, rank * 9:(rank + 1) * 9])
    q.put((rank, float((pooler.result() - pool_packed(hidden, values, lengths)).abs().max())))
    dist.destroy_process_group()

if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    ctx = mp.get_context("fork"); q = ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, port, q)) for r in range(2)]
    [p.start() for p in procs]; [p.join(60) for p in procs]
    errs = sorted(q.get(timeout=5) for _ in procs)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert all(e < 1e-5 for _, e in errs), errs
    print("ok", errs)
"""
    proc = run_group([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
