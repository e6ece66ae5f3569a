"""RGR's pure logic, no Ray and no agent loop: which failure to repair, the repair context, the length cut, the splice.

Everything here works on plain tensors, strings and ``DataProto`` objects, so it is unit-tested without a cluster.
``recipe_care.rgr.manager`` calls these functions around verl's rollout.

Repair context (docs/algorithm.md#reflection-guided-resampling-rgr; the authors'
``verl/hooks/rgr.py::_insert_repair_cue``): the failed response is decoded without special tokens and rewritten as

============================  ======================================================================================
failed response               repair context (the response prefix the policy continues after ``<answer>``)
============================  ======================================================================================
``<think>R</think>B<answer>…``  ``<think>R`` + cue + ``</think>B<answer>``                        (variant ``closed``)
``<think>R</think>B``           ``<think>R`` + cue + ``</think>`` + ``B.rstrip()`` + ``\\n<answer>``
``<think>R<answer>…``           ``<think>R`` + cue + ``<answer>``                                 (variant ``unclosed``)
``<think>R``                    ``(<think>R + cue).rstrip()`` + ``\\n<answer>``
``T<answer>…`` (no think)       ``<think>`` + cue + ``</think>\\n`` + ``T<answer>``               (variant ``no_think``)
``T`` (no tags, or empty)       ``(<think> + cue + </think>\\n + T).rstrip()`` + ``\\n<answer>``
============================  ======================================================================================

Text before ``<think>`` is kept. Two deliberate differences from the authors' string code, both so that the cue is
never lost: ``<answer>`` is only looked for *after* the rationale (the authors cut at the first ``<answer>`` anywhere,
even inside the rationale), and an unclosed think that runs into ``<answer>`` gets the cue before that ``<answer>``
(the authors append the cue at the very end and then cut it away with the old answer).

Length rule: the context is tokenized piece by piece (fixed pieces: tags, cue, ``\\n<answer>``; free pieces: text
before ``<think>``, the rationale, text between ``</think>`` and ``<answer>``). When the context plus ``max_tokens``
does not fit ``rollout.response_length``, tokens are removed from the *front* of the free pieces, in order, until it
fits: the END of the failed rationale, nearest the mistake and the cue, is what stays. Fixed pieces are never cut
(their size is checked against the budget when the manager starts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recipe_care.advantage import GroupGrid, is_correct, select_anchor
from recipe_care.ngram_profiles import ngram_embeddings
from recipe_care.spans import Spans, anchor_lengths

logger = logging.getLogger("recipe_care")

REPAIR_AGENT_NAME = "care_rgr"
"""Name of the continuation agent loop in verl's agent-loop registry (per-row ``agent_name``)."""

REQUEST_KEY = "rgr_request"
"""Per-row input column of a repair batch: ``{"prefix_ids", "temperature", "top_p", "max_tokens", "generate"}``."""

STATUS_KEY = "rgr_status"
"""Output column written by the continuation agent loop (``"ok"``, ``"empty"``, ``"gen_error: …"``, ``"padding"``);
consumed by the manager, never spliced into the training batch."""

ROW_KEY, FAILED_KEY = "rgr_row", "rgr_failed"
"""Non-tensor output columns read by the ``care`` estimator (floats 0/1 on every row)."""

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN = "<think>", "</think>", "<answer>"


# ----------------------------------------------------------------------------------------------------------------
# Cue and repair context
# ----------------------------------------------------------------------------------------------------------------


def truncate_cue(tokenizer: Any, cue: str, max_cue_tokens: int) -> str:
    """The cue cut to ``max_cue_tokens`` tokens (the authors' ``_build_repair_cue``); unchanged when it fits."""
    if max_cue_tokens <= 0 or not cue:
        return ""
    ids = tokenizer.encode(cue, add_special_tokens=False)
    if len(ids) <= max_cue_tokens:
        return cue
    return tokenizer.decode(ids[:max_cue_tokens], skip_special_tokens=True)


@dataclass
class Piece:
    text: str
    free: bool
    """Free pieces (failed text) may be cut from the front; fixed pieces (tags, cue) never are."""


def repair_pieces(text: str, cue: str) -> tuple[list[Piece], str]:
    """The repair context of a failed response ``text`` as ordered pieces, and its variant (see the module table)."""
    pieces: list[Piece] = []
    t = text.find(THINK_OPEN)
    if t >= 0:
        pieces.append(Piece(text[:t], True))
        pieces.append(Piece(THINK_OPEN, False))
        start = t + len(THINK_OPEN)
        c = text.find(THINK_CLOSE, start)
        if c >= 0:
            variant = "closed"
            pieces += [Piece(text[start:c], True), Piece(cue, False), Piece(THINK_CLOSE, False)]
            rest = text[c + len(THINK_CLOSE):]
            a = rest.find(ANSWER_OPEN)
            tail = rest[:a] if a >= 0 else rest
        else:
            variant = "unclosed"
            a = text.find(ANSWER_OPEN, start)
            pieces += [Piece(text[start:a] if a >= 0 else text[start:], True), Piece(cue, False)]
            tail = ""
    else:
        variant = "no_think"
        pieces.append(Piece(f"{THINK_OPEN}{cue}{THINK_CLOSE}\n", False))
        a = text.find(ANSWER_OPEN)
        tail = text[:a] if a >= 0 else text
    if a >= 0:
        pieces += [Piece(tail, True), Piece(ANSWER_OPEN, False)]
    else:
        pieces.append(Piece(tail, True))
        _rstrip_last(pieces)
        pieces.append(Piece("\n" + ANSWER_OPEN, False))
    return [p for p in pieces if p.text], variant


def _rstrip_last(pieces: list[Piece]) -> None:
    """``text.rstrip()`` over the concatenation of the pieces (the authors strip before ``\\n<answer>``)."""
    for piece in reversed(pieces):
        piece.text = piece.text.rstrip()
        if piece.text:
            return


@dataclass
class RepairContext:
    ids: list[int]
    """Token ids of the context (response prefix, response_mask 0)."""
    variant: str
    cut_tokens: int
    """Tokens of failed text removed by the length rule."""
    text: str = ""
    """The kept context as text (for logs and tests)."""


def fixed_context_tokens(tokenizer: Any, cue: str) -> int:
    """Largest token count of the fixed pieces over all variants: the least context a repair can have."""
    worst = 0
    for probe in ("<think>x</think>y<answer>z", "<think>x", "x"):
        pieces, _ = repair_pieces(probe, cue)
        worst = max(worst, sum(len(_encode(tokenizer, p.text)) for p in pieces if not p.free))
    return worst


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def _drop_broken_head(tokenizer: Any, ids: list[int]) -> list[int]:
    """After a cut, drop leading tokens that hold the continuation bytes of a character cut in two (a UTF-8
    character has at most 3 of them; the next few tokens decode to U+FFFD first while they are there)."""
    for _ in range(3):
        if ids and tokenizer.decode(ids[:4], skip_special_tokens=True).startswith("\ufffd"):
            ids = ids[1:]
    return ids


def build_repair_context(tokenizer: Any, text: str, cue: str, budget: int) -> RepairContext:
    """Token ids of the repair context of ``text`` in at most ``budget`` tokens (cut rule in the module docstring)."""
    pieces, variant = repair_pieces(text, cue)
    encoded = [_encode(tokenizer, p.text) for p in pieces]
    fixed = sum(len(ids) for ids, p in zip(encoded, pieces) if not p.free)
    if fixed > budget:
        raise ValueError(
            f"RGR: the fixed part of the repair context ({fixed} tokens: tags and cue) exceeds the budget of {budget} "
            "tokens (rollout.response_length - algorithm.rgr.max_tokens)"
        )
    excess = sum(len(ids) for ids in encoded) - budget
    cut = 0
    for i, piece in enumerate(pieces):
        if excess <= 0:
            break
        if not piece.free or not encoded[i]:
            continue
        take = min(excess, len(encoded[i]))
        kept = _drop_broken_head(tokenizer, encoded[i][take:])
        removed = len(encoded[i]) - len(kept)
        encoded[i] = kept
        excess -= removed
        cut += removed
    ids = [t for chunk in encoded for t in chunk]
    assert len(ids) <= budget, (len(ids), budget)
    kept_text = "".join(tokenizer.decode(chunk, skip_special_tokens=False) for chunk in encoded)
    return RepairContext(ids=ids, variant=variant, cut_tokens=cut, text=kept_text)


# ----------------------------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Selection:
    rows: list[int] = field(default_factory=list)
    """The failure row to repair in each eligible group (groups in order of first appearance)."""
    anchors: list[int] = field(default_factory=list)
    """The anchor row of each eligible group (same order)."""
    groups: int = 0
    skipped_no_positive: int = 0
    """Groups without a correct rollout (all-negative: the rescue's business, never repaired)."""
    skipped_no_failure: int = 0
    """Groups in which every rollout is correct."""


def positive_mask(acc: Any, n: int) -> torch.Tensor:
    """:func:`recipe_care.advantage.is_correct` of the rollout output's ``acc`` column, with clear errors on bad
    values (RGR's choice of the groups to repair)."""
    try:
        arr = np.asarray(acc, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"RGR: the 'acc' column must hold numbers, got {list(acc)[:3]!r}…") from err
    if arr.size != n:
        raise ValueError(f"RGR: the 'acc' column has {arr.size} entries for {n} rows")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))[:8]
        raise ValueError(f"RGR: the 'acc' column holds non-finite values at rows {bad}")
    return is_correct(arr)


def select_representatives(
    uids: Any,
    positive: torch.Tensor,
    responses: torch.Tensor,
    valid: torch.Tensor,
    spans: Spans,
    *,
    ngram_n: int = 3,
    ngram_dim: int = 512,
) -> Selection:
    """One failure per group that has a correct rollout and a failure: the failure nearest to the anchor.

    The anchor is the estimator's (:func:`recipe_care.advantage.select_anchor` on the lengths of
    ``recipe_care.spans.anchor_lengths``): the correct rollout with the fewest ``<think>`` tokens, ties to fewer
    ``<answer>`` tokens, then the lower row; a missing, empty or blank think span counts as the whole response.
    Distance = cosine distance of the hashed token n-gram profiles of the ``<think>`` spans (whole response without
    one) — :func:`recipe_care.ngram_profiles.ngram_embeddings`, the same function the advantage uses when policy
    hidden states are absent. Ties: the lower row. ``spans``: the think/answer spans of ``responses``.
    """
    n = responses.shape[0]
    uid_arr = np.asarray(uids, dtype=object).reshape(-1)
    if uid_arr.size != n:
        raise ValueError(f"RGR: {uid_arr.size} uids for {n} rows")
    valid = valid.to(torch.bool)
    think_len, answer_len = anchor_lengths(spans, valid.sum(1))
    rationale = torch.where(spans.think_mask.any(1, keepdim=True), spans.think_mask, valid)
    profiles = ngram_embeddings(responses, rationale, n=ngram_n, dim=ngram_dim).to(torch.float64)

    grid = GroupGrid.from_group_ids(uid_arr)
    correct = grid.pad(positive.to(torch.bool), False)
    anchor_col, has_anchor = select_anchor(correct, grid.pad(think_len, 0), grid.pad(answer_len, 0))
    failures_of = grid.valid & ~correct
    sel = Selection(groups=grid.num_groups)
    for group in sorted(range(grid.num_groups), key=lambda g: int(grid.row_at[g, 0])):  # order of first appearance
        failures = grid.row_at[group][failures_of[group]]
        if not bool(has_anchor[group]):
            sel.skipped_no_positive += 1
            continue
        if failures.numel() == 0:
            sel.skipped_no_failure += 1
            continue
        anchor = int(grid.row_at[group, anchor_col[group]])
        distance = 1.0 - profiles[failures] @ profiles[anchor]
        sel.rows.append(int(failures[int(torch.argmin(distance))]))  # the first minimum: the lowest row
        sel.anchors.append(anchor)
    return sel


# ----------------------------------------------------------------------------------------------------------------
# Splice
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SpliceReport:
    filled: list[str] = field(default_factory=list)
    """Non-tensor columns of the main output that the repair output lacked (repaired rows get ``None`` there)."""
    dropped: list[str] = field(default_factory=list)
    """Columns only the repair output had (not carried into the training batch)."""


def _concat_column(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.concatenate([a, b], axis=0)
    except ValueError:  # ragged trailing shapes: keep one object per row
        out = np.empty(len(a) + len(b), dtype=object)
        out[:] = list(a) + list(b)
        return out


def splice_rows(main: Any, repair: Any, rows: Sequence[int], ignore: Sequence[str] = (STATUS_KEY,)):
    """``main`` with row ``rows[i]`` replaced by row ``i`` of ``repair``; batch size, row order and ``meta_info``
    of ``main`` are kept. Every tensor of ``main`` must exist in ``repair`` with the same trailing shape (else
    ``ValueError``). Returns ``(DataProto, SpliceReport)``. Columns in ``ignore`` are the manager's own bookkeeping.
    """
    from tensordict import TensorDict

    from verl import DataProto

    rows = [int(r) for r in rows]
    n, k = len(main), len(rows)
    if len(repair) != k:
        raise ValueError(f"RGR splice: {len(repair)} repair rows for {k} target rows")
    if len(set(rows)) != k or any(r < 0 or r >= n for r in rows):
        raise ValueError(f"RGR splice: target rows must be distinct and in [0, {n}), got {rows}")
    report = SpliceReport()
    if k == 0:
        return main, report
    order = np.arange(n)
    order[rows] = n + np.arange(k)
    order_t = torch.from_numpy(order)

    tensors = {}
    for key in main.batch.keys():
        if key not in repair.batch.keys():
            raise ValueError(f"RGR splice: the repair output lacks the tensor {key!r} of the rollout output")
        a, b = main.batch[key], repair.batch[key]
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"RGR splice: tensor {key!r} has shape {tuple(b.shape)} in the repair output, "
                             f"{tuple(a.shape)} in the rollout output")
        tensors[key] = torch.cat([a, b.to(a.dtype)], dim=0)[order_t]
    report.dropped += sorted(set(repair.batch.keys()) - set(main.batch.keys()))

    non_tensors = {}
    for key, a in main.non_tensor_batch.items():
        if key in repair.non_tensor_batch:
            b = repair.non_tensor_batch[key]
        else:
            report.filled.append(key)
            b = np.full(k, None, dtype=object)
        non_tensors[key] = _concat_column(a, b)[order]
    report.dropped += sorted(set(repair.non_tensor_batch) - set(main.non_tensor_batch) - set(ignore))

    batch = TensorDict(tensors, batch_size=(n,), device=main.batch.device)
    return DataProto(batch=batch, non_tensor_batch=non_tensors, meta_info=main.meta_info), report


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------

SKIP_REASONS = ("no_positive", "no_failure", "gen_error", "empty", "reward_error")


@dataclass
class StepStats:
    groups: int = 0
    triggered: int = 0
    passed: int = 0
    failed: int = 0
    skipped: dict = field(default_factory=lambda: {r: 0 for r in SKIP_REASONS})
    repair_tokens: int = 0
    main_tokens: int = 0
    cut_contexts: int = 0
    pad_rows: int = 0
    seconds: float = 0.0

    def metrics(self) -> dict:
        out = {
            "rgr/groups": self.groups,
            "rgr/triggered": self.triggered,
            "rgr/passed": self.passed,
            "rgr/failed": self.failed,
            "rgr/pass_rate": self.passed / self.triggered if self.triggered else 0.0,
            "rgr/repair_tokens": self.repair_tokens,
            "rgr/extra_token_share": self.repair_tokens / self.main_tokens if self.main_tokens else 0.0,
            "rgr/cut_contexts": self.cut_contexts,
            "rgr/pad_rows": self.pad_rows,
            "rgr/time_s": self.seconds,
        }
        out.update({f"rgr/skipped_{reason}": count for reason, count in self.skipped.items()})
        return {k: float(v) for k, v in out.items()}


def zero_flags(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.float64)


def is_empty_generation(tokenizer: Any, token_ids: Sequence[int]) -> bool:
    """No visible text: nothing generated, or only EOS/special tokens/whitespace."""
    if not token_ids:
        return True
    return tokenizer.decode(list(token_ids), skip_special_tokens=True).strip() == ""


def first_finite(values: np.ndarray | None, i: int) -> float | None:
    """``float(values[i])`` when it is a finite number, else None."""
    if values is None:
        return None
    try:
        v = float(values[i])
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None
