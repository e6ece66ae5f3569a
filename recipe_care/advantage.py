"""CARE advantage math: pure torch, vectorized over all groups at once, no verl import.

Each mechanism of the paper is one named function whose docstring states its rule (the section of docs/algorithm.md
it implements) and shows it on a tiny group. :func:`care_sequence_advantages` composes them:

    Step 1  :func:`select_anchor`          the shortest correct rationale of each group     (#anchor)
    Step 2  :func:`select_hard_negatives`  failures near the anchor, kept for diversity     (#hard-negatives)
    Step 3  :func:`subgroup_advantages`    z-score, negative-only scaling, equalization     (#subgroup-advantages)
    Step 4  :func:`all_negative_rescue`    a pseudo-contrast for groups without a success   (#all-negative-rescue)

and :func:`region_token_advantages` spreads each sequence advantage over its response tokens
(#region-weighted-tokens). :func:`is_correct` is the project's one correctness rule (``acc == 1``), used by the
estimator, RGR (``recipe_care.rgr``) and the diagnostics; :func:`select_anchor` is its one anchor rule, used by the
estimator and by RGR's choice of the failure to repair.

Layout: rows of a group need not be contiguous (verl reorders rows) and groups may have different sizes.
:class:`GroupGrid` lays the rows out once in a padded ``[B, G]`` grid (B groups, G the largest group size; inside a
group, columns follow the row order), and every step works on such grids, for all groups at once. The only Python
loop runs over the K selection rounds (K = 4), never over rows or groups. The examples use grids of one group.
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

ACC_TOLERANCE = 1e-6
"""``acc`` within this distance of 1 counts as correct (verifiers return 0.0 or 1.0; this only absorbs rounding)."""


# ----------------------------------------------------------------------------------------------------------------
# The correctness rule
# ----------------------------------------------------------------------------------------------------------------


def is_correct(acc: Any) -> torch.Tensor:
    """bool [N]: rollout i is correct iff its verifier accuracy is one, ``|acc_i - 1| <= 1e-6``.

    The project's one correctness rule (docs/algorithm.md, "Notation" and "Deviations"): positives for the anchor,
    failures of a subgroup, think-token weights, RGR's eligibility and verdict, ``signal/fail_adv_share``. It is
    never ``reward > 0``: with a format term in the reward, a well-formatted wrong answer would count as correct.

    >>> is_correct([1.0, 0.0, 0.9999999, 0.5, float("nan")]).tolist()
    [True, False, True, False, False]
    """
    values = acc if isinstance(acc, torch.Tensor) else torch.from_numpy(np.asarray(acc, dtype=np.float64))
    return (values.reshape(-1).to(torch.float64) - 1.0).abs() <= ACC_TOLERANCE


def acc_from_scores(scores: Any) -> torch.Tensor:
    """float64 [N]: the accuracy implied by a reward function that returns no ``acc``: 1 where the score is >= 1.

    The fallback of the estimator and of RGR (each warns once that it is used).

    >>> acc_from_scores(torch.tensor([1.0, 0.5, 1.2, 0.0])).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    return (torch.as_tensor(scores).reshape(-1).to(torch.float64) >= 1.0 - ACC_TOLERANCE).to(torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# Layout: rows by group
# ----------------------------------------------------------------------------------------------------------------


def dense_group_index(group_ids: Any) -> torch.Tensor:
    """Map arbitrary group ids (uid strings in a numpy object array, ints, a tensor) to dense int64 ids 0..B-1, in
    the sorted order of the ids."""
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
class GroupGrid:
    """The rows of a batch laid out by group: slot ``[b, j]`` holds the j-th row (in row order) of group b.

    >>> grid = GroupGrid.from_group_ids(["y", "x", "y", "y"])
    >>> grid.row_at.tolist(), grid.valid.tolist()  # group "x" has one row, group "y" three
    ([[1, 0, 0], [0, 2, 3]], [[True, False, False], [True, True, True]])
    >>> grid.unpad(grid.pad(torch.tensor([10, 11, 12, 13]), fill=-1)).tolist()
    [10, 11, 12, 13]
    """

    group_of_row: torch.Tensor
    """int64 [N]: dense group id of each row (:func:`dense_group_index`)."""
    column_of_row: torch.Tensor
    """int64 [N]: position of each row inside its group (row order)."""
    num_groups: int
    width: int
    """G: the size of the largest group."""
    valid: torch.Tensor
    """bool [B, G]: the slot holds a row (False in the padding of smaller groups)."""
    sizes: torch.Tensor
    """int64 [B]: rows per group."""
    row_at: torch.Tensor
    """int64 [B, G]: the row in each slot (0 in padding slots)."""

    @classmethod
    def from_group_ids(cls, group_ids: Any) -> "GroupGrid":
        group = dense_group_index(group_ids)
        n = group.numel()
        num_groups = int(group.max().item()) + 1 if n else 0
        sizes = torch.bincount(group, minlength=num_groups)
        rows_by_group = torch.sort(group, stable=True).indices
        group_start = torch.cumsum(sizes, 0) - sizes
        column = torch.empty_like(group)
        column[rows_by_group] = torch.arange(n, dtype=torch.int64) - group_start[group[rows_by_group]]
        width = int(sizes.max().item()) if n else 0
        valid = torch.arange(width).unsqueeze(0) < sizes.unsqueeze(1)
        row_at = torch.zeros(num_groups * width, dtype=torch.int64)
        row_at[group * width + column] = torch.arange(n, dtype=torch.int64)
        return cls(group_of_row=group, column_of_row=column, num_groups=num_groups, width=width, valid=valid,
                   sizes=sizes, row_at=row_at.view(num_groups, width))

    def pad(self, per_row: torch.Tensor, fill: Any) -> torch.Tensor:
        """``[N, ...]`` per row → ``[B, G, ...]`` per slot, ``fill`` in the padding slots."""
        shape = (self.num_groups, self.width) + tuple(per_row.shape[1:])
        out = per_row.index_select(0, self.row_at.reshape(-1)).view(shape)
        mask = self.valid.reshape(self.valid.shape + (1,) * (per_row.ndim - 1))
        return torch.where(mask, out, torch.as_tensor(fill, dtype=per_row.dtype))

    def unpad(self, per_slot: torch.Tensor) -> torch.Tensor:
        """``[B, G, ...]`` per slot → ``[N, ...]`` per row (input order)."""
        flat = per_slot.reshape((self.num_groups * self.width,) + tuple(per_slot.shape[2:]))
        return flat.index_select(0, self.group_of_row * self.width + self.column_of_row)


def group_cosine_distances(embeddings: Optional[Any], grid: GroupGrid) -> torch.Tensor:
    """float32 [B, G, G]: ``d(i, j) = 1 - cos(e_i, e_j)`` between the rows of each group (docs/algorithm.md,
    "Notation"); all zeros without embeddings (every distance ties, so selection follows the row order).

    The embeddings are read once, gathered into the grid block by block; norms come from the Gram matrix's diagonal
    (rows are never normalized one by one). A zero or non-finite embedding is at distance 1 from everything.

    >>> grid = GroupGrid.from_group_ids([0, 0, 0])
    >>> group_cosine_distances(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]), grid)[0].tolist()
    [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    """
    groups, width = grid.num_groups, grid.width
    if embeddings is None:
        return torch.zeros(groups, width, width)
    emb = torch.as_tensor(embeddings)
    n = grid.group_of_row.numel()
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"embeddings must have shape [N={n}, D], got {tuple(emb.shape)}")
    if emb.dtype not in (torch.float32, torch.float64):
        emb = emb.to(torch.float32)
    # Gram matrices of all groups, gathered and multiplied in cache-sized blocks of groups (~2 MB of embeddings per
    # block): each block is read from memory once and multiplied while still in cache (3x faster than one big gather
    # at D=3584). The loop runs over blocks of rows, not over groups: every block is one batched matmul.
    gram = torch.empty(groups, width, width, dtype=emb.dtype)
    block = max(1, (2 << 20) // max(1, width * emb.shape[1] * emb.element_size()))
    for start in range(0, groups, block):
        rows = grid.row_at[start : start + block].reshape(-1)
        grouped = emb.index_select(0, rows).view(-1, width, emb.shape[1])
        torch.bmm(grouped, grouped.transpose(1, 2), out=gram[start : start + block])
    gram = gram.to(torch.float32)
    norm = gram.diagonal(dim1=1, dim2=2).clamp_min(0.0).sqrt()
    cosine = gram / (norm.unsqueeze(2) * norm.unsqueeze(1)).clamp_min(1e-12)
    cosine = torch.nan_to_num(cosine, nan=0.0, posinf=0.0, neginf=0.0).clamp_(-1.0, 1.0)
    return 1.0 - cosine


def _distance_row(distance: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """``distance[b, column[b], :]`` for every group b: [B, G] (a gather; advanced indexing is slow on CPU)."""
    groups, width, _ = distance.shape
    return torch.gather(distance, 1, column.view(groups, 1, 1).expand(groups, 1, width)).squeeze(1)


def _one_hot(column: torch.Tensor, width: int, active: torch.Tensor) -> torch.Tensor:
    """[B, G] bool with ``True`` at ``column[b]`` for the active groups."""
    return (torch.arange(width).unsqueeze(0) == column.unsqueeze(1)) & active.unsqueeze(1)


def _reorder_columns(distance: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``distance[b, order[b, i], order[b, j]]``: each group's distances with its columns in the order ``order``."""
    groups, width, _ = distance.shape
    rows = torch.gather(distance, 1, order.unsqueeze(2).expand(groups, width, width))
    return torch.gather(rows, 2, order.unsqueeze(1).expand(groups, width, width))


def greedy_max_min(distance: torch.Tensor, first: torch.Tensor, eligible: torch.Tensor, count: torch.Tensor,
                   rounds: int) -> torch.Tensor:
    """bool [B, G]: farthest-point selection, the diversity step of hard negatives and of the rescue.

        c_1     = ``first[b]``
        c_{j+1} = argmax_{c eligible, not taken} min_{t taken} d(c, t)      (ties: the lower column)

    Group b stops after ``count[b]`` picks (none when 0); at most ``rounds`` picks are made. Only the columns taken
    so far enter the minimum.

    >>> d = torch.tensor([[[0.0, 0.1, 0.2, 0.9], [0.1, 0.0, 0.1, 0.8], [0.2, 0.1, 0.0, 0.7], [0.9, 0.8, 0.7, 0.0]]])
    >>> greedy_max_min(d, torch.tensor([1]), torch.ones(1, 4, dtype=torch.bool), torch.tensor([2]), 4).tolist()
    [[False, True, False, True]]
    """
    _, width = eligible.shape
    chosen = _one_hot(first, width, count > 0)
    nearest_taken = _distance_row(distance, first)
    never = torch.full_like(nearest_taken, -float("inf"))
    for pick in range(1, rounds):
        active = count > pick
        if not bool(active.any()):
            break
        column = torch.where(eligible & ~chosen, nearest_taken, never).argmax(dim=1)
        chosen |= _one_hot(column, width, active)
        nearest_taken = torch.minimum(nearest_taken, _distance_row(distance, column))
    return chosen


def zscore_within(values: torch.Tensor, members: torch.Tensor, eps: float) -> torch.Tensor:
    """``(v - mean) / (std + eps)`` per group, mean and population std over the ``members`` of the group.

    >>> values = torch.tensor([[1.0, 0.0, 0.0, 0.0, 5.0]], dtype=torch.float64)
    >>> zscore_within(values, torch.tensor([[True, True, True, True, False]]), 1e-6).round(decimals=4).tolist()
    [[1.732, -0.5773, -0.5773, -0.5773, 10.9696]]
    """
    weight = members.to(values.dtype)
    count = weight.sum(1, keepdim=True).clamp_min(1.0)
    mean = (values * weight).sum(1, keepdim=True) / count
    variance = (((values - mean) ** 2) * weight).sum(1, keepdim=True) / count
    return (values - mean) / (variance.sqrt() + eps)


# ----------------------------------------------------------------------------------------------------------------
# Step 1: anchor
# ----------------------------------------------------------------------------------------------------------------


def select_anchor(
    correct: torch.Tensor,
    think_len: torch.Tensor,
    answer_len: torch.Tensor,
    *,
    repaired: Optional[torch.Tensor] = None,
    rule: str = "shortest",
    seed: int = 0,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 — the anchor of each group: its correct rollout with the shortest rationale (docs/algorithm.md#anchor).

        P = the correct rollouts of the group that RGR did not repair (all correct ones when none is left)
        a = argmin_{i ∈ P} ( L_i^think, L_i^answer, i )           lexicographic; i is the row order

    Args: grids ``[B, G]`` — ``correct`` (:func:`is_correct`; False in padding slots), ``think_len`` and
    ``answer_len`` (the lengths of ``recipe_care.spans.anchor_lengths``: a missing, empty or blank span counts as
    the whole response, so skipped reasoning is never "shortest"), ``repaired`` (RGR rows). ``rule="random"``, the
    paper's ablation, draws a uniformly random member of P instead, with a generator seeded by
    ``seed * 1000003 + step`` (a new draw every training step).

    Returns ``anchor_col`` int64 [B], the anchor's column (meaningless without an anchor), and ``has_anchor``
    bool [B], the group has a correct rollout.

    >>> correct = torch.tensor([[False, True, True, True]])
    >>> think, answer = torch.tensor([[1, 5, 2, 2]]), torch.tensor([[1, 1, 4, 3]])
    >>> select_anchor(correct, think, answer)  # column 0 fails; 2 and 3 tie on think, 3 has the shorter answer
    (tensor([3]), tensor([True]))
    """
    eligible = correct if repaired is None else correct & ~repaired
    eligible = torch.where(eligible.any(1, keepdim=True), eligible, correct)
    has_anchor = eligible.any(1)
    if rule == "shortest":
        think_len, answer_len = think_len.to(torch.int64), answer_len.to(torch.int64)
        rank = think_len * (int(answer_len.max().item()) + 1 if answer_len.numel() else 1) + answer_len
        rank = torch.where(eligible, rank, torch.full_like(rank, torch.iinfo(torch.int64).max))
        return rank.argmin(dim=1), has_anchor  # the first minimum: the lowest row
    if rule != "random":
        raise ValueError(f"unknown anchor rule {rule!r}")
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    draw = torch.rand(correct.shape, generator=generator)
    return torch.where(eligible, draw, torch.full_like(draw, -1.0)).argmax(dim=1), has_anchor


# ----------------------------------------------------------------------------------------------------------------
# Step 2: hard negatives
# ----------------------------------------------------------------------------------------------------------------


def select_hard_negatives(
    distance: torch.Tensor,
    anchor_col: torch.Tensor,
    candidates: torch.Tensor,
    *,
    M: int,
    K: int,
    leading: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2 — the hard negatives H of each group: near its anchor, not redundant with each other
    (docs/algorithm.md#hard-negatives).

        pool     = the first min(M, |C|) candidates ordered by ( d(a, i), i )    (``leading`` candidates first)
        K'       = min(K, |pool|)
        h_1      = pool[0]                                                       (the nearest)
        h_{j+1}  = argmax_{c ∈ pool \\ H_j} min_{h ∈ H_j} d(c, h)               (ties: earlier in pool order)

    Args: ``distance`` [B, G, G] (:func:`group_cosine_distances`), ``anchor_col`` [B] (Step 1), ``candidates``
    [B, G] (the failures of groups with an anchor, and their RGR rows; never the anchor), ``leading`` [B, G] (RGR
    rows: a repaired row took the place of the failure it repaired, so it is always the first pool member).

    Returns ``hard`` bool [B, G] and ``k_prime`` int64 [B] (0 where a group has no candidate).

    >>> angle = torch.tensor([0.0, 10.0, 20.0, 90.0]).deg2rad()  # the anchor at column 0, three failures
    >>> d = (1 - torch.cos(angle[:, None] - angle[None, :])).unsqueeze(0)
    >>> hard, k_prime = select_hard_negatives(d, torch.tensor([0]), torch.tensor([[False, True, True, True]]),
    ...                                       M=3, K=2)
    >>> hard.tolist(), k_prime.tolist()  # the nearest (10°), then the one farthest from it (90°, not 20°)
    ([[False, True, False, True]], [2])
    """
    groups, width = candidates.shape
    to_anchor = _distance_row(distance, anchor_col)
    pool_rank = torch.where(candidates, to_anchor, torch.full_like(to_anchor, float("inf")))
    if leading is not None:
        pool_rank = torch.where(candidates & leading, torch.full_like(pool_rank, -float("inf")), pool_rank)
    pool_order = torch.sort(pool_rank, dim=1, stable=True).indices  # nearest first; ties keep the row order
    pool_size = torch.clamp(candidates.sum(1), max=M)
    k_prime = torch.clamp(pool_size, max=K)
    in_pool = torch.arange(width).unsqueeze(0) < pool_size.unsqueeze(1)  # the first pool_size slots of pool_order
    # selection runs in pool order, so a diversity tie goes to the member nearer the anchor (then the lower row),
    # as the authors' loop over their sorted pool does
    picked = greedy_max_min(_reorder_columns(distance, pool_order), torch.zeros(groups, dtype=torch.int64), in_pool,
                            k_prime, K)
    hard = torch.zeros(groups, width, dtype=torch.bool).scatter_(1, pool_order, picked)
    return hard, k_prime


# ----------------------------------------------------------------------------------------------------------------
# Step 3: subgroup advantages
# ----------------------------------------------------------------------------------------------------------------


def subgroup_advantages(
    scores: torch.Tensor,
    correct: torch.Tensor,
    subgroup: torch.Tensor,
    *,
    failure_scale: torch.Tensor,
    k_prime: torch.Tensor,
    K: int,
    eps: float,
    equalize: bool,
) -> torch.Tensor:
    """Step 3 — the advantages of each subgroup S = {a} ∪ H (docs/algorithm.md#subgroup-advantages).

        Step 3a  z-score on the verifier's scores:  z_i = (r_i − μ_S) / (σ_S + ε)     (population std over S)
        Step 3b  negative-only scaling:             A_i = z_i            for a correct i ∈ S
                                                    A_i = −s_i · |z_i|   for a failure i ∈ S
                 (s_i = ``failure_scale``: s, or s_refl for an RGR row that still fails)
        Step 3c  update-size equalization:          A_i ← A_i · √(K / K′)   when ``equalize``
        A_i = 0 outside S, and in a group without hard negatives (K′ = 0: nothing to contrast)

    Args: grids ``[B, G]`` — ``scores`` r, ``correct``, ``subgroup`` (anchor and hard negatives),
    ``failure_scale``; ``k_prime`` [B] (Step 2).

    >>> scores = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)  # anchor, 3 hard negatives, 1 outside
    >>> subgroup = torch.tensor([[True, True, True, True, False]])
    >>> subgroup_advantages(scores, scores == 1, subgroup, failure_scale=torch.full((1, 5), 0.5),
    ...                     k_prime=torch.tensor([3]), K=4, eps=1e-6, equalize=True).round(decimals=4).tolist()
    [[2.0, -0.3333, -0.3333, -0.3333, 0.0]]
    """
    z = zscore_within(scores, subgroup, eps)
    advantages = torch.where(subgroup & correct, z, torch.zeros_like(z))
    advantages = torch.where(subgroup & ~correct, -failure_scale.to(z.dtype) * z.abs(), advantages)
    has_negatives = k_prime > 0
    if equalize:
        factor = torch.sqrt(K / k_prime.clamp_min(1).to(z.dtype))
        advantages = advantages * torch.where(has_negatives, factor, torch.ones_like(factor)).unsqueeze(1)
    return torch.where(has_negatives.unsqueeze(1), advantages, torch.zeros_like(advantages))


# ----------------------------------------------------------------------------------------------------------------
# Step 4: all-negative rescue
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Rescue:
    """Output of :func:`all_negative_rescue` (grids ``[B, G]`` and per-group ``[B]``)."""

    advantages: torch.Tensor
    """float64 [B, G]: the rescue advantages (0 outside rescued groups)."""
    pseudo_anchor: torch.Tensor
    """bool [B, G]."""
    negatives: torch.Tensor
    """bool [B, G]."""
    k: torch.Tensor
    """int64 [B]: rescue negatives per group (0 where not rescued)."""
    rescued: torch.Tensor
    """bool [B]."""


def all_negative_rescue(
    distance: torch.Tensor,
    seq_logprob: Optional[torch.Tensor],
    correct: torch.Tensor,
    valid: torch.Tensor,
    *,
    mode: str,
    K: int,
    s: float,
    delta: float,
    eps: float,
    equalize: bool,
) -> Rescue:
    """Step 4 — a pseudo-contrast for each group without a correct rollout (docs/algorithm.md#all-negative-rescue).

        rescued  = no correct rollout, at least two rollouts, ``mode != "off"``
        p        = argmax_i ℓ_i                                  (highest summed old log-prob; ties: first row)
        C        = the group's other rollouts;   k = min(K, |C|)
        n_1      = argmax_{c ∈ C} d(p, c)                        (the failure FARTHEST from p; ties: first row)
        n_{j+1}  = argmax_{c ∈ C \\ N_j} min_{n ∈ N_j} d(c, n)    (p no longer counts)
        pseudo-scores  r̃_p = δ,  r̃_n = −δ/k
        faithful  A_p = z_p · √(K/k),  A_n = −s · |z_n| · √(K/k)    (z over {p} ∪ N, so δ cancels)
        small     A_p = δ · √(K/k),    A_n = −s · δ/k · √(K/k)      (√(K/k) only when ``equalize``)

    Args: ``distance`` [B, G, G], ``seq_logprob`` [B, G] float64 ℓ (None: the first row is p), ``correct`` and
    ``valid`` [B, G].

    >>> d = torch.tensor([[[0.0, 0.5, 0.2], [0.5, 0.0, 0.4], [0.2, 0.4, 0.0]]])
    >>> no_success = torch.zeros(1, 3, dtype=torch.bool)
    >>> rescue = all_negative_rescue(d, torch.tensor([[-2.0, -1.0, -3.0]], dtype=torch.float64), no_success,
    ...                              torch.ones(1, 3, dtype=torch.bool), mode="faithful", K=4, s=0.5, delta=0.1,
    ...                              eps=1e-6, equalize=True)
    >>> rescue.pseudo_anchor.tolist(), rescue.advantages.round(decimals=4).tolist()  # p = column 1, k = 2
    ([[False, True, False]], [[-0.5, 2.0, -0.5]])
    """
    groups, width = valid.shape
    sizes = valid.sum(1)
    if mode == "off":
        rescued = torch.zeros(groups, dtype=torch.bool)
    else:
        rescued = ~correct.any(1) & (sizes >= 2)
    none = torch.zeros(groups, width, dtype=torch.bool)
    if not bool(rescued.any()):
        return Rescue(torch.zeros(groups, width, dtype=torch.float64), none, none, torch.zeros_like(sizes), rescued)
    if seq_logprob is None:
        logprob = torch.zeros(groups, width, dtype=torch.float64)
    else:
        logprob = torch.nan_to_num(seq_logprob.to(torch.float64), nan=-float("inf"))
    logprob = torch.where(valid, logprob, torch.full_like(logprob, -float("inf")))
    pseudo_col = logprob.argmax(dim=1)  # ties: the lowest row
    pseudo_anchor = _one_hot(pseudo_col, width, rescued)
    k = torch.where(rescued, torch.clamp(sizes - 1, max=K), torch.zeros_like(sizes))
    # the authors' _select_diverse_negatives: candidates = the other failures in row order; first the one farthest
    # from the pseudo-anchor, then max-min distance to the negatives already taken; ties to the lower row
    others = valid & ~pseudo_anchor
    to_pseudo = _distance_row(distance, pseudo_col)
    farthest = torch.where(others, to_pseudo, torch.full_like(to_pseudo, -float("inf"))).argmax(dim=1)
    negatives = greedy_max_min(distance, farthest, others, k, K)

    k_float = k.clamp_min(1).to(torch.float64).unsqueeze(1)
    factor = torch.sqrt(K / k_float) if equalize else torch.ones_like(k_float)
    if mode == "faithful":
        pseudo_scores = torch.where(pseudo_anchor, torch.full_like(logprob, delta),
                                    (-delta / k_float).expand(groups, width))
        z = zscore_within(pseudo_scores, pseudo_anchor | negatives, eps)
        anchor_value, negative_value = z, -s * z.abs()
    else:  # "small": advantages of size delta, not normalized away
        anchor_value = torch.full_like(logprob, delta)
        negative_value = (-s * delta / k_float).expand(groups, width)
    advantages = torch.where(pseudo_anchor, anchor_value * factor,
                             torch.where(negatives, negative_value * factor, torch.zeros_like(logprob)))
    return Rescue(advantages, pseudo_anchor, negatives, k, rescued)


# ----------------------------------------------------------------------------------------------------------------
# The composition
# ----------------------------------------------------------------------------------------------------------------


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
    """int64 [N]: dense group id of each row (0..B-1, in the sorted order of the group ids)."""
    rescued: torch.Tensor
    """bool [B]: the group was rescued (no positive)."""
    has_anchor: torch.Tensor
    """bool [B]: the group has a real anchor (at least one positive)."""


def _per_row(name: str, values: Any, n: int, dtype: torch.dtype) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    tensor = tensor.reshape(-1).to(dtype)
    if tensor.numel() != n:
        raise ValueError(f"{name} has {tensor.numel()} entries but there are {n} rows")
    return tensor


def _check_finite(name: str, values: torch.Tensor, group_ids: Any) -> None:
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:8].tolist()
        ids = np.asarray(group_ids).reshape(-1) if not isinstance(group_ids, torch.Tensor) else group_ids.reshape(-1)
        where = ", ".join(f"row {r} (group {ids[r]!s})" for r in rows)
        raise ValueError(
            f"CARE: {name} is not finite at {int(bad.sum())} row(s): {where}. "
            f"Fix the reward function so that it returns a finite score (and acc in {{0, 1}}) for every rollout."
        )


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
    """CARE sequence-level advantages of a batch of rollouts: Steps 1-4 of the module docstring on all groups.

    Args:
        acc: [N] verifier accuracy; a rollout is correct iff ``acc == 1`` (:func:`is_correct`).
        rewards: [N] the verifier's score (verl's ``token_level_scores`` summed), z-scored in the subgroup.
        group_ids: [N] group (prompt) id of each row, e.g. verl's ``uid`` column; rows need not be contiguous.
        think_len: [N] tokens inside ``<think>…</think>``; callers pass the response length for a missing, empty or
            blank think span (``recipe_care.spans.anchor_lengths``).
        answer_len: [N] tokens inside ``<answer>…</answer>`` (tie-break of the anchor; same fallback).
        embeddings: [N, D] rationale embeddings (cosine distance) or None (all distances equal: selection follows
            the row order).
        seq_logprob: [N] summed old log-prob of each response (rescue pseudo-anchor) or None (first row).
        config: :class:`CareConfig`.
        rgr_row: [N] bool, the row is an RGR repair; it always joins its group's subgroup when the group has an
            anchor (it took the place of the failure it repaired) and is the anchor only if it is the only positive.
        rgr_failed: [N] bool, the RGR row still fails (scale s_refl). Defaults to ``rgr_row & ~correct``.
        step: training step (the trainer's ``global_steps``), mixed into the seed of ``anchor="random"``.

    >>> cfg = CareConfig()
    >>> result = care_sequence_advantages(acc=[1, 0, 0, 0, 0], rewards=[1, 0, 0, 0, 0], group_ids=[7] * 5,
    ...                                   think_len=[3] * 5, answer_len=[1] * 5, embeddings=None, seq_logprob=None,
    ...                                   config=cfg)
    >>> result.seq_advantages.round(decimals=4).tolist(), result.role.tolist()  # K' = 4 failures at -s·|z|
    ([2.0, -0.25, -0.25, -0.25, -0.25], [1, 2, 2, 2, 2])
    """
    correct = is_correct(acc)
    n = correct.numel()
    acc_values = _per_row("acc", acc, n, torch.float64)
    scores = _per_row("rewards", rewards, n, torch.float64)
    _check_finite("rewards", scores, group_ids)
    _check_finite("acc", acc_values, group_ids)
    grid = GroupGrid.from_group_ids(group_ids)
    if grid.group_of_row.numel() != n:
        raise ValueError(f"group_ids has {grid.group_of_row.numel()} entries but there are {n} rows")
    think = _per_row("think_len", think_len, n, torch.int64).clamp_min(0)
    answer = _per_row("answer_len", answer_len, n, torch.int64).clamp_min(0)
    if rgr_row is None:
        repaired = torch.zeros(n, dtype=torch.bool)
    else:
        repaired = _per_row("rgr_row", rgr_row, n, torch.float64).ne(0)
    if rgr_failed is None:
        still_failing = repaired & ~correct
    else:
        still_failing = _per_row("rgr_failed", rgr_failed, n, torch.float64).ne(0) & repaired
    logprob = None if seq_logprob is None else _per_row("seq_logprob", seq_logprob, n, torch.float64)
    if n == 0:
        none = torch.zeros(0, dtype=torch.bool)
        return CareSequenceResult(torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                                  grid.group_of_row, none, none)

    # the rows, laid out by group
    valid = grid.valid
    correct_in = grid.pad(correct, False)
    repaired_in = grid.pad(repaired, False)
    distance = group_cosine_distances(embeddings, grid)

    # Step 1: the anchor
    anchor_col, has_anchor = select_anchor(correct_in, grid.pad(think, 0), grid.pad(answer, 0), repaired=repaired_in,
                                           rule=config.anchor, seed=config.seed, step=step)
    anchor = _one_hot(anchor_col, grid.width, has_anchor)
    # Step 2: the hard negatives (failures and RGR rows of groups with an anchor)
    candidates = has_anchor.unsqueeze(1) & valid & (~correct_in | repaired_in) & ~anchor
    hard, k_prime = select_hard_negatives(distance, anchor_col, candidates, M=config.M, K=config.K,
                                          leading=repaired_in)
    # Step 3: the subgroup advantages
    failure_scale = torch.where(grid.pad(still_failing, False), config.s_refl, config.s).to(torch.float64)
    advantages = subgroup_advantages(grid.pad(scores, 0.0), correct_in, anchor | hard, failure_scale=failure_scale,
                                     k_prime=k_prime, K=config.K, eps=config.eps, equalize=config.equalize)
    role = torch.zeros(grid.num_groups, grid.width, dtype=torch.int64)
    role[hard] = ROLE_HARD_NEGATIVE
    role[anchor & (k_prime > 0).unsqueeze(1)] = ROLE_ANCHOR
    # Step 4: the all-negative rescue
    rescue = all_negative_rescue(distance, None if logprob is None else grid.pad(logprob, -float("inf")), correct_in,
                                 valid, mode=config.rescue, K=config.K, s=config.s, delta=config.rescue_delta,
                                 eps=config.eps, equalize=config.equalize)
    advantages = torch.where(rescue.rescued.unsqueeze(1), rescue.advantages, advantages)
    role = torch.where(rescue.pseudo_anchor, torch.full_like(role, ROLE_RESCUE_ANCHOR), role)
    role = torch.where(rescue.negatives, torch.full_like(role, ROLE_RESCUE_NEGATIVE), role)
    k_prime = torch.where(rescue.rescued, rescue.k, k_prime)

    advantages = torch.where(valid, advantages, torch.zeros_like(advantages))
    return CareSequenceResult(
        seq_advantages=grid.unpad(advantages).to(torch.float32),
        role=grid.unpad(role),
        k_prime=k_prime,
        group_index=grid.group_of_row,
        rescued=rescue.rescued,
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

        w_{i,t} = 1[t ∈ answer_i] + γ_pos · 1[t ∈ think_i] · 1[acc_i = 1]        (inside the response mask)
        A_{i,t} = A_i · w_{i,t} / max(Σ_t' w_{i,t'}, ε)

    A row without an answer span uses its whole response as "answer", a row without a think span its whole response
    as "think" (as the authors' code does); each row's token advantages sum to its sequence advantage. Failing
    rationale tokens get nothing.

    ``think_len`` / ``answer_len`` (optional, [N]): the token counts of the masks *when the caller guarantees that
    both masks already lie inside the response mask* (recipe_care's adapter does); they skip two reductions and the
    intersection over the whole [N, T] grid.

    Implementation: one float pass writes ``where(answer, A/W, 0)``; the think term (non-zero only for correct
    rollouts with a non-zero advantage, about one row per group) and the no-span fallbacks touch their rows only.

    >>> response = torch.tensor([[1, 1, 1, 1, 1, 0]])  # five response tokens, then padding
    >>> think, answer = torch.tensor([[0, 1, 1, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1, 0, 0]])
    >>> region_token_advantages(seq_advantages=torch.tensor([2.0]), response_mask=response, think_mask=think,
    ...                         answer_mask=answer, acc=[1.0], gamma_pos=0.5).tolist()  # weights 0.5 + 0.5 + 1
    [[0.0, 0.5, 0.5, 1.0, 0.0, 0.0]]
    """
    sequence = torch.as_tensor(seq_advantages).reshape(-1).to(torch.float32)
    think_weight = float(gamma_pos) * is_correct(acc).to(torch.float32)  # [N]: γ_pos for correct rollouts, else 0
    answer = answer_mask.to(torch.bool)
    think = think_mask.to(torch.bool)
    if think_len is None or answer_len is None:
        response = response_mask.to(torch.bool)
        answer, think = answer & response, think & response
        answer_count = answer.sum(1, dtype=torch.float32)
        think_count = think.sum(1, dtype=torch.float32)
    else:
        answer_count = torch.as_tensor(answer_len).reshape(-1).to(torch.float32)
        think_count = torch.as_tensor(think_len).reshape(-1).to(torch.float32)
    no_answer, no_think = answer_count == 0, think_count == 0
    needs_response_count = torch.nonzero(no_answer | (no_think & (think_weight != 0))).reshape(-1)
    response_count = torch.zeros_like(answer_count)
    if needs_response_count.numel():
        response_count[needs_response_count] = (
            response_mask[needs_response_count].to(torch.bool).sum(1, dtype=torch.float32)
        )
    weight_sum = (torch.where(no_answer, response_count, answer_count)
                  + think_weight * torch.where(no_think, response_count, think_count))
    per_answer_token = sequence / weight_sum.clamp_min(eps)
    out = torch.where(answer, per_answer_token.unsqueeze(1), torch.zeros((), dtype=torch.float32))
    per_think_token = think_weight * per_answer_token
    # rows whose answer or think region falls back to the whole response: rebuilt from the response mask (rare)
    whole_response = ((per_answer_token != 0) & no_answer) | ((per_think_token != 0) & no_think)
    # think term of correct rollouts with a non-zero advantage (about one row per group)
    rows = torch.nonzero((per_think_token != 0) & ~whole_response).reshape(-1)
    if rows.numel():
        out.index_add_(0, rows, think.index_select(0, rows) * per_think_token.index_select(0, rows).unsqueeze(1))
    rows = torch.nonzero(whole_response).reshape(-1)
    if rows.numel():
        response_rows = response_mask.index_select(0, rows).to(torch.bool)
        answer_rows = answer.index_select(0, rows) & response_rows
        answer_rows = torch.where(no_answer[rows].unsqueeze(1), response_rows, answer_rows)
        think_rows = think.index_select(0, rows) & response_rows
        think_rows = torch.where(no_think[rows].unsqueeze(1), response_rows, think_rows)
        out.index_copy_(0, rows, answer_rows * per_answer_token[rows].unsqueeze(1)
                        + think_rows * per_think_token[rows].unsqueeze(1))
    return out


def uniform_token_advantages(*, seq_advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """The sequence advantage broadcast over the response tokens (``token_weighting="uniform"``, as GRPO).

    >>> uniform_token_advantages(seq_advantages=torch.tensor([0.5]), response_mask=torch.tensor([[1, 1, 0]])).tolist()
    [[0.5, 0.5, 0.0]]
    """
    return torch.as_tensor(seq_advantages).reshape(-1, 1).to(torch.float32) * response_mask.to(torch.float32)
