"""CARE through verl 0.9.1's real ``compute_advantage`` (and the trainer pieces around it) on hand-built batches."""

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
from recipe_care.log import reset_warnings
from recipe_care.spans import SPAN_KEYS, batch_spans
from recipe_care.step_context import CONTEXT, TASK_RUNNER_KEYS, set_tokenizer

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
def tiny_qwen2(tmp_path_factory):
    from recipe_care.smoke.tiny_models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "qwen2")


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen2)


def make_batch(tokenizer, rows=RESPONSES, order=None, resp_len=40, embeddings=None):
    """A training batch as the legacy trainer holds it at ``compute_advantage`` (verl never puts ``global_steps`` on
    it). ``old_log_probs`` decrease with the row's position in ``rows``; ``ref_log_prob`` differs per row."""
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
    rank = torch.tensor(order, dtype=torch.float32)
    old_lp = (-(rank + 1)).unsqueeze(1).expand(n, resp_len) * 0.01 * mask
    ref_lp = old_lp - (rank % 3).unsqueeze(1) * 0.2 * mask
    prompts = torch.full((n, prompt_len), 5, dtype=torch.long)
    attention = torch.cat([torch.ones(n, prompt_len, dtype=torch.long), mask], 1)
    tensors = {
        "responses": responses,
        "prompts": prompts,
        "input_ids": torch.cat([prompts, responses], 1),
        "attention_mask": attention,
        "position_ids": (attention.cumsum(1) - 1).clamp_min(0),
        "response_mask": mask,
        "token_level_rewards": scores,
        "token_level_scores": scores.clone(),
        "old_log_probs": old_lp,
        "ref_log_prob": ref_lp,
    }
    if embeddings is not None:
        tensors["care_embeddings"] = embeddings[order]
    return DataProto.from_dict(
        tensors=tensors,
        non_tensors={"uid": np.array([r[0] for r in rows], dtype=object), "acc": acc},
    )


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
    mass = (adv.abs() * data.batch["response_mask"]).sum(1)
    fail = torch.tensor([r[1] != 1.0 for r in RESPONSES])
    assert metrics["signal/fail_adv_share"] == pytest.approx(float(mass[fail].sum() / mass.sum()), rel=1e-6)
    # group a: anchor +2, failures 3 x 1/3; group b (all failures): pseudo-anchor +2, negatives 2 x 0.5 → 4 of 6
    assert metrics["signal/fail_adv_share"] == pytest.approx(4 / 6, rel=1e-4)
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


def pure(data, rewards=None, embeddings=None, step=0, **care):
    """The pure function on the inputs the estimator should read from ``data`` (spans with the recorded tokenizer)."""
    from recipe_care.ngram_profiles import ngram_embeddings
    from recipe_care.spans import anchor_lengths

    mask = data.batch["response_mask"]
    spans = CONTEXT.span_parser().parse(data.batch["responses"], mask)
    think_len, answer_len = anchor_lengths(spans, mask.sum(1))
    if embeddings is None:
        span = torch.where(spans.think_mask.any(1, keepdim=True), spans.think_mask, mask.bool())
        embeddings = ngram_embeddings(data.batch["responses"], span)
    return care_sequence_advantages(
        acc=data.non_tensor_batch["acc"],
        rewards=data.batch["token_level_scores"].sum(-1) if rewards is None else rewards,
        group_ids=data.non_tensor_batch["uid"], think_len=think_len, answer_len=answer_len, embeddings=embeddings,
        seq_logprob=data.batch["old_log_probs"].sum(-1), config=CareConfig(token_weighting="uniform", **care),
        step=step,
    )


def test_matches_pure_math(tokenizer):
    set_tokenizer(tokenizer)
    data = make_batch(tokenizer)
    out = ray_trainer.compute_advantage(data, "care", config=algo(token_weighting="uniform"))
    got = out.batch["advantages"][torch.arange(8), 0]
    assert torch.allclose(got, pure(data).seq_advantages, atol=1e-6)


def test_z_score_uses_the_verifiers_score_with_kl_in_reward(tokenizer):
    """With ``algorithm.use_kl_in_reward=True`` verl subtracts the KL penalty from ``token_level_rewards``; CARE
    z-scores the verifier's ``token_level_scores`` (as the authors), so the penalty changes nothing."""
    set_tokenizer(tokenizer)
    data = make_batch(tokenizer)
    data, _ = ray_trainer.apply_kl_penalty(data, kl_ctrl=core_algos.FixedKLController(kl_coef=0.5), kl_penalty="kl")
    penalised = data.batch["token_level_rewards"].sum(-1)
    assert not torch.allclose(penalised, data.batch["token_level_scores"].sum(-1))
    config = OmegaConf.merge(algo(token_weighting="uniform"), {"use_kl_in_reward": True})
    out = ray_trainer.compute_advantage(data, "care", config=config)
    got = out.batch["advantages"][torch.arange(8), 0]
    assert torch.allclose(got, pure(data).seq_advantages, atol=1e-6)
    # the penalised rewards would give other advantages: this test tells the two apart
    assert not torch.allclose(pure(data, rewards=penalised).seq_advantages, pure(data).seq_advantages, atol=1e-3)


def test_empty_reasoning_never_wins_the_anchor(tokenizer):
    """``<think></think>`` (zero tokens) and ``<think>\n\n</think>`` (blank) count as no reasoning: the think length
    is the whole response, so a correct rollout that reasons briefly is the anchor, not one that skipped it."""
    set_tokenizer(tokenizer)
    rows = [
        ("e", 1.0, "<think></think><answer>4</answer>"),
        ("e", 1.0, "<think>\n\n</think><answer>4</answer>"),
        ("e", 1.0, "<think>2+2=4</think><answer>4</answer>"),
        ("e", 0.0, "<think>2+2=5</think><answer>5</answer>"),
        ("e", 0.0, "<think>2*2=6</think><answer>6</answer>"),
    ]
    out = ray_trainer.compute_advantage(make_batch(tokenizer, rows=rows), "care", config=algo())
    seq = out.batch["advantages"].sum(1)
    assert seq[2].item() == pytest.approx(2.0, abs=1e-4)  # the anchor
    assert seq[0].item() == 0.0 and seq[1].item() == 0.0
    spans = CONTEXT.span_parser().parse(make_batch(tokenizer, rows=rows).batch["responses"],
                                        make_batch(tokenizer, rows=rows).batch["response_mask"])
    assert spans.has_think.tolist() == [False, False, True, True, True]


@pytest.fixture
def trainer(tiny_qwen2, tokenizer):
    """verl's real ``RayPPOTrainer`` (no workers): its patched ``__init__`` records it for the estimator."""
    import os

    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.utils import Role

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={tiny_qwen2}", "algorithm.adv_estimator=care", "trainer.device=cpu",
            "data.train_batch_size=1", "data.val_batch_size=1", "data.dataloader_num_workers=0"])
    rows = [{"row": 0}]
    trainer = ray_trainer.RayPPOTrainer(cfg, tokenizer, role_worker_mapping={Role.ActorRollout: object},
                                        resource_pool_manager=None, train_dataset=rows, val_dataset=rows,
                                        collate_fn=list)
    yield trainer
    CONTEXT.trainer = None


def _random_anchor_batch(tokenizer):
    rows = []
    for g in range(8):
        rows += [(f"r{g}", 1.0, f"<think>group {g} way {w}</think><answer>{g}</answer>") for w in range(4)]
        rows.append((f"r{g}", 0.0, f"<think>group {g} wrong</think><answer>x</answer>"))
    return make_batch(tokenizer, rows=rows, resp_len=24)


def test_random_anchor_changes_with_the_trainers_step(trainer, tokenizer):
    assert CONTEXT.trainer() is trainer and CONTEXT.tokenizer is tokenizer  # recorded by RayPPOTrainer.__init__

    def anchors(step):
        trainer.global_steps = step  # fit() sets it before the step's compute_advantage
        out = ray_trainer.compute_advantage(_random_anchor_batch(tokenizer), "care", config=algo(anchor="random"))
        assert CONTEXT.metrics["care/step"] == step
        seq = out.batch["advantages"].sum(1)
        return [i for i in range(len(seq)) if i % 5 != 4 and seq[i] > 0]

    first, second = anchors(1), anchors(2)
    assert len(first) == len(second) == 8  # one anchor per group
    assert first != second  # a new draw every step ...
    assert anchors(1) == first  # ... reproducible for a given step and seed


def test_step_falls_back_to_meta_info_without_a_trainer(tokenizer):
    set_tokenizer(tokenizer)
    CONTEXT.trainer = None
    data = _random_anchor_batch(tokenizer)
    data.meta_info["global_steps"] = 7
    ray_trainer.compute_advantage(data, "care", config=algo(anchor="random"))
    assert CONTEXT.metrics["care/step"] == 7


def test_hidden_embeddings_are_used_then_leave_the_batch(tokenizer):
    set_tokenizer(tokenizer)
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0], [0.95, -0.05], [1.0, 0.0], [0.0, 1.0],
                        [-1.0, 0.2]])
    data = make_batch(tokenizer, embeddings=emb)
    out = ray_trainer.compute_advantage(data, "care", config=algo(token_weighting="uniform", K=2))
    assert not set(TASK_RUNNER_KEYS) & set(out.batch.keys())  # embeddings and spans: the actor update ships neither
    assert CONTEXT.metrics["care/hidden_embeddings"] == 1.0
    got = out.batch["advantages"][torch.arange(8), 0]
    with_hidden = pure(make_batch(tokenizer), embeddings=emb, K=2).seq_advantages
    assert torch.allclose(got, with_hidden, atol=1e-6)
    assert not torch.allclose(with_hidden, pure(make_batch(tokenizer), K=2).seq_advantages)  # n-grams pick others


def test_reference_pass_does_not_ship_the_embeddings_or_the_spans(tokenizer):
    """verl's real ``RayPPOTrainer._compute_ref_log_prob`` (patched) on a stand-in trainer whose reference worker
    group records what it receives."""
    from verl.utils import tensordict_utils as tu

    class RefWorkerGroup:
        def compute_ref_log_prob(self, td):
            self.keys = set(td.keys())
            ids = td["input_ids"]
            log_probs = torch.nested.nested_tensor_from_jagged(torch.full((ids.values().numel(),), -0.5),
                                                               offsets=ids.offsets())
            return tu.get_tensordict({"log_probs": log_probs})

    stand_in = type("Trainer", (), {})()
    stand_in.ref_in_actor, stand_in.ref_policy_wg = False, RefWorkerGroup()
    data = make_batch(tokenizer, embeddings=torch.randn(8, 16))
    batch_spans(data.batch, CONTEXT.span_parser())  # the spans parsed earlier in the step
    carried = set(TASK_RUNNER_KEYS)
    ref = ray_trainer.RayPPOTrainer._compute_ref_log_prob(stand_in, data)
    assert "input_ids" in stand_in.ref_policy_wg.keys and not carried & stand_in.ref_policy_wg.keys
    assert carried <= set(data.batch.keys())  # back in the batch for the estimator
    assert ref.batch["ref_log_prob"].shape == data.batch["responses"].shape


def test_spans_are_parsed_once_per_step_and_follow_verls_balance_batch(tokenizer):
    """The TaskRunner side of one step as ``fit()`` runs it: the pooling mask (first consumer here) parses the spans
    and keeps them on the batch, verl's real ``_balance_batch`` reorders the rows, and the estimator reads them back
    without a second decode; the advantages equal those of a batch that was parsed by the estimator itself."""
    from recipe_care.patches.hidden_states import build_pool_mask

    set_tokenizer(tokenizer)
    parser = CONTEXT.span_parser()
    parses = []
    parse = parser.parse
    parser.parse = lambda *args: parses.append(len(args[0])) or parse(*args)
    try:
        reference = ray_trainer.compute_advantage(make_batch(tokenizer), "care", config=algo())
        data = make_batch(tokenizer)
        data.batch["row"] = torch.arange(len(data))
        parses.clear()
        build_pool_mask(data)  # _compute_old_log_prob's mask: the step's first consumer
        assert parses == [8] and set(SPAN_KEYS) <= set(data.batch.keys())
        stand_in = type("Trainer", (), {"_get_dp_size": lambda self, worker_group, role: 2})()
        stand_in.actor_rollout_wg = None
        ray_trainer.RayPPOTrainer._balance_batch(stand_in, data, metrics={})
        order = data.batch["row"]
        assert order.tolist() != list(range(8))  # verl reordered the rows (and the span keys with them)
        out = ray_trainer.compute_advantage(data, "care", config=algo())
    finally:
        del parser.parse
    assert parses == [8]  # the estimator read the spans from the batch
    assert not set(SPAN_KEYS) & set(out.batch.keys())
    assert torch.equal(out.batch["advantages"], reference.batch["advantages"][order])


def test_fallbacks_without_tokenizer_or_acc(tokenizer, caplog):
    set_tokenizer(None)
    reset_warnings()
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
