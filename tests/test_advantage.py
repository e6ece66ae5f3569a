"""CARE sequence and token advantages: worked values (docs/algorithm.md, "Subgroup advantages" to "Region-weighted
tokens") and edge cases. Selection tests use embeddings whose geometry makes the rule matter (more candidates than
picks); ``tests/test_advantage_reference.py`` checks the whole estimator against a per-group loop."""

import logging
import math

import numpy as np
import pytest
import torch

from recipe_care.advantage import (
    ROLE_ANCHOR,
    ROLE_HARD_NEGATIVE,
    ROLE_NONE,
    ROLE_RESCUE_ANCHOR,
    ROLE_RESCUE_NEGATIVE,
    care_sequence_advantages,
    region_token_advantages,
    uniform_token_advantages,
)
from recipe_care.config import CareConfig


def run(acc, *, rewards=None, groups=None, think=None, answer=None, emb=None, lp=None, rgr=None, rgr_failed=None, **cfg):
    n = len(acc)
    return care_sequence_advantages(
        acc=acc,
        rewards=acc if rewards is None else rewards,
        group_ids=[0] * n if groups is None else groups,
        think_len=list(range(1, n + 1)) if think is None else think,
        answer_len=[1] * n if answer is None else answer,
        embeddings=emb,
        seq_logprob=lp,
        config=CareConfig(**cfg),
        rgr_row=rgr,
        rgr_failed=rgr_failed,
    )


def angles(*degrees):
    """Unit vectors in the plane at the given angles (cosine distance 1 - cos(difference))."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], 1).to(torch.float32)


# docs/algorithm.md#subgroup-advantages, worked values (binary reward, K = 4, s = 0.5)
@pytest.mark.parametrize(
    "acc,rgr,expected",
    [
        ([1, 0, 0, 0, 0], None, [2.0, -0.25, -0.25, -0.25, -0.25]),
        ([1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [2.0, -0.125, -0.25, -0.25, -0.25]),
        ([1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [1.2247449, 1.2247449, -0.4082483, -0.4082483, -0.4082483]),
        ([1, 0, 0, 0], None, [2.0, -1 / 3, -1 / 3, -1 / 3]),
        ([1, 0, 0], None, [2.0, -0.5, -0.5]),
        ([1, 0], None, [2.0, -1.0]),
    ],
)
def test_worked_values_table(acc, rgr, expected):
    res = run(acc, rgr=rgr)
    assert torch.allclose(res.seq_advantages, torch.tensor(expected), atol=1e-5)


def test_worked_value_without_equalization():
    assert torch.allclose(run([1, 0], equalize=False).seq_advantages, torch.tensor([1.0, -0.5]), atol=1e-6)


def test_roles_and_zero_outside_subgroup():
    # 3 positives, 7 failures: anchor = shortest positive (row 2, at 0 deg), 4 hard negatives, everything else 0
    acc = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    think = [5, 9, 3, 5, 5, 7, 5, 5, 5, 5]
    #            0   1  2   3    4   5   6    7    8    9
    e = angles(10, 50, 0, 170, -15, 90, 40, 120, -60, 20)
    res = run(acc, think=think, emb=e)
    role = res.role.tolist()
    assert role[2] == ROLE_ANCHOR
    assert role[1] == role[5] == ROLE_NONE
    adv = res.seq_advantages
    assert adv[2] == pytest.approx(2.0, abs=1e-5)
    assert (adv[torch.tensor(role) == ROLE_NONE] == 0).all()
    # pool (M=6 nearest to 0 deg): 0 (10), 4 (-15), 9 (20), 6 (40), 8 (-60), 7 (120); row 3 (170) is out.
    # nearest = row 0; then max-min among the negatives: row 7 (110 from row 0), row 8 (min 70 over {0, 7}), then
    # row 6 (min 30 over {0, 7, 8}) against row 4 (25) and row 9 (10)
    assert [i for i, r in enumerate(role) if r == ROLE_HARD_NEGATIVE] == [0, 6, 7, 8]


def test_hard_negative_diversity_ties_go_to_the_member_nearer_the_anchor():
    # after the nearest (row 3), rows 1 and 2 are equally far from it (distance 1: orthogonal), so the diversity
    # round ties; the authors loop over their pool sorted by distance to the anchor, so the nearer one (row 2) wins
    e = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    res = run([1, 0, 0, 0], think=[1] * 4, emb=e, K=2, M=3)
    assert res.role.tolist() == [ROLE_ANCHOR, ROLE_NONE, ROLE_HARD_NEGATIVE, ROLE_HARD_NEGATIVE]


def test_m_below_k_pools_m_and_equalizes_with_k_prime(caplog, monkeypatch):
    # authors' code: pool min(M, failures) = 3, K' = min(K, pool) = 3, equalization sqrt(K/K') = sqrt(5/3)
    import recipe_care.log

    monkeypatch.setattr(recipe_care.log, "_WARNED", set())  # once per process: forget earlier tests' warnings
    with caplog.at_level(logging.WARNING, logger="recipe_care"):
        res = run([1, 0, 0, 0, 0, 0, 0], emb=angles(0, 10, 20, 30, 40, 50, 60), think=[1] * 7, K=5, M=3)
        run([1, 0, 0], K=5, M=3)
    assert caplog.text.count("care.M=3 is smaller than care.K=5") == 1  # one warning, naming the consequence
    assert "sqrt(K/K')" in caplog.text
    assert res.role.tolist() == [ROLE_ANCHOR] + [ROLE_HARD_NEGATIVE] * 3 + [ROLE_NONE] * 3
    z_a, z_n = math.sqrt(3), 1 / math.sqrt(3)  # z-scores of rewards (1, 0, 0, 0), population std
    eq = math.sqrt(5 / 3)
    assert torch.allclose(res.seq_advantages, torch.tensor([z_a * eq] + [-0.5 * z_n * eq] * 3 + [0.0] * 3), atol=1e-5)


def test_anchor_ties_shorter_answer_then_lower_row():
    res = run([1, 1, 1, 0], think=[4, 4, 4, 9], answer=[3, 2, 2, 1])
    assert res.role.tolist()[:3] == [ROLE_NONE, ROLE_ANCHOR, ROLE_NONE]


def test_positive_means_acc_one_not_reward_positive():
    # formatted-but-wrong rollouts have reward 0.1 > 0 but acc 0: they are failures, never anchors
    acc = [0, 0, 1, 0]
    rewards = [0.1, 0.1, 1.0, 0.0]
    res = run(acc, rewards=rewards, think=[1, 1, 9, 1])
    assert res.role.tolist() == [ROLE_HARD_NEGATIVE, ROLE_HARD_NEGATIVE, ROLE_ANCHOR, ROLE_HARD_NEGATIVE]
    assert (res.seq_advantages[[0, 1, 3]] < 0).all() and res.seq_advantages[2] > 0


def test_all_positive_group_gets_zero():
    res = run([1, 1, 1, 1])
    assert (res.seq_advantages == 0).all()
    assert not res.rescued.any()


def test_hard_negatives_are_nearest_then_diverse():
    # anchor row 0; failures 1..7. Pool (M=6) = 6 nearest failures; first pick = nearest; then max-min diversity.
    e = torch.zeros(8, 3)
    e[0] = torch.tensor([1.0, 0.0, 0.0])  # anchor
    e[1] = torch.tensor([1.0, 0.05, 0.0])  # nearest
    e[2] = torch.tensor([1.0, 0.06, 0.0])  # near but redundant with 1
    e[3] = torch.tensor([1.0, 0.0, 0.4])  # different direction
    e[4] = torch.tensor([1.0, 0.0, -0.4])
    e[5] = torch.tensor([1.0, 0.3, 0.0])
    e[6] = torch.tensor([1.0, -0.3, 0.0])
    e[7] = torch.tensor([-1.0, 0.0, 0.0])  # farthest: outside the pool
    res = run([1, 0, 0, 0, 0, 0, 0, 0], emb=e, think=[1] * 8)
    chosen = {i for i, r in enumerate(res.role.tolist()) if r == ROLE_HARD_NEGATIVE}
    assert 1 in chosen and 7 not in chosen
    assert 2 not in chosen  # redundant with the nearest one
    assert len(chosen) == 4
    # M=K keeps the K nearest (pure "closest to the anchor")
    res = run([1, 0, 0, 0, 0, 0, 0, 0], emb=e, think=[1] * 8, M=4)
    near = {i for i, r in enumerate(res.role.tolist()) if r == ROLE_HARD_NEGATIVE}
    assert near == {1, 2, 5, 6}


def test_groups_need_not_be_contiguous_and_sizes_may_differ():
    # group "a": rows 0,2,4,6,8 ; group "b": rows 1,3 ; group "c": rows 5,7,9,10,11,12,13 (all fail → rescue)
    groups = np.array(["a", "b", "a", "b", "a", "c", "a", "c", "a", "c", "c", "c", "c", "c"], dtype=object)
    acc = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    deg = [0, 5, 30, 0, 170, 0, 60, 90, 100, 180, 30, 200, 45, 10]
    lp = [-1.0 if g == "c" else 0.0 for g in groups]
    lp[5] = 0.0  # pseudo-anchor of "c"
    res = run(acc, groups=groups, think=[1] * 14, emb=angles(*deg), lp=lp, K=3, M=3)
    adv = res.seq_advantages
    a, b, c = [0, 2, 4, 6, 8], [1, 3], [5, 7, 9, 10, 11, 12, 13]
    ref_a = run([1, 0, 0, 0, 0], think=[1] * 5, emb=angles(*[deg[i] for i in a]), K=3, M=3)
    ref_b = run([0, 1], think=[1] * 2, emb=angles(*[deg[i] for i in b]), K=3, M=3)
    ref_c = run([0] * 7, think=[1] * 7, emb=angles(*[deg[i] for i in c]), lp=[lp[i] for i in c], K=3, M=3)
    assert torch.allclose(adv[a], ref_a.seq_advantages) and torch.equal(res.role[a], ref_a.role)
    assert torch.allclose(adv[b], ref_b.seq_advantages) and torch.equal(res.role[b], ref_b.role)
    assert torch.allclose(adv[c], ref_c.seq_advantages) and torch.equal(res.role[c], ref_c.role)
    # "a": pool = the 3 nearest of 30, 170, 60, 100 → 30, 60, 100; nearest 30 (row 2), then 100 (row 8), then 60
    assert res.role[a].tolist() == [ROLE_ANCHOR, ROLE_HARD_NEGATIVE, ROLE_NONE, ROLE_HARD_NEGATIVE, ROLE_HARD_NEGATIVE]
    # "c" (0, 90, 180, 30, 200, 45, 10 deg): pseudo-anchor row 5 (0 deg); farthest 180 (row 9); farthest from it
    # 10 (row 13); then max-min to {180, 10}: 90 (row 7, min 80) beats 45 (35), 30 (20) and 200 (20)
    assert res.role[c].tolist() == [ROLE_RESCUE_ANCHOR, ROLE_RESCUE_NEGATIVE, ROLE_RESCUE_NEGATIVE, ROLE_NONE,
                                    ROLE_NONE, ROLE_NONE, ROLE_RESCUE_NEGATIVE]


RESCUE_DEG = (0, 10, 100, 180, 60, 200, 270, 5)  # row 0 is the pseudo-anchor (highest summed log-prob)
RESCUE_LP = [0.0, -1, -1, -1, -1, -1, -1, -1]


def test_rescue_faithful_and_small():
    res = run([0] * 8, lp=RESCUE_LP, think=[1] * 8, emb=angles(*RESCUE_DEG))
    role = res.role.tolist()
    assert role[0] == ROLE_RESCUE_ANCHOR
    assert sum(r == ROLE_RESCUE_NEGATIVE for r in role) == 4  # k = min(K, G-1) of 7 candidates
    adv = res.seq_advantages
    assert adv[0] == pytest.approx(2.0, abs=1e-4)  # delta cancels under the z-score
    assert torch.allclose(adv[torch.tensor(role) == ROLE_RESCUE_NEGATIVE], torch.tensor(-0.25), atol=1e-4)
    assert (adv[torch.tensor(role) == ROLE_NONE] == 0).all()
    small = run([0] * 8, lp=RESCUE_LP, think=[1] * 8, emb=angles(*RESCUE_DEG), rescue="small", rescue_delta=0.1)
    assert small.role.tolist() == role
    assert small.seq_advantages[0] == pytest.approx(0.1, abs=1e-6)
    assert torch.allclose(small.seq_advantages[torch.tensor(role) == ROLE_RESCUE_NEGATIVE],
                          torch.tensor(-0.5 * 0.1 / 4), atol=1e-7)
    off = run([0] * 8, lp=RESCUE_LP, emb=angles(*RESCUE_DEG), rescue="off").seq_advantages
    assert (off == 0).all()


def test_rescue_group_of_three_takes_g_minus_one_and_equalizes():
    # k = min(K, G-1) = 2: here every candidate is taken (what this test is about is k and the equalization)
    res = run([0, 0, 0], lp=[-1.0, -2.0, -3.0], think=[1] * 3, emb=angles(0, 40, 90))
    assert res.role.tolist() == [ROLE_RESCUE_ANCHOR, ROLE_RESCUE_NEGATIVE, ROLE_RESCUE_NEGATIVE]
    k = 2
    z_p, z_n = math.sqrt(k), 1 / math.sqrt(k)  # z-scores of (+d, -d/k, -d/k)
    eq = math.sqrt(4 / k)
    assert torch.allclose(res.seq_advantages, torch.tensor([z_p * eq, -0.5 * z_n * eq, -0.5 * z_n * eq]), atol=1e-4)


def test_rescue_negatives_are_farthest_first():
    """The authors' ``_select_diverse_negatives``: the failure farthest from the pseudo-anchor (row 3, 180 deg), then
    each time the candidate with the largest minimum distance to the NEGATIVES already taken (the pseudo-anchor no
    longer counts): row 7 (5 deg: 175 from 180), row 6 (270: min 90 over {180, 5}), row 2 (100: min 80 over
    {180, 5, 270}). Keeping the pseudo-anchor in that minimum would take rows 3, 6, 2, 4 instead."""
    res = run([0] * 8, lp=RESCUE_LP, think=[1] * 8, emb=angles(*RESCUE_DEG))
    chosen = [i for i, r in enumerate(res.role.tolist()) if r == ROLE_RESCUE_NEGATIVE]
    assert chosen == [2, 3, 6, 7]
    # fewer picks: the first two are the farthest and then the one farthest from it (row 7), not row 6
    two = run([0] * 8, lp=RESCUE_LP, think=[1] * 8, emb=angles(*RESCUE_DEG), K=2)
    assert [i for i, r in enumerate(two.role.tolist()) if r == ROLE_RESCUE_NEGATIVE] == [3, 7]


def test_rescue_ties_go_to_the_earlier_row():
    # duplicates: rows 1, 2 and 4 share one rationale, rows 3 and 5 another; all-equal log-probs → row 0 is p
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    res = run([0] * 6, lp=[-2.0] * 6, think=[1] * 6, emb=e, K=2)
    # farthest from p: rows 3 and 5 (distance 2) → row 3; then farthest from row 3: rows 1, 2, 4 (distance 1) → row 1
    assert res.role.tolist() == [ROLE_RESCUE_ANCHOR, ROLE_RESCUE_NEGATIVE, ROLE_NONE, ROLE_RESCUE_NEGATIVE, ROLE_NONE,
                                 ROLE_NONE]


def test_single_rollout_group_is_skipped():
    res = run([0], lp=[-1.0])
    assert res.seq_advantages.tolist() == [0.0] and not res.rescued.any()


def test_rgr_row_always_joins_subgroup():
    # 8 failures far from the anchor would fill the pool, but the RGR row (last) must be a member
    e = torch.zeros(9, 2)
    e[0] = torch.tensor([1.0, 0.0])
    e[1:8] = torch.tensor([1.0, 0.01])
    e[8] = torch.tensor([-1.0, 0.0])  # the repaired row is far in embedding space
    rgr = [0] * 8 + [1]
    res = run([1] + [0] * 8, emb=e, rgr=rgr, think=[1] * 9)
    assert res.role[8] == ROLE_HARD_NEGATIVE
    assert res.seq_advantages[8] == pytest.approx(-0.125, abs=1e-5)  # failed repair → s_refl = s/2
    passed = run([1] + [0] * 7 + [1], emb=e, rgr=rgr, think=[1] * 8 + [0])
    assert passed.role[0] == ROLE_ANCHOR  # a repaired row is not the anchor while an original positive exists
    assert passed.role[8] == ROLE_HARD_NEGATIVE and passed.seq_advantages[8] > 0
    assert passed.seq_advantages[8].item() == pytest.approx(passed.seq_advantages[0].item(), abs=1e-6)


def test_refl_scale_override():
    res = run([1, 0, 0, 0, 0], rgr=[0, 1, 0, 0, 0], refl_scale=0.05)
    assert res.seq_advantages[1] == pytest.approx(-0.05 * 0.5, abs=1e-6)


def test_random_anchor_is_a_positive_and_seeded():
    acc = [1, 1, 1, 1, 0, 0]
    picks = {int(torch.nonzero(run(acc, anchor="random", seed=s).role == ROLE_ANCHOR)) for s in range(20)}
    assert picks <= {0, 1, 2, 3} and len(picks) > 1
    a = run(acc, anchor="random", seed=7).role
    b = run(acc, anchor="random", seed=7).role
    assert torch.equal(a, b)


def test_nan_reward_is_a_clear_error():
    with pytest.raises(ValueError, match=r"rewards is not finite .*row 1 \(group g\)"):
        run([1, 0], rewards=[1.0, float("nan")], groups=np.array(["g", "g"], dtype=object))


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="think_len has 2 entries but there are 3 rows"):
        run([1, 0, 0], think=[1, 2])


def test_config_validation_and_omegaconf():
    from omegaconf import OmegaConf

    cfg = CareConfig.from_omegaconf(OmegaConf.create({"K": 2, "M": 3, "token_weighting": "region_weighted"}))
    assert (cfg.K, cfg.M, cfg.token_weighting, cfg.s_refl) == (2, 3, "region", 0.25)
    assert CareConfig.from_omegaconf(None) == CareConfig()
    with pytest.raises(ValueError, match="unknown key"):
        CareConfig.from_omegaconf({"KK": 3})
    with pytest.raises(ValueError, match="rescue"):
        CareConfig(rescue="sometimes")
    assert (CareConfig(K=5, M=4).K, CareConfig(K=5, M=4).M) == (5, 4)  # allowed, as the authors' code (one warning)


# ---------------------------------------------------------------------------------------------- token advantages


def _masks():
    # row 0: think t1..t3, answer t5..t6 ; row 1: no spans ; row 2: answer only
    resp = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]])
    think = torch.zeros_like(resp)
    answer = torch.zeros_like(resp)
    think[0, 1:4] = 1
    answer[0, 5:7] = 1
    answer[2, 2:4] = 1
    return resp, think, answer


def test_region_weights_positive_row():
    resp, think, answer = _masks()
    adv = region_token_advantages(
        seq_advantages=torch.tensor([2.0, 0.0, 0.0]), response_mask=resp, think_mask=think, answer_mask=answer,
        acc=[1, 0, 0], gamma_pos=0.005,
    )
    w_sum = 2 + 0.005 * 3
    assert adv[0, 5].item() == pytest.approx(2.0 / w_sum)
    assert adv[0, 1].item() == pytest.approx(2.0 * 0.005 / w_sum)
    assert adv[0, 0].item() == 0 and adv[0, 4].item() == 0 and adv[0, 7].item() == 0  # tags/gaps/pad
    assert adv[0].sum().item() == pytest.approx(2.0, rel=1e-5)


def test_region_weights_failure_masks_think_and_fallbacks():
    resp, think, answer = _masks()
    adv = region_token_advantages(
        seq_advantages=torch.tensor([-0.5, -0.25, -1.0]), response_mask=resp, think_mask=think, answer_mask=answer,
        acc=[0, 0, 0], gamma_pos=0.005,
    )
    assert (adv[0, 1:4] == 0).all()  # failing rationale tokens are masked out
    assert adv[0, 5].item() == pytest.approx(-0.25)
    # no answer span → the whole response is the answer region
    assert torch.allclose(adv[1, :4], torch.full((4,), -0.25 / 4)) and (adv[1, 4:] == 0).all()
    assert torch.allclose(adv[2], torch.tensor([0, 0, -0.5, -0.5, 0, 0, 0, 0.0]))
    assert torch.allclose(adv.sum(1), torch.tensor([-0.5, -0.25, -1.0]))


def test_region_weights_positive_without_think_span_use_whole_response():
    resp, think, answer = _masks()
    adv = region_token_advantages(
        seq_advantages=torch.tensor([0.0, 0.0, 1.0]), response_mask=resp, think_mask=think, answer_mask=answer,
        acc=[0, 0, 1], gamma_pos=0.1,
    )
    w_sum = 2 + 0.1 * 5
    assert adv[2, 0].item() == pytest.approx(0.1 / w_sum)
    assert adv[2, 2].item() == pytest.approx(1.1 / w_sum)
    assert adv[2].sum().item() == pytest.approx(1.0, rel=1e-5)


def test_uniform_weights_broadcast():
    resp, _, _ = _masks()
    adv = uniform_token_advantages(seq_advantages=torch.tensor([1.0, -2.0, 0.5]), response_mask=resp)
    assert torch.equal(adv, torch.tensor([1.0, -2.0, 0.5]).unsqueeze(1) * resp.float())


def test_docstring_examples_of_the_named_steps():
    """The ``>>>`` example of every named step (anchor, hard negatives, subgroup advantages, rescue, region weights)
    and of the helpers they share runs and shows what the function returns."""
    import doctest

    import recipe_care.advantage
    import recipe_care.config
    import recipe_care.log

    for module in (recipe_care.advantage, recipe_care.config, recipe_care.log):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, (module.__name__, result)


def test_every_config_field_documents_its_default_and_source():
    """TRL's GRPOConfig style: each field of ``CareConfig`` / ``RgrConfig`` has a docstring naming its default and
    where it comes from ([code], [paper] or [ours])."""
    import ast
    import dataclasses
    import inspect

    import recipe_care.config as config_module

    tree = ast.parse(inspect.getsource(config_module))
    for cls in (CareConfig, config_module.RgrConfig):
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
        docs = {}
        for field_node, doc_node in zip(node.body, node.body[1:]):
            if isinstance(field_node, ast.AnnAssign) and isinstance(doc_node, ast.Expr):
                docs[field_node.target.id] = doc_node.value.value
        for field in dataclasses.fields(cls):
            doc = docs.get(field.name, "")
            assert "Default" in doc or "default" in doc, (cls.__name__, field.name, doc)
            assert any(tag in doc for tag in ("[code", "[paper", "[ours")), (cls.__name__, field.name, doc)
