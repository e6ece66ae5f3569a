"""CARE advantage math: pure torch, vectorized, no verl import.

Two public entry points (their names and meanings are a stable contract; the rules are specified in
docs/algorithm.md, sections "Anchor" to "Region-weighted tokens"):

- :func:`care_sequence_advantages` — one scalar advantage per rollout: shortest-think anchor, hard negatives (the M
  failures nearest to the anchor by cosine distance; the nearest, then greedy max-min diversity among the negatives
  to K' = min(K, pool)), z-score inside {anchor} ∪ negatives (population std, ε), negative-only scaling s, reduced
  scale s_refl for an RGR row that still fails, update-size equalization sqrt(K/K'), zero for every row outside the
  subgroup, zero for all-positive groups, and the all-negative rescue (``faithful`` or ``small``; negatives chosen
  as the authors' ``_select_diverse_negatives`` does).
- :func:`region_token_advantages` — spread each sequence advantage over its response tokens: answer tokens weigh 1,
  think tokens weigh γ_pos for correct rollouts and 0 for failures, divided by the row's weight sum.

Rows of a group need not be contiguous (verl reorders rows); groups may have different sizes. Groups are laid
out in a padded ``[B, G_max]`` grid once, and every step is a tensor operation over all groups at once; the only
Python loop runs over the K selection rounds (K = 4), never over rows or groups.

Positives are rollouts with ``acc == 1`` (never ``reward > 0``); the z-score uses ``rewards`` (the verifier's score,
``token_level_scores``, as the authors). See docs/algorithm.md, "Deviations".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from recipe_care.config import CareConfig

ROLE_NONE = 0
ROLE_ANCHOR = 1
ROLE_HARD_NEGATIVE = 2
ROLE_RESCUE_ANCHOR = 3
ROLE_RESCUE_NEGATIVE = 4

_ACC_TOL = 1e-6


@dataclass
class CareSequenceResult:
    """Output of :func:`care_sequence_advantages` (all tensors have one entry per row, input order)."""

    seq_advantages: torch.Tensor
    """float [N]: the CARE advantage of each rollout (0 outside subgroups)."""
    role: torch.Tensor
    """int64 [N]: 0 none, 1 anchor, 2 hard negative (incl. an RGR row in the subgroup), 3 rescue pseudo-anchor,
    4 rescue negative."""
    k_prime: torch.Tensor
    """int64 [B]: K' per group (number of non-anchor subgroup members; k for rescued groups; 0 if none)."""
    group_index: torch.Tensor
    """int64 [N]: dense group id of each row (0..B-1, in order of first appearance sorted by id)."""
    rescued: torch.Tensor
    """bool [B]: the group was rescued (no positive)."""
    has_anchor: torch.Tensor
    """bool [B]: the group has a real anchor (at least one positive)."""


# ----------------------------------------------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------------------------------------------


def dense_group_index(group_ids: Any) -> torch.Tensor:
    """Map arbitrary group ids (uid strings in a numpy object array, ints, a tensor) to dense int64 ids."""
    if isinstance(group_ids, torch.Tensor):
        return torch.unique(group_ids.reshape(-1), return_inverse=True)[1].to(torch.int64)
    arr = np.asarray(group_ids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    try:
        _, inverse = np.unique(arr, return_inverse=True)
    except TypeError:  # mixed, unorderable ids: fall back to their string form
        _, inverse = np.unique(arr.astype(str), return_inverse=True)
    return torch.from_numpy(inverse.reshape(-1).astype(np.int64))


@dataclass
class _Layout:
    gid: torch.Tensor  # [N] group of each row
    col: torch.Tensor  # [N] position of each row inside its group (row order)
    B: int
    G: int
    valid: torch.Tensor  # [B, G] bool
    sizes: torch.Tensor  # [B]
    rows: torch.Tensor  # [B, G] row index of each slot (0 in padding slots)

    def pad(self, x: torch.Tensor, fill) -> torch.Tensor:
        out = x.index_select(0, self.rows.reshape(-1)).view((self.B, self.G) + tuple(x.shape[1:]))
        mask = self.valid.reshape(self.valid.shape + (1,) * (x.ndim - 1))
        return torch.where(mask, out, torch.as_tensor(fill, dtype=x.dtype))

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((self.B * self.G,) + tuple(x.shape[2:])).index_select(0, self.gid * self.G + self.col)


def _layout(gid: torch.Tensor) -> _Layout:
    n = gid.numel()
    B = int(gid.max().item()) + 1 if n else 0
    sizes = torch.bincount(gid, minlength=B)
    order = torch.sort(gid, stable=True).indices
    starts = torch.cumsum(sizes, 0) - sizes
    col = torch.empty_like(gid)
    col[order] = torch.arange(n, dtype=torch.int64) - starts[gid[order]]
    G = int(sizes.max().item()) if n else 0
    valid = torch.arange(G).unsqueeze(0) < sizes.unsqueeze(1)
    rows = torch.zeros(B * G, dtype=torch.int64)
    rows[gid * G + col] = torch.arange(n, dtype=torch.int64)
    rows = rows.view(B, G)
    return _Layout(gid=gid, col=col, B=B, G=G, valid=valid, sizes=sizes, rows=rows)


def _as_1d(name: str, x: Any, n: int, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x)
    t = t.reshape(-1).to(dtype)
    if t.numel() != n:
        raise ValueError(f"{name} has {t.numel()} entries but there are {n} rows")
    return t


def _check_finite(name: str, x: torch.Tensor, group_ids: Any) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:8].tolist()
        ids = np.asarray(group_ids).reshape(-1) if not isinstance(group_ids, torch.Tensor) else group_ids.reshape(-1)
        where = ", ".join(f"row {r} (group {ids[r]!s})" for r in rows)
        raise ValueError(
            f"CARE: {name} is not finite at {int(bad.sum())} row(s): {where}. "
            f"Fix the reward function so that it returns a finite score (and acc in {{0, 1}}) for every rollout."
        )


# ----------------------------------------------------------------------------------------------------------------
# Sequence advantages
# ----------------------------------------------------------------------------------------------------------------


def _cosine_distances(emb: Optional[torch.Tensor], lay: _Layout, n: int) -> torch.Tensor:
    """Pairwise cosine distances inside each group: [B, G, G] (zeros when no embeddings: ties → row order).

    The embeddings are read once (gathered into the group grid block by block); norms come from the Gram matrix's
    diagonal, so they are never normalized row by row. Non-finite or zero embeddings give distance 1 to everything.
    """
    if emb is None:
        return torch.zeros(lay.B, lay.G, lay.G)
    e = torch.as_tensor(emb)
    if e.ndim != 2 or e.shape[0] != n:
        raise ValueError(f"embeddings must have shape [N={n}, D], got {tuple(e.shape)}")
    if e.dtype not in (torch.float32, torch.float64):
        e = e.to(torch.float32)
    # Gram matrices of all groups, gathered and multiplied in cache-sized blocks of groups (~2 MB of embeddings per
    # block): each block is read from memory once and multiplied while still in cache (3x faster than one big gather
    # at D=3584). The loop runs over blocks of rows, not over groups: every block is one batched matmul.
    gram = torch.empty(lay.B, lay.G, lay.G, dtype=e.dtype)
    block = max(1, (2 << 20) // max(1, lay.G * e.shape[1] * e.element_size()))
    for start in range(0, lay.B, block):
        idx = lay.rows[start : start + block].reshape(-1)
        grouped = e.index_select(0, idx).view(-1, lay.G, e.shape[1])
        torch.bmm(grouped, grouped.transpose(1, 2), out=gram[start : start + block])
    gram = gram.to(torch.float32)
    norm = gram.diagonal(dim1=1, dim2=2).clamp_min(0.0).sqrt()
    cos = gram / (norm.unsqueeze(2) * norm.unsqueeze(1)).clamp_min(1e-12)
    cos = torch.nan_to_num(cos, nan=0.0, posinf=0.0, neginf=0.0).clamp_(-1.0, 1.0)
    return 1.0 - cos


def _pick_rows(dist: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``dist[b, idx[b], :]`` for every group b: [B, G] (a gather; advanced indexing is slow on CPU)."""
    B, G, _ = dist.shape
    return torch.gather(dist, 1, idx.view(B, 1, 1).expand(B, 1, G)).squeeze(1)


def _onehot(idx: torch.Tensor, G: int, active: torch.Tensor) -> torch.Tensor:
    """[B, G] bool with ``True`` at ``idx[b]`` for active groups."""
    return (torch.arange(G).unsqueeze(0) == idx.unsqueeze(1)) & active.unsqueeze(1)


def _greedy_maxmin(
    dist: torch.Tensor, first: torch.Tensor, eligible: torch.Tensor, count: torch.Tensor, rounds: int
) -> torch.Tensor:
    """Greedy max-min (farthest-point) selection among the negatives themselves, vectorized over groups.

    Group b takes column ``first[b]`` (when ``count[b] > 0``), then repeatedly the ``eligible`` column not yet taken
    with the largest minimum distance to the columns taken so far; nothing else (no anchor) enters that minimum.
    Ties go to the lower column. Group b stops after ``count[b]`` picks; at most ``rounds`` picks are made. Returns
    the chosen mask [B, G].
    """
    B, G = eligible.shape
    chosen = _onehot(first, G, count > 0)
    mind = _pick_rows(dist, first)
    neg_inf = torch.full_like(mind, -float("inf"))
    for t in range(1, rounds):
        active = count > t
        if not bool(active.any()):
            break
        j = torch.where(eligible & ~chosen, mind, neg_inf).argmax(dim=1)
        chosen |= _onehot(j, G, active)
        mind = torch.minimum(mind, _pick_rows(dist, j))
    return chosen


def _permute_grid(dist: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``dist[b, order[b, i], order[b, j]]``: the distance grid in the column order ``order`` [B, G]."""
    B, G, _ = dist.shape
    rows = torch.gather(dist, 1, order.unsqueeze(2).expand(B, G, G))
    return torch.gather(rows, 2, order.unsqueeze(1).expand(B, G, G))


def _zscore(r: torch.Tensor, member: torch.Tensor, eps: float) -> torch.Tensor:
    """z-score of r over the members of each group (population std)."""
    m = member.to(r.dtype)
    cnt = m.sum(1, keepdim=True).clamp_min(1.0)
    mu = (r * m).sum(1, keepdim=True) / cnt
    var = (((r - mu) ** 2) * m).sum(1, keepdim=True) / cnt
    return (r - mu) / (var.sqrt() + eps)


def care_sequence_advantages(
    *,
    acc: Any,
    rewards: Any,
    group_ids: Any,
    think_len: Any,
    answer_len: Any,
    embeddings: Optional[Any],
    seq_logprob: Optional[Any],
    config: CareConfig,
    rgr_row: Optional[Any] = None,
    rgr_failed: Optional[Any] = None,
    step: int = 0,
) -> CareSequenceResult:
    """CARE sequence-level advantages for a batch of rollouts (see the module docstring).

    Args:
        acc: [N] verifier accuracy; a rollout is positive iff ``acc == 1``.
        rewards: [N] the verifier's score (verl's ``token_level_scores`` summed), used in the subgroup z-score.
        group_ids: [N] group (prompt) id of each row, e.g. verl's ``uid`` column; rows need not be contiguous.
        think_len: [N] tokens inside ``<think>…</think>``; callers pass the response length for a missing, empty or
            blank think span (``recipe_care.spans.anchor_lengths``).
        answer_len: [N] tokens inside ``<answer>…</answer>`` (tie-break of the anchor; same fallback).
        embeddings: [N, D] rationale embeddings (cosine distance; re-normalized here) or None (all distances
            equal: selection falls back to row order).
        seq_logprob: [N] summed old log-prob of each response (rescue pseudo-anchor) or None (first row).
        config: :class:`CareConfig`.
        rgr_row: [N] bool, the row is an RGR repair; it always joins its group's subgroup when the group has an
            anchor (it took the place of the failure it repaired) and is never the anchor unless it is the only
            positive.
        rgr_failed: [N] bool, the RGR row still fails (scale s_refl). Defaults to ``rgr_row & ~positive``.
        step: training step (the trainer's ``global_steps``), mixed into the seed of ``anchor="random"``.
    """
    acc_t = torch.as_tensor(np.asarray(acc, dtype=np.float64) if not isinstance(acc, torch.Tensor) else acc)
    acc_t = acc_t.reshape(-1).to(torch.float64)
    n = acc_t.numel()
    rew = _as_1d("rewards", rewards, n, torch.float64)
    _check_finite("rewards", rew, group_ids)
    _check_finite("acc", acc_t, group_ids)
    gid = dense_group_index(group_ids)
    if gid.numel() != n:
        raise ValueError(f"group_ids has {gid.numel()} entries but there are {n} rows")
    tl = _as_1d("think_len", think_len, n, torch.int64).clamp_min(0)
    al = _as_1d("answer_len", answer_len, n, torch.int64).clamp_min(0)
    is_pos = (acc_t - 1.0).abs() <= _ACC_TOL
    rgr = (
        torch.zeros(n, dtype=torch.bool)
        if rgr_row is None
        else _as_1d("rgr_row", rgr_row, n, torch.float64).ne(0)
    )
    rgr_fail = rgr & ~is_pos if rgr_failed is None else (_as_1d("rgr_failed", rgr_failed, n, torch.float64).ne(0) & rgr)

    if n == 0:
        empty = torch.zeros(0)
        return CareSequenceResult(empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                                  gid, torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool))

    lay = _layout(gid)
    B, G, valid = lay.B, lay.G, lay.valid
    cols = torch.arange(G).unsqueeze(0)
    pos = lay.pad(is_pos, False)
    neg = valid & ~pos
    rgr_p = lay.pad(rgr, False)
    r = lay.pad(rew, 0.0)
    dist = _cosine_distances(embeddings, lay, n)  # [B, G, G]

    # ---- anchor: shortest think span among the positives (RGR rows only if nothing else passed) ----
    cand = pos & ~rgr_p
    cand = torch.where(cand.any(1, keepdim=True), cand, pos)
    has_anchor = cand.any(1)
    if config.anchor == "shortest":
        key = lay.pad(tl * (int(al.max().item()) + 1) + al, 0)
        key = torch.where(cand, key, torch.full_like(key, torch.iinfo(torch.int64).max))
        anchor_col = key.argmin(dim=1)  # first minimum → lowest row index
    else:  # random anchor (ablation)
        gen = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + int(step))
        key = torch.rand(B, G, generator=gen)
        anchor_col = torch.where(cand, key, torch.full_like(key, -1.0)).argmax(dim=1)
    anchor = _onehot(anchor_col, G, has_anchor)

    # ---- hard negatives: pool = the M candidates nearest to the anchor (an RGR row first), in that order; the
    # nearest is taken, then greedy max-min diversity among the negatives down to K' = min(K, pool). Selection runs
    # in pool order, so a diversity tie goes to the member nearer the anchor (then the lower row), as the authors'
    # loop over their sorted pool does.
    hcand = has_anchor.unsqueeze(1) & valid & (neg | rgr_p) & ~anchor
    d_anchor = _pick_rows(dist, anchor_col)  # [B, G] distance of every member to its group's anchor
    d_key = torch.where(hcand, d_anchor, torch.full_like(d_anchor, float("inf")))
    d_key = torch.where(hcand & rgr_p, torch.full_like(d_key, -float("inf")), d_key)
    order = torch.sort(d_key, dim=1, stable=True).indices
    pool_size = torch.clamp(hcand.sum(1), max=config.M)
    k_prime = torch.clamp(pool_size, max=config.K)
    has_h = k_prime > 0
    in_pool = cols < pool_size.unsqueeze(1)  # pool members are the first pool_size positions of `order`
    picked = _greedy_maxmin(_permute_grid(dist, order), torch.zeros(B, dtype=torch.int64), in_pool, k_prime, config.K)
    hard = torch.zeros(B, G, dtype=torch.bool).scatter_(1, order, picked)
    subgroup = anchor | hard

    z = _zscore(r, subgroup, config.eps)
    pos_in = subgroup & pos
    adv = torch.where(pos_in, z, torch.zeros_like(z))
    fail_scale = torch.where(lay.pad(rgr_fail, False), config.s_refl, config.s).to(z.dtype)
    adv = torch.where(subgroup & ~pos, -fail_scale * z.abs(), adv)
    if config.equalize:
        eq = torch.sqrt(config.K / k_prime.clamp_min(1).to(z.dtype))
        adv = adv * torch.where(has_h, eq, torch.ones_like(eq)).unsqueeze(1)
    adv = torch.where(has_h.unsqueeze(1), adv, torch.zeros_like(adv))  # lone anchor: nothing to contrast

    role = torch.zeros(B, G, dtype=torch.int64)
    role[hard] = ROLE_HARD_NEGATIVE
    role[anchor & has_h.unsqueeze(1)] = ROLE_ANCHOR

    # ---- all-negative rescue ----
    rescued = torch.zeros(B, dtype=torch.bool)
    if config.rescue != "off":
        rescued = ~pos.any(1) & (lay.sizes >= 2)
    if bool(rescued.any()):
        if seq_logprob is None:
            lp = torch.zeros(B, G, dtype=torch.float64)
        else:
            lp_t = _as_1d("seq_logprob", seq_logprob, n, torch.float64)
            lp = lay.pad(torch.nan_to_num(lp_t, nan=-float("inf")), -float("inf"))
        lp = torch.where(valid, lp, torch.full_like(lp, -float("inf")))
        p_col = lp.argmax(dim=1)  # highest summed log-prob; ties → lowest row index
        p_mask = _onehot(p_col, G, rescued)
        k = torch.where(rescued, torch.clamp(lay.sizes - 1, max=config.K), torch.zeros_like(lay.sizes))
        # the authors' _select_diverse_negatives: candidates = the other failures in row order; first the one
        # farthest from the pseudo-anchor, then max-min distance to the negatives already taken (the pseudo-anchor
        # no longer counts); ties to the lower row
        rcand = valid & ~p_mask
        d_p = _pick_rows(dist, p_col)
        r_first = torch.where(rcand, d_p, torch.full_like(d_p, -float("inf"))).argmax(dim=1)
        rneg = _greedy_maxmin(dist, r_first, rcand, k, config.K)
        kf = k.clamp_min(1).to(torch.float64).unsqueeze(1)
        delta = config.rescue_delta
        eq = torch.sqrt(config.K / kf) if config.equalize else torch.ones_like(kf)
        if config.rescue == "faithful":
            pseudo = torch.where(p_mask, torch.full_like(lp, delta), (-delta / kf).expand(B, G))
            zr = _zscore(pseudo, p_mask | rneg, config.eps)
            a_p, a_n = zr, -config.s * zr.abs()
        else:  # "small": advantages of size delta, not normalized away
            a_p = torch.full_like(lp, delta)
            a_n = (-config.s * delta / kf).expand(B, G)
        radv = torch.where(p_mask, a_p * eq, torch.where(rneg, a_n * eq, torch.zeros_like(lp)))
        adv = torch.where(rescued.unsqueeze(1), radv, adv)
        role = torch.where(p_mask, torch.full_like(role, ROLE_RESCUE_ANCHOR), role)
        role = torch.where(rneg, torch.full_like(role, ROLE_RESCUE_NEGATIVE), role)
        k_prime = torch.where(rescued, k, k_prime)

    adv = torch.where(valid, adv, torch.zeros_like(adv))
    return CareSequenceResult(
        seq_advantages=lay.unpad(adv).to(torch.float32),
        role=lay.unpad(role),
        k_prime=k_prime,
        group_index=gid,
        rescued=rescued,
        has_anchor=has_anchor,
    )


# ----------------------------------------------------------------------------------------------------------------
# Token advantages
# ----------------------------------------------------------------------------------------------------------------


def region_token_advantages(
    *,
    seq_advantages: torch.Tensor,
    response_mask: torch.Tensor,
    think_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    acc: Any,
    gamma_pos: float,
    eps: float = 1e-8,
    think_len: Optional[torch.Tensor] = None,
    answer_len: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Region-weighted token advantages [N, T] (docs/algorithm.md#region-weighted-tokens).

    ``w[i,t] = 1[t in answer_i] + gamma_pos * 1[t in think_i] * 1[acc_i == 1]``, restricted to the response mask;
    a row without an answer span uses its whole response as "answer", a row without a think span its whole
    response as "think" (as the authors' code does). ``A[i,t] = A_i * w[i,t] / max(sum_t w[i,t], eps)``, so each
    row's token advantages sum to its sequence advantage.

    ``think_len`` / ``answer_len`` (optional, [N]): the token counts of the masks *when the caller guarantees
    that both masks already lie inside the response mask* (recipe_care's adapter does); they skip two reductions
    and the intersection over the whole [N, T] grid.

    Implementation: one float pass writes ``where(answer, A/W, 0)``; the think term (non-zero only for correct
    rollouts with a non-zero advantage, about one row per group) and the no-span fallbacks touch their rows only.
    """
    seq = torch.as_tensor(seq_advantages).reshape(-1).to(torch.float32)
    acc_t = torch.as_tensor(np.asarray(acc, dtype=np.float64) if not isinstance(acc, torch.Tensor) else acc)
    pos = ((acc_t.reshape(-1).to(torch.float64) - 1.0).abs() <= _ACC_TOL).to(torch.float32)
    ans = answer_mask.to(torch.bool)
    think = think_mask.to(torch.bool)
    if think_len is None or answer_len is None:
        resp = response_mask.to(torch.bool)
        ans, think = ans & resp, think & resp
        a_len = ans.sum(1, dtype=torch.float32)
        t_len = think.sum(1, dtype=torch.float32)
    else:
        a_len = torch.as_tensor(answer_len).reshape(-1).to(torch.float32)
        t_len = torch.as_tensor(think_len).reshape(-1).to(torch.float32)
    g = float(gamma_pos) * pos  # [N] weight of think tokens per row
    no_ans, no_think = a_len == 0, t_len == 0
    fallback = torch.nonzero(no_ans | (no_think & (g != 0))).reshape(-1)
    r_len = torch.zeros_like(a_len)
    if fallback.numel():
        r_len[fallback] = response_mask[fallback].to(torch.bool).sum(1, dtype=torch.float32)
    weight_sum = torch.where(no_ans, r_len, a_len) + g * torch.where(no_think, r_len, t_len)
    scale = seq / weight_sum.clamp_min(eps)
    out = torch.where(ans, scale.unsqueeze(1), torch.zeros((), dtype=torch.float32))
    c_think = g * scale
    # rows whose answer or think region falls back to the whole response: rebuilt from the response mask (rare)
    fb = ((scale != 0) & no_ans) | ((c_think != 0) & no_think)
    # think term of correct rollouts with a non-zero advantage (about one row per group)
    rows = torch.nonzero((c_think != 0) & ~fb).reshape(-1)
    if rows.numel():
        out.index_add_(0, rows, think.index_select(0, rows) * c_think.index_select(0, rows).unsqueeze(1))
    rows = torch.nonzero(fb).reshape(-1)
    if rows.numel():
        resp_r = response_mask.index_select(0, rows).to(torch.bool)
        ans_r = torch.where(no_ans[rows].unsqueeze(1), resp_r, ans.index_select(0, rows) & resp_r)
        think_r = torch.where(no_think[rows].unsqueeze(1), resp_r, think.index_select(0, rows) & resp_r)
        out.index_copy_(0, rows, ans_r * scale[rows].unsqueeze(1) + think_r * c_think[rows].unsqueeze(1))
    return out


def uniform_token_advantages(*, seq_advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """The sequence advantage broadcast over the response tokens (``token_weighting="uniform"``, as GRPO)."""
    return torch.as_tensor(seq_advantages).reshape(-1, 1).to(torch.float32) * response_mask.to(torch.float32)
