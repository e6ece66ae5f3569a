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
