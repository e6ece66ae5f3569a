"""CARE through verl 0.9.1's real ``compute_advantage`` on hand-built ``DataProto`` batches."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import verl  # noqa: F401  (loads the plugin through the verl.plugins entry point)
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo import ray_trainer

from recipe_care.advantage import care_sequence_advantages
from recipe_care.config import CareConfig
from recipe_care.patches import is_patched
from recipe_care.verl_adapter import RUNTIME, set_tokenizer

RESPONSES = [
    # uid a: one short correct, one long correct, three failures
    ("a", 1.0, "<think>x=2</think><answer>4</answer>"),
    ("a", 1.0, "<think>long long long reasoning here</think><answer>4</answer>"),
    ("a", 0.0, "<think>x=3 so</think><answer>5</answer>"),
    ("a", 0.0, "<think>maybe</think><answer>6</answer>"),
    ("a", 0.0, "no tags at all 7"),
    # uid b: all fail → rescue
    ("b", 0.0, "<think>guess</think><answer>1</answer>"),
    ("b", 0.0, "<think>other</think><answer>2</answer>"),
    ("b", 0.0, "<think>more</think><answer>3</answer>"),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from recipe_care.testing.tiny_models import build_tiny_qwen2

    return AutoTokenizer.from_pretrained(build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "qwen2"))


def make_batch(tokenizer, rows=RESPONSES, order=None, resp_len=40):
    order = list(range(len(rows))) if order is None else order
    rows = [rows[i] for i in order]
    n = len(rows)
    prompt_len = 4
    responses = torch.full((n, resp_len), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(n, resp_len, dtype=torch.long)
    for i, (_, _, text) in enumerate(rows):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: resp_len - 1] + [tokenizer.eos_token_id]
        responses[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    acc = np.array([r[1] for r in rows], dtype=np.float64)
    scores = torch.zeros(n, resp_len)
    last = mask.sum(1) - 1
    scores[torch.arange(n), last] = torch.tensor(acc, dtype=torch.float32)
    old_lp = (-(torch.tensor(order, dtype=torch.float32) + 1)).unsqueeze(1).expand(n, resp_len) * 0.01 * mask
    data = DataProto.from_dict(
        tensors={
            "responses": responses,
            "prompts": torch.full((n, prompt_len), 5, dtype=torch.long),
            "attention_mask": torch.cat([torch.ones(n, prompt_len, dtype=torch.long), mask], 1),
            "response_mask": mask,
            "token_level_rewards": scores,
            "token_level_scores": scores.clone(),
            "old_log_probs": old_lp,
        },
        non_tensors={
            "uid": np.array([r[0] for r in rows], dtype=object),
            "acc": acc,
        },
        meta_info={"global_steps": 1},
    )
    return data


def algo(**care):
    return OmegaConf.create({"adv_estimator": "care", "norm_adv_by_std_in_grpo": True, "care": care})


def test_patches_installed_and_registry_resolves():
    assert is_patched(ray_trainer)
    assert core_algos.get_adv_estimator_fn("care").__qualname__ == "compute_care_advantage"


def test_care_through_compute_advantage(tokenizer):
    set_tokenizer(tokenizer)
    data = make_batch(tokenizer)
    out = ray_trainer.compute_advantage(data, adv_estimator="care", num_repeat=5, config=algo())
    adv = out.batch["advantages"]
    assert adv.shape == data.batch["responses"].shape
    assert torch.equal(out.batch["returns"], adv)
    seq = adv.sum(1)
    # group a: row 0 is the shortest-think correct answer → anchor with +2 (three failures: K'=3, eq sqrt(4/3))
    assert seq[0].item() == pytest.approx(2.0, abs=1e-4)
    assert seq[1].item() == 0.0  # the other correct rollout is outside the subgroup
    assert torch.allclose(seq[2:5], torch.full((3,), -1 / 3), atol=1e-4)
    # region weighting: the anchor's mass sits on its answer token(s), a failure's think tokens get nothing
    resp = data.batch["responses"]
    answer_tok = tokenizer("4", add_special_tokens=False)["input_ids"]
    pos4 = (resp[0] == answer_tok[0]).nonzero().reshape(-1)
    assert adv[0, pos4].sum().item() > 1.9
    think_tok = tokenizer("maybe", add_special_tokens=False)["input_ids"]
    assert (adv[3][torch.isin(resp[3], torch.tensor(think_tok))] == 0).all()
    # group b: all failures → faithful rescue, pseudo-anchor = highest summed old log-prob (row 5)
    assert seq[5].item() > 0 and (seq[6:] < 0).all()
    metrics = ray_trainer.compute_data_metrics(batch=out, use_critic=False)
    assert metrics["care/spans_available"] == 1.0
    assert metrics["care/rescue_rate"] == pytest.approx(0.5)
    assert metrics["care/groups"] == 2.0
    assert 0 < metrics["signal/fail_adv_share"] < 1
    assert metrics["signal/zero_signal_group_rate"] == 0.0


def test_row_order_does_not_matter(tokenizer):
    set_tokenizer(tokenizer)
    a = ray_trainer.compute_advantage(make_batch(tokenizer), adv_estimator="care", config=algo())
    order = [7, 2, 0, 5, 4, 1, 6, 3]
    b = ray_trainer.compute_advantage(make_batch(tokenizer, order=order), adv_estimator="care", config=algo())
    assert torch.allclose(b.batch["advantages"], a.batch["advantages"][order], atol=1e-6)


def test_config_switches_reach_the_math(tokenizer):
    set_tokenizer(tokenizer)
    off = ray_trainer.compute_advantage(make_batch(tokenizer), "care", config=algo(rescue="off", token_weighting="uniform"))
    seq = off.batch["advantages"]
    assert (seq[5:] == 0).all()  # no rescue
    nz = seq[0][off.batch["response_mask"][0].bool()]
    assert torch.allclose(nz, nz[0].expand_as(nz))  # uniform weights: the same value on every token
    with pytest.raises(ValueError, match="unknown key"):
        ray_trainer.compute_advantage(make_batch(tokenizer), "care", config=algo(Kay=3))


def test_matches_pure_math(tokenizer):
    set_tokenizer(tokenizer)
    data = make_batch(tokenizer)
    out = ray_trainer.compute_advantage(data, "care", config=algo(token_weighting="uniform"))
    spans = RUNTIME.span_parser().parse(data.batch["responses"], data.batch["response_mask"])
    full = data.batch["response_mask"].sum(1)
    from recipe_care.similarity import ngram_embeddings

    span = torch.where(spans.think_mask.any(1, keepdim=True), spans.think_mask, data.batch["response_mask"].bool())
    ref = care_sequence_advantages(
        acc=data.non_tensor_batch["acc"], rewards=data.batch["token_level_rewards"].sum(-1),
        group_ids=data.non_tensor_batch["uid"],
        think_len=torch.where(spans.has_think, spans.think_len, full),
        answer_len=torch.where(spans.has_answer, spans.answer_len, full),
        embeddings=ngram_embeddings(data.batch["responses"], span), seq_logprob=(data.batch["old_log_probs"]).sum(-1),
        config=CareConfig(token_weighting="uniform"),
    )
    got = out.batch["advantages"][torch.arange(8), 0]
    assert torch.allclose(got, ref.seq_advantages, atol=1e-6)


def test_fallbacks_without_tokenizer_or_acc(tokenizer, caplog):
    set_tokenizer(None)
    RUNTIME.warned.clear()
    data = make_batch(tokenizer)
    del data.non_tensor_batch["acc"]
    with caplog.at_level("WARNING", logger="recipe_care"):
        out = ray_trainer.compute_advantage(data, "care", config=algo())
        ray_trainer.compute_advantage(make_batch(tokenizer), "care", config=algo())
    text = caplog.text
    assert "no 'acc' column" in text and "pkg://reward_fns" in text
    assert text.count("no tokenizer is known") == 1  # one warning, not one per step
    assert torch.isfinite(out.batch["advantages"]).all()
    assert out.batch["advantages"].sum(1)[0].item() == pytest.approx(2.0, abs=1e-4)
    set_tokenizer(tokenizer)


@pytest.mark.parametrize("name", ["grpo", "grpo_vectorized", "rloo", "reinforce_plus_plus", "opo"])
def test_other_estimators_are_untouched(tokenizer, name):
    original = ray_trainer.compute_advantage.__wrapped__
    cfg = OmegaConf.create({"adv_estimator": name, "norm_adv_by_std_in_grpo": True, "gamma": 1.0})
    ours = ray_trainer.compute_advantage(make_batch(tokenizer), adv_estimator=name, config=cfg)
    theirs = original(make_batch(tokenizer), adv_estimator=name, config=cfg)
    assert torch.equal(ours.batch["advantages"], theirs.batch["advantages"])
    assert torch.equal(ours.batch["returns"], theirs.batch["returns"])


def test_v1_trainer_fails_with_a_clear_message(tokenizer):
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    full = make_batch(tokenizer)
    # the V1 trainer builds a DataProto with these fields only (trainer_base.py _compute_advantage)
    v1 = full.select(batch_keys=["response_mask", "token_level_rewards", "old_log_probs"], non_tensor_batch_keys=["uid"])
    with pytest.raises(RuntimeError, match=r"trainer\.use_v1=False"):
        compute_advantage_for_multi_trajectories(v1, batch_keys=[], adv_estimator="care", config=algo())
