"""Differential test: ``care_sequence_advantages`` against a plain per-group Python loop.

The loop below is written from the rules in docs/algorithm.md ("Anchor", "Hard negatives", "Subgroup advantages",
"All-negative rescue"), one group and one row at a time, in float64, without looking at the vectorized code. Both run
on a few thousand random batches: uneven groups, shuffled rows, lots of ties (duplicate embeddings, equal lengths,
equal log-probs), K from 1 to 5, M from 1 to 9 (so also M < K), RGR rows, every rescue mode. Roles and advantages
must agree row by row.

Embeddings are drawn from unit vectors whose entries are 0, ±1 or ±0.5 (times 0.5, 1 or 2, or the zero vector), so
every cosine is a multiple of 1/4 and exact in float32 and float64 alike: a tie is a tie in both implementations.
"""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import pytest
import torch

from recipe_care.advantage import care_sequence_advantages
from recipe_care.config import CareConfig

NONE, ANCHOR, HARD, RESCUE_ANCHOR, RESCUE_NEG = 0, 1, 2, 3, 4
D = 8
BATCHES = 2000


# ------------------------------------------------------------------------------------------------------ reference
def cos_dist(u, v) -> float:
    nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
    if nu == 0.0 or nv == 0.0:
        return 1.0  # an empty embedding is unrelated to everything
    c = sum(a * b for a, b in zip(u, v)) / (nu * nv)
    return 1.0 - max(-1.0, min(1.0, c))


def farthest_point(first, candidates, d, k):
    """Take ``first``; then, while fewer than k, the candidate (in the order given) whose smallest distance to the
    ones taken is largest; the earliest candidate wins a tie."""
    taken = [first]
    while len(taken) < k:
        best, best_val = None, -math.inf
        for c in candidates:
            if c in taken:
                continue
            val = min(d(c, t) for t in taken)
            if val > best_val:
                best, best_val = c, val
        taken.append(best)
    return taken


def zscores(values, eps):
    mu = sum(values) / len(values)
    sd = math.sqrt(sum((v - mu) ** 2 for v in values) / len(values))
    return [(v - mu) / (sd + eps) for v in values]


def reference(acc, rewards, groups, think, answer, emb, lp, rgr, cfg):
    n = len(acc)
    adv, role = [0.0] * n, [NONE] * n
    members: dict = {}
    for row, g in enumerate(groups):
        members.setdefault(g, []).append(row)

    def d(i, j):
        return cos_dist(emb[i], emb[j])

    for rows in members.values():
        positives = [r for r in rows if acc[r] == 1.0]
        if positives:
            # Anchor: fewest think tokens, then fewest answer tokens, then first row; an RGR row only when it is
            # the group's only kind of positive
            eligible = [r for r in positives if not rgr[r]] or positives
            anchor = min(eligible, key=lambda r: (think[r], answer[r], r))
            # Hard negatives: failures (and RGR rows) other than the anchor; the RGR row first, then by distance to
            # the anchor, then row order; the M first form the pool; nearest taken, then farthest-point in pool order
            candidates = [r for r in rows if r != anchor and (r not in positives or rgr[r])]
            if not candidates:
                continue
            pool = sorted(candidates, key=lambda r: (0 if rgr[r] else 1, d(anchor, r), r))[: cfg.M]
            k_prime = min(cfg.K, len(pool))
            hard = farthest_point(pool[0], pool, d, k_prime)
            subgroup = [anchor] + hard
            z = zscores([rewards[r] for r in subgroup], cfg.eps)
            eq = math.sqrt(cfg.K / k_prime) if cfg.equalize else 1.0
            for r, z_r in zip(subgroup, z):
                if r in positives:
                    adv[r] = z_r * eq
                else:
                    scale = cfg.s_refl if rgr[r] else cfg.s
                    adv[r] = -scale * abs(z_r) * eq
                role[r] = HARD
            role[anchor] = ANCHOR
        elif cfg.rescue != "off" and len(rows) >= 2:
            # All-negative rescue: pseudo-anchor = highest summed log-prob (first row on ties / without log-probs);
            # k = min(K, G-1) negatives: the farthest from it, then farthest-point among the negatives, row order
            pseudo = rows[0]
            if lp is not None:
                for r in rows:
                    if lp[r] > lp[pseudo]:
                        pseudo = r
            candidates = [r for r in rows if r != pseudo]
            k = min(cfg.K, len(candidates))
            first = candidates[0]
            for c in candidates:
                if d(pseudo, c) > d(pseudo, first):
                    first = c
            negatives = farthest_point(first, candidates, d, k)
            eq = math.sqrt(cfg.K / k) if cfg.equalize else 1.0
            delta = cfg.rescue_delta
            if cfg.rescue == "faithful":
                z = zscores([delta] + [-delta / k] * k, cfg.eps)
                a_p, a_n = z[0], [-cfg.s * abs(x) for x in z[1:]]
            else:
                a_p, a_n = delta, [-cfg.s * delta / k] * k
            adv[pseudo], role[pseudo] = a_p * eq, RESCUE_ANCHOR
            for r, a in zip(negatives, a_n):
                adv[r], role[r] = a * eq, RESCUE_NEG
    return adv, role


# ------------------------------------------------------------------------------------------------------ batches
def _unit_vectors(rng, count):
    out = []
    for _ in range(count):
        v = [0.0] * D
        if rng.random() < 0.4:
            v[rng.randrange(D)] = rng.choice((-1.0, 1.0))
        else:
            for j in rng.sample(range(D), 4):
                v[j] = rng.choice((-0.5, 0.5))
        out.append(v)
    return out


def random_batch(rng):
    """One batch: 1-8 groups of 1-10 rows, rows shuffled, and a random config (``rng``: a ``random.Random``)."""
    acc, groups, rgr = [], [], []
    for g in range(rng.randint(1, 8)):
        size = rng.randint(1, 10)
        p = rng.choice((0.0, 0.2, 0.5, 0.8, 1.0))
        flags = [False] * size
        if rng.random() < 0.3:
            flags[rng.randrange(size)] = True
        acc += [1.0 if rng.random() < p else 0.0 for _ in range(size)]
        groups += [f"g{(g * 7) % 11}"] * size  # group ids not in sorted order
        rgr += flags
    n = len(acc)
    lam = rng.choice((0.0, 0.1))
    rewards = [(1 - lam) * a + lam * (rng.random() < 0.5) for a in acc]
    think = [rng.randint(0, 4) for _ in range(n)]
    answer = [rng.randint(0, 2) for _ in range(n)]
    palette = _unit_vectors(rng, rng.randint(2, 6))
    emb = []
    for _ in range(n):
        scale = 0.0 if rng.random() < 0.05 else rng.choice((0.5, 1.0, 2.0))
        emb.append([scale * x for x in rng.choice(palette)])
    lp = None if rng.random() < 0.1 else [-float(rng.randint(1, 3)) for _ in range(n)]
    perm = list(range(n))
    rng.shuffle(perm)
    shuffle = lambda xs: [xs[i] for i in perm]  # noqa: E731
    cfg = CareConfig(
        K=rng.randint(1, 5), M=rng.randint(1, 9), s=rng.choice((0.5, 0.25)), equalize=rng.random() < 0.8,
        rescue=rng.choice(("faithful", "small", "off")), rescue_delta=rng.choice((0.1, 1.0)),
        refl_scale=None if rng.random() < 0.7 else 0.1,
    )
    return dict(acc=shuffle(acc), rewards=shuffle(rewards), groups=shuffle(groups), think=shuffle(think),
                answer=shuffle(answer), emb=shuffle(emb), lp=None if lp is None else shuffle(lp),
                rgr=shuffle(rgr), cfg=cfg)


@pytest.fixture
def one_thread():
    """Tiny batches: torch's thread pool would cost more than the math (on a busy 2-core host, 100x more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_vectorized_estimator_matches_the_per_group_loop(caplog, one_thread):
    rng = random.Random(20251222)
    checked = {"rescue_picks": 0, "diversity_rounds": 0, "m_below_k": 0}
    with caplog.at_level(logging.ERROR, logger="recipe_care"):  # M < K warns once per (K, M)
        for case in range(BATCHES):
            b = random_batch(rng)
            cfg = b["cfg"]
            res = care_sequence_advantages(
                acc=b["acc"], rewards=b["rewards"], group_ids=np.array(b["groups"], dtype=object),
                think_len=b["think"], answer_len=b["answer"], embeddings=torch.tensor(b["emb"]),
                seq_logprob=b["lp"], config=cfg, rgr_row=b["rgr"],
            )
            adv, role = reference(b["acc"], b["rewards"], b["groups"], b["think"], b["answer"], b["emb"], b["lp"],
                                  b["rgr"], cfg)
            assert res.role.tolist() == role, (case, b)
            assert np.allclose(res.seq_advantages.numpy(), adv, rtol=1e-5, atol=1e-5), (case, b)
            picks = role.count(RESCUE_NEG)
            checked["rescue_picks"] += int(0 < picks < len(b["acc"]) - 1)
            checked["diversity_rounds"] += int(role.count(HARD) >= 2 or picks >= 2)
            checked["m_below_k"] += int(cfg.M < cfg.K and role.count(HARD) > 0)
    # the batches exercise what the test is about: rescues that leave candidates out, several picks, M < K
    assert min(checked.values()) >= 100, checked
