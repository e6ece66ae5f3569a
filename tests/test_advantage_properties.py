"""Property tests (hypothesis) for the CARE advantage invariants."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recipe_care.advantage import (
    ROLE_ANCHOR,
    ROLE_HARD_NEGATIVE,
    ROLE_NONE,
    ROLE_RESCUE_ANCHOR,
    ROLE_RESCUE_NEGATIVE,
    care_sequence_advantages,
    region_token_advantages,
)
from recipe_care.config import CareConfig


@st.composite
def batches(draw, max_groups=6, max_g=10):
    sizes = draw(st.lists(st.integers(1, max_g), min_size=1, max_size=max_groups))
    n = sum(sizes)
    groups = np.concatenate([np.full(s, f"uid{g}", dtype=object) for g, s in enumerate(sizes)])
    acc = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    fmt = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    lam = draw(st.sampled_from([0.0, 0.1]))
    rewards = [(1 - lam) * a + lam * f for a, f in zip(acc, fmt)]
    think = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    answer = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    seed = draw(st.integers(0, 2**16))
    emb = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    lp = (-torch.rand(n, generator=torch.Generator().manual_seed(seed + 1)) * 10).tolist()
    perm = np.random.default_rng(seed).permutation(n)  # shuffle rows: groups are not contiguous
    k = draw(st.integers(1, 5))
    cfg = CareConfig(K=k, M=draw(st.integers(1, 9)), rescue=draw(st.sampled_from(["off", "faithful", "small"])))
    return dict(
        acc=np.asarray(acc)[perm], rewards=np.asarray(rewards)[perm], group_ids=groups[perm],
        think_len=np.asarray(think)[perm], answer_len=np.asarray(answer)[perm], embeddings=emb[perm],
        seq_logprob=np.asarray(lp)[perm], config=cfg,
    )


def _call(b, **over):
    kw = dict(b)
    kw.update(over)
    return care_sequence_advantages(**kw)


@settings(max_examples=60, deadline=None)
@given(batches())
def test_signs_zeros_and_finiteness(b):
    res = _call(b)
    adv, role = res.seq_advantages, res.role
    assert torch.isfinite(adv).all()
    assert (adv[role == ROLE_NONE] == 0).all()
    assert (adv[(role == ROLE_ANCHOR) | (role == ROLE_RESCUE_ANCHOR)] >= 0).all()
    assert (adv[role == ROLE_RESCUE_NEGATIVE] <= 0).all()
    acc = torch.as_tensor(b["acc"])
    hard = role == ROLE_HARD_NEGATIVE
    assert (adv[hard & (acc == 0)] <= 0).all()
    # one anchor per group with a positive and a failure; K' <= K
    gid = res.group_index
    for g in torch.unique(gid):
        rows = gid == g
        n_anchor = int((role[rows] == ROLE_ANCHOR).sum())
        has_pos, has_fail = bool((acc[rows] == 1).any()), bool((acc[rows] == 0).any())
        assert n_anchor == (1 if has_pos and has_fail else 0)
        assert int(((role[rows] == ROLE_HARD_NEGATIVE) | (role[rows] == ROLE_RESCUE_NEGATIVE)).sum()) <= b["config"].K
        if not has_fail:
            assert (adv[rows] == 0).all()  # all-positive groups contribute nothing


@settings(max_examples=40, deadline=None)
@given(batches())
def test_permuting_rows_permutes_outputs(b):
    n = len(b["acc"])
    b = dict(b, think_len=np.random.default_rng(1).permutation(n))  # tie-free lengths: no row-order tie-breaks
    res = _call(b)
    perm = np.random.default_rng(0).permutation(n)
    permuted = {k: (v if k == "config" else v[perm]) for k, v in b.items()}
    res_p = _call(permuted)
    assert torch.allclose(res_p.seq_advantages, res.seq_advantages[perm], atol=1e-6)
    assert torch.equal(res_p.role, res.role[perm])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.sampled_from([0.25, 0.5, 1.0]))
def test_equalization_makes_negative_mass_independent_of_k_prime(k, n_fail, s):
    # one positive and n_fail failures, binary rewards: total negative mass is -s*sqrt(K) whatever K' = min(K, n_fail)
    acc = [1.0] + [0.0] * n_fail
    res = care_sequence_advantages(
        acc=acc, rewards=acc, group_ids=[0] * len(acc), think_len=[1] * len(acc), answer_len=[1] * len(acc),
        embeddings=None, seq_logprob=None, config=CareConfig(K=k, M=k + 2, s=s),
    )
    adv = res.seq_advantages
    assert adv[0].item() == pytest_approx(math.sqrt(k))
    assert adv[1:].sum().item() == pytest_approx(-s * math.sqrt(k))


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-4, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**16))
def test_region_token_advantages_sum_to_sequence_advantage(n, t, seed):
    g = torch.Generator().manual_seed(seed)
    resp = (torch.rand(n, t, generator=g) > 0.2).long()
    think = (torch.rand(n, t, generator=g) > 0.5).long() * resp
    answer = (torch.rand(n, t, generator=g) > 0.6).long() * resp * (1 - think)
    seq = torch.randn(n, generator=g)
    acc = (torch.rand(n, generator=g) > 0.5).float()
    adv = region_token_advantages(
        seq_advantages=seq, response_mask=resp, think_mask=think, answer_mask=answer, acc=acc, gamma_pos=0.005
    )
    assert torch.isfinite(adv).all()
    assert (adv[resp == 0] == 0).all()
    has = resp.sum(1) > 0
    assert torch.allclose(adv.sum(1)[has], seq[has], atol=1e-5)
    # the fast path (lengths given, masks inside the response) computes the same thing
    fast = region_token_advantages(
        seq_advantages=seq, response_mask=resp, think_mask=think.bool(), answer_mask=answer.bool(), acc=acc,
        gamma_pos=0.005, think_len=think.sum(1), answer_len=answer.sum(1),
    )
    assert torch.allclose(fast, adv, atol=1e-6)
    # failures never put weight on think tokens (unless the row lacks an answer span)
    fail_rows = (acc == 0) & (answer.sum(1) > 0)
    assert (adv[fail_rows][(think[fail_rows] == 1)] == 0).all()
