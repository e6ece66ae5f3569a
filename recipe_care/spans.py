"""``<think>`` / ``<answer>`` spans of tokenized responses (no verl import).

Tags can merge with neighbouring text in BPE (``">\\n"`` is one token in Qwen's vocabulary), so spans are found
in the decoded *bytes* and mapped back to tokens through a per-token byte-length table: a token belongs to a span
when its bytes overlap the span's content (the bytes between the tags); a token overlapping both spans counts as
answer. Tokens made only of tag bytes belong to neither. The byte table is exact for byte-level BPE tokenizers
(Qwen2/2.5/3, GPT-2 family) and approximate (single-token decode) for others.

Span rules (docs/algorithm.md#spans):
- think: after the first ``<think>`` up to the first ``</think>`` after it; when ``</think>`` is missing, up to the
  first ``<answer>`` after ``<think>`` (else to the end of the response). No ``<think>``, or a think span with no
  non-whitespace content (``<think>\n\n</think>``, which Qwen3 emits), → no think span (callers fall back to the
  whole response);
- answer: after the first ``<answer>`` that follows ``</think>`` (the start of the response when there is no
  ``<think>``; the think span's start when ``</think>`` is missing), up to the first ``</answer>`` after it (to the
  end when unclosed); no such ``<answer>`` → no answer span.

:func:`anchor_lengths` turns spans into the lengths that rank the anchor (the same rule serves the ``care`` estimator
and RGR's representative choice).

Parsed once per training step: decoding the whole batch and searching its tags costs seconds at the authors' scale
(4,096 x 2,048 tokens), and three consumers on the TaskRunner need the spans (RGR's choice of the failure to repair,
the hidden-state pooling mask, the estimator). :func:`batch_spans` parses them for the first and carries them on the
batch for the others (``benchmarks/bench_spans.py`` measures the saving).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

THINK_OPEN, THINK_CLOSE = b"<think>", b"</think>"
ANSWER_OPEN, ANSWER_CLOSE = b"<answer>", b"</answer>"


@dataclass
class Spans:
    think_mask: torch.Tensor  # bool [N, T]
    answer_mask: torch.Tensor  # bool [N, T]
    think_len: torch.Tensor  # int64 [N] tokens in the think span (0 if none)
    answer_len: torch.Tensor  # int64 [N]
    has_think: torch.Tensor  # bool [N] a think span with visible content (a blank one counts as missing)
    has_answer: torch.Tensor  # bool [N]


def find_byte_spans(data: bytes) -> tuple[int, int, int, int]:
    """(think_start, think_end, answer_start, answer_end) byte offsets; -1 where a span is absent."""
    ts = te = as_ = ae = -1
    i = data.find(THINK_OPEN)
    after = 0
    if i >= 0:
        ts = i + len(THINK_OPEN)
        j = data.find(THINK_CLOSE, ts)
        te, after = (j, j + len(THINK_CLOSE)) if j >= 0 else (len(data), ts)
    k = data.find(ANSWER_OPEN, after)
    if k >= 0:
        as_ = k + len(ANSWER_OPEN)
        m = data.find(ANSWER_CLOSE, as_)
        ae = m if m >= 0 else len(data)
        if ts >= 0 and te > k:  # unclosed think that runs into the answer: cut it at <answer>
            te = k
    return ts, te, as_, ae


def is_blank(data: bytes) -> bool:
    """True when ``data`` holds no visible character (only whitespace, after UTF-8 decoding)."""
    return not data.decode("utf-8", errors="replace").strip()


def anchor_lengths(spans: "Spans", full_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(think_len, answer_len) that rank the anchor: a missing or zero-token span counts as the whole response
    (``full_len``, the valid response tokens), as the authors' ``think_len = where(think_len > 0, think_len,
    resp_len)`` does; a blank think span is already missing (:class:`TagSpanParser`), so empty reasoning never makes a
    rollout "shortest"."""
    full = full_len.to(torch.int64)
    think = torch.where(spans.has_think & (spans.think_len > 0), spans.think_len, full)
    answer = torch.where(spans.has_answer & (spans.answer_len > 0), spans.answer_len, full)
    return think, answer


def _byte_level_table(tokenizer: Any) -> list[int] | None:
    """Bytes each token contributes to ``decode(skip_special_tokens=True)`` for byte-level BPE; None otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None or "ByteLevel" not in repr(decoder):
        return None
    vocab_size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    table = []
    for tid, tok in enumerate(tokens):
        if tid in special or tok is None:
            table.append(0)
        elif tid in added:  # added tokens are stored verbatim, not byte-mapped
            table.append(len(str(tok).encode("utf-8")))
        else:
            table.append(len(tok))  # one unicode char per byte in byte-level BPE
    return table


def _build_table(tokenizer: Any) -> torch.Tensor:
    table = _byte_level_table(tokenizer)
    if table is None:
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        table = [
            0 if t in special else len(tokenizer.decode([t], skip_special_tokens=True).encode("utf-8"))
            for t in range(len(tokenizer))
        ]
    return torch.tensor(table, dtype=torch.int64)


class TagSpanParser:
    """Finds think/answer token spans for a batch of responses of one tokenizer."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.nbytes = _build_table(tokenizer)

    def parse(self, responses: torch.Tensor, valid_mask: torch.Tensor) -> Spans:
        """``responses`` [N, T] token ids; ``valid_mask`` [N, T] marks real response tokens (the response part of
        the attention mask: context tokens of multi-turn/RGR rows count, padding does not)."""
        ids = responses.to(torch.int64)
        valid = valid_mask.to(torch.bool)
        n, t = ids.shape
        vocab = self.nbytes.numel()
        nb = torch.where(valid & (ids >= 0) & (ids < vocab), self.nbytes[ids.clamp(0, vocab - 1)], 0)
        ends = torch.cumsum(nb, dim=1)
        starts = ends - nb
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        masked = torch.where(valid, ids, torch.full_like(ids, pad_id)).tolist()
        texts = self.tokenizer.batch_decode(masked, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        total = ends[:, -1].tolist() if t else [0] * n
        bounds = torch.full((n, 4), -1, dtype=torch.int64)
        for i, text in enumerate(texts):
            data = text.encode("utf-8")
            if len(data) != total[i]:  # invalid UTF-8 was replaced while decoding: rebuild the exact bytes
                data = self._exact_bytes(masked[i], valid[i])
            ts_i, te_i, as_i, ae_i = find_byte_spans(data)
            if ts_i >= 0 and is_blank(data[ts_i:te_i]):  # empty reasoning counts as no reasoning
                ts_i = te_i = -1
            bounds[i] = torch.tensor((ts_i, te_i, as_i, ae_i))
        ts, te, as_, ae = bounds.unbind(1)
        real = valid & (nb > 0)
        # a token belongs to a span when it overlaps the span's content bytes (a token that merges the last
        # answer character with "</answer>" still carries the answer); a token overlapping both goes to answer
        answer = real & (starts < ae.unsqueeze(1)) & (ends > as_.unsqueeze(1)) & (as_ >= 0).unsqueeze(1)
        think = real & (starts < te.unsqueeze(1)) & (ends > ts.unsqueeze(1)) & (ts >= 0).unsqueeze(1) & ~answer
        return Spans(
            think_mask=think,
            answer_mask=answer,
            think_len=think.sum(1),
            answer_len=answer.sum(1),
            has_think=ts >= 0,
            has_answer=as_ >= 0,
        )

    def _exact_bytes(self, ids: list[int], valid: torch.Tensor) -> bytes:
        out = bytearray()
        for tid, ok in zip(ids, valid.tolist()):
            if not ok or self.nbytes[tid] == 0:
                continue
            piece = self.tokenizer.decode([tid], skip_special_tokens=True, clean_up_tokenization_spaces=False)
            raw = piece.encode("utf-8")
            if len(raw) != int(self.nbytes[tid]):
                raw = b"\x00" * int(self.nbytes[tid])  # a partial UTF-8 byte: keep the length, content is no tag
            out += raw
        return bytes(out)


# ----------------------------------------------------------------------------------------------------------------
# Spans on the batch: parsed once per step
# ----------------------------------------------------------------------------------------------------------------

THINK_MASK_KEY, ANSWER_MASK_KEY = "care_think_mask", "care_answer_mask"
HAS_THINK_KEY, HAS_ANSWER_KEY = "care_has_think", "care_has_answer"
FINGERPRINT_KEY = "care_span_fingerprint"
SPAN_KEYS = (THINK_MASK_KEY, ANSWER_MASK_KEY, HAS_THINK_KEY, HAS_ANSWER_KEY, FINGERPRINT_KEY)
"""Batch keys of the parsed spans (bool ``[N, R]`` masks, bool ``[N]`` flags and the int64 ``[N]`` fingerprint of the
response each row's spans were parsed from); see :func:`batch_spans`."""


def response_valid_mask(batch: Any) -> torch.Tensor:
    """bool [N, R]: the real tokens of each response of a rollout batch, i.e. the response part of its attention
    mask (context tokens of RGR or multi-turn rows count, padding does not)."""
    return batch["attention_mask"][:, -batch["responses"].shape[1]:].to(torch.bool)


def response_fingerprint(responses: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """int64 [N]: a position-weighted sum of each row's real token ids, which identifies the response its spans
    belong to (a few vectorized passes over the batch, against a decode of every token for a parse).

    >>> ids = torch.tensor([[5, 6, 0], [6, 5, 0], [5, 6, 7]])
    >>> valid = torch.tensor([[True, True, False], [True, True, False], [True, True, True]])
    >>> fp = response_fingerprint(ids, valid)
    >>> bool(fp[0] != fp[1]), bool(fp[0] != fp[2]), bool(fp[0] == response_fingerprint(ids[:1], valid[:1])[0])
    (True, True, True)
    """
    positions = torch.arange(responses.shape[1], dtype=torch.int64, device=responses.device)
    weights = (positions * 2654435761 + 97) % 16777213 + 1  # distinct per position, < 2**24
    ids = responses.to(torch.int64) + 1  # a new tensor: the in-place steps below leave ``responses`` alone
    return ids.masked_fill_(~valid.to(torch.bool), 0).mul_(weights).sum(1)  # padding adds 0, a real token > 0


def spans_to_batch(spans: Spans, fingerprint: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch keys that hold ``spans`` of responses with ``fingerprint`` (:data:`SPAN_KEYS`)."""
    return {THINK_MASK_KEY: spans.think_mask, ANSWER_MASK_KEY: spans.answer_mask, HAS_THINK_KEY: spans.has_think,
            HAS_ANSWER_KEY: spans.has_answer, FINGERPRINT_KEY: fingerprint}


def _stored_spans(batch: Any) -> Spans | None:
    if any(key not in batch.keys() for key in SPAN_KEYS):
        return None
    think, answer = batch[THINK_MASK_KEY].to(torch.bool), batch[ANSWER_MASK_KEY].to(torch.bool)
    if think.shape != batch["responses"].shape or answer.shape != think.shape:
        return None  # another batch's width
    return Spans(think_mask=think, answer_mask=answer, think_len=think.sum(1), answer_len=answer.sum(1),
                 has_think=batch[HAS_THINK_KEY].to(torch.bool), has_answer=batch[HAS_ANSWER_KEY].to(torch.bool))


def _valid(batch: Any, valid: torch.Tensor | None) -> torch.Tensor:
    return response_valid_mask(batch) if valid is None else valid.to(torch.bool)


def spans_from_batch(batch: Any, valid: torch.Tensor | None = None) -> Spans | None:
    """The spans stored on a batch (a TensorDict or a mapping with ``responses``), or None when they are absent or
    do not belong to its responses: another width, or a row whose response changed since the parse (its
    fingerprint differs). ``valid``: as in :func:`batch_spans`."""
    spans = _stored_spans(batch)
    if spans is None:
        return None
    if not torch.equal(batch[FINGERPRINT_KEY], response_fingerprint(batch["responses"], _valid(batch, valid))):
        return None
    return spans


def batch_spans(batch: Any, parser: TagSpanParser | None, valid: torch.Tensor | None = None) -> Spans | None:
    """The think/answer spans of a rollout batch, parsed at most once per training step.

    ``batch`` is the TensorDict of verl's batch (``DataProto.batch``, holding ``responses`` and ``attention_mask``).

    Step 1: read the spans stored on the batch under :data:`SPAN_KEYS` and check each row's fingerprint
    (:func:`response_fingerprint`) against its current response. Step 2: parse with ``parser`` only what is missing:
    the whole batch when nothing (or another width) is stored, else the rows whose response changed; store the
    result on the batch. The first caller of a step (RGR's rollout manager, else the hidden-state pooling mask, else
    the estimator) therefore parses, and every later caller reads back. verl's row operations (``union``,
    ``balance_batch``'s ``reorder``, slicing) carry the keys with their rows; the recipe's patches keep them out of
    every worker pass and drop them once the advantage is computed (``recipe_care.step_context.TASK_RUNNER_KEYS``).

    Returns None when spans are not (or not all) on the batch and ``parser`` is None: a stale copy is never used.
    ``valid`` (bool [N, R]): the real response tokens; default :func:`response_valid_mask`.
    """
    responses, valid = batch["responses"], _valid(batch, valid)
    fingerprint = response_fingerprint(responses, valid)
    stored = _stored_spans(batch)
    if stored is None:
        stale = None  # nothing usable: every row
    else:
        stale = torch.nonzero(batch[FINGERPRINT_KEY] != fingerprint).flatten()
        if stale.numel() == 0:
            return stored
    if parser is None:
        return None
    if stale is None:
        spans = parser.parse(responses, valid)
    else:  # rows whose response changed since the parse (not the case in a recipe step): only those are parsed
        fresh = parser.parse(responses[stale], valid[stale])
        spans = Spans(**{name: getattr(stored, name).clone() for name in vars(stored)})
        for name in vars(spans):
            getattr(spans, name)[stale] = getattr(fresh, name)
    for key, value in spans_to_batch(spans, fingerprint).items():
        batch[key] = value
    return spans
