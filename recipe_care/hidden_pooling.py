"""Rationale embeddings from policy hidden states: the pooling math and the pooler (torch only, no verl import).

docs/algorithm.md#rationale-embeddings: the embedding of rollout i is the current policy's **last-layer hidden
state** (the input of ``lm_head``, i.e. after the final norm) **mean-pooled over the response's ``<think>`` tokens**
(the whole response when it has no think span, a blank one included), **L2-normalised**.
``recipe_care.patches.hidden_states`` computes it inside verl's old-log-prob forward pass with the pieces here:

* :func:`response_pool_mask` — which response tokens to pool (think span, else every valid response token);
* :func:`sequence_pool_mask` — the same mask over the whole left/right-padded sequence ``[N, prompt + response]``;
* :func:`packed_pool_mask` — that mask in verl's no-padding layout: a jagged nested tensor with exactly the
  per-sample lengths of the packed ``input_ids`` (valid tokens of each row, prompt then response);
* :func:`pool_packed` — pooling of remove-padding hidden states ``[1, total_nnz (+ tail pad), H]``;
* :func:`packed_partial_sums` — the sums of one contiguous slice of it (a Ulysses sequence-parallel shard);
* :func:`pool_padded` — pooling of right-padded hidden states ``[B, L, H]`` (verl's padded engine path), with
  :func:`padded_from_packed` for the mask;
* :func:`l2_normalize`;
* :class:`HiddenStatePooler` — a forward pre-hook on the policy's ``lm_head`` (:func:`output_head`) that pools its
  input over the mask during one micro-batch forward, for either layout and across Ulysses shards.

Hidden state ``t`` is the representation of token ``t`` itself (no shift, unlike log-probs, which are read one
position earlier). Sums are accumulated in float32 over the selected rows only, so the extra memory is
``(#think tokens) x H`` floats per micro-batch, never a copy of the whole hidden-state tensor.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

NORM_EPS = 1e-12


def response_pool_mask(think_mask: torch.Tensor | None, response_valid: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, R]``: the think tokens of each response, or all of its valid tokens when it has none.

    ``think_mask`` ``[N, R]`` (``TagSpanParser.parse(...).think_mask``) may be None (no tokenizer known): every row
    then pools its whole response. Think tokens outside ``response_valid`` never count.
    """
    valid = response_valid.to(torch.bool)
    if think_mask is None:
        return valid.clone()
    think = think_mask.to(torch.bool) & valid
    return torch.where(think.any(dim=1, keepdim=True), think, valid)


def sequence_pool_mask(response_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, S]`` over the left/right-padded sequence (``S = prompt + response``; responses are the last ``R``
    columns, as in verl's rollout batch)."""
    n, r = response_mask.shape
    if attention_mask.shape[0] != n or attention_mask.shape[1] < r:
        raise ValueError(f"response mask {tuple(response_mask.shape)} does not fit attention mask "
                         f"{tuple(attention_mask.shape)}")
    full = torch.zeros(attention_mask.shape, dtype=torch.bool, device=attention_mask.device)
    full[:, attention_mask.shape[1] - r:] = response_mask.to(torch.bool)
    return full & attention_mask.to(torch.bool)


def packed_pool_mask(sequence_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Jagged nested ``[N, j]`` float32 mask in verl's no-padding layout.

    Row ``i`` holds ``sequence_mask[i]`` at the positions where ``attention_mask[i]`` is 1, in order — the layout of
    ``verl.workers.utils.padding.left_right_2_no_padding`` (``unpad_input`` keeps valid tokens row-major). It is
    float32, not bool, because verl's micro-batching (``unbind``/``as_nested_tensor``/``to_padded_tensor``) handles
    float jagged tensors everywhere.
    """
    keep = attention_mask.to(torch.bool)
    values = sequence_mask.to(torch.bool)[keep].to(torch.float32)
    lengths = keep.sum(dim=1)
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64, device=values.device)
    offsets[1:] = torch.cumsum(lengths, dim=0)
    return torch.nested.nested_tensor_from_jagged(values, offsets=offsets)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm (a zero row stays zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)


def segment_sums(rows: torch.Tensor, weights: torch.Tensor, segment: torch.Tensor,
                 num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums of ``rows`` ``[T, H]`` per segment id (float32 ``[num_segments, H]``) and the summed weights
    (``[num_segments]``). Only rows with a non-zero weight are read."""
    hidden = rows.shape[-1]
    sel = torch.nonzero(weights != 0, as_tuple=True)[0]
    w = weights.index_select(0, sel).to(torch.float32)
    picked = rows.index_select(0, sel).to(torch.float32) * w.unsqueeze(1)
    seg = segment.index_select(0, sel)
    sums = torch.zeros(num_segments, hidden, dtype=torch.float32, device=rows.device)
    sums.index_add_(0, seg, picked)
    counts = torch.zeros(num_segments, dtype=torch.float32, device=rows.device)
    counts.index_add_(0, seg, w)
    return sums, counts


def finish_mean(sums: torch.Tensor, counts: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean from :func:`segment_sums` (a segment without weight gives a zero row), L2-normalised by default."""
    mean = sums / counts.clamp_min(NORM_EPS).unsqueeze(1)
    return l2_normalize(mean) if normalize else mean


def packed_partial_sums(hidden: torch.Tensor, mask_values: torch.Tensor, lengths: torch.Tensor,
                        start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums and weights of one contiguous slice of the packed sequence.

    ``hidden`` ``[1, L, H]`` or ``[L, H]`` holds packed positions ``start .. start + L - 1`` of the global packed
    sequence (the whole sequence when ``start=0`` and ``L >= T``; one Ulysses sequence-parallel shard otherwise);
    positions at or past ``T = lengths.sum()`` are padding and ignored. ``mask_values`` ``[T]`` are the pooling
    weights of the global packed sequence, ``lengths`` ``[B]`` the tokens per sample. Summing the results of all
    shards gives the sums of the whole sequence.
    """
    if hidden.dim() == 3:
        if hidden.shape[0] != 1:
            raise ValueError(f"packed hidden states must be [1, T, H], got {tuple(hidden.shape)}")
        hidden = hidden[0]
    device = hidden.device
    lengths = lengths.to(device=device, dtype=torch.int64)
    total = int(lengths.sum())
    if mask_values.numel() != total:
        raise ValueError(f"pool mask has {mask_values.numel()} tokens, the packed samples {total}")
    if start < 0:
        raise ValueError(f"slice start must be >= 0, got {start}")
    stop = min(start + hidden.shape[0], total)
    segment = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    if stop <= start:
        rows, weights, segment = hidden[:0], mask_values.new_zeros(0).to(device), segment[:0]
    else:
        rows = hidden[: stop - start]
        weights = mask_values.to(device)[start:stop]
        segment = segment[start:stop]
    return segment_sums(rows, weights, segment, lengths.numel())


def pool_packed(hidden: torch.Tensor, mask_values: torch.Tensor, lengths: torch.Tensor,
                normalize: bool = True) -> torch.Tensor:
    """Pool remove-padding hidden states.

    ``hidden``: ``[1, T', H]`` or ``[T', H]`` with ``T' >= T = lengths.sum()`` — the packed sequences back to back,
    possibly followed by a tail pad (verl's static bucket pad); ``mask_values`` ``[T]``: pooling weights per packed
    token (``packed_pool_mask(...).values()``); ``lengths`` ``[B]``: tokens per sample. Returns ``[B, H]`` float32.
    """
    total = int(lengths.sum())
    rows = hidden.shape[-2]
    if rows < total:
        raise ValueError(f"packed hidden states hold {rows} tokens, fewer than the {total} of the samples")
    sums, counts = packed_partial_sums(hidden, mask_values, lengths, start=0)
    return finish_mean(sums, counts, normalize)


def padded_from_packed(mask_values: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Right-padded ``[B, width]`` weights from packed ones (verl's padded engine layout: each row holds its valid
    tokens first)."""
    lengths = lengths.to(device=mask_values.device, dtype=torch.int64)
    if lengths.numel() and int(lengths.max()) > width:
        raise ValueError(f"a sample has {int(lengths.max())} tokens, more than the padded width {width}")
    keep = torch.arange(width, device=mask_values.device).unsqueeze(0) < lengths.unsqueeze(1)
    out = torch.zeros(lengths.numel(), width, dtype=mask_values.dtype, device=mask_values.device)
    out[keep] = mask_values
    return out


def pool_padded(hidden: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Pool padded hidden states ``[B, L, H]`` with a weight mask ``[B, L']`` (``L' <= L`` columns; columns past
    ``L'`` count as 0). Returns ``[B, H]`` float32."""
    b, length, h = hidden.shape
    if mask.shape[0] != b or mask.shape[1] > length:
        raise ValueError(f"pool mask {tuple(mask.shape)} does not fit hidden states {tuple(hidden.shape)}")
    if mask.shape[1] < length:
        mask = torch.nn.functional.pad(mask, (0, length - mask.shape[1]))
    segment = torch.arange(b, device=hidden.device).repeat_interleave(length)
    sums, counts = segment_sums(hidden.reshape(b * length, h), mask.reshape(-1).to(hidden.device), segment, b)
    return finish_mean(sums, counts, normalize)


def output_head(module: torch.nn.Module) -> torch.nn.Module:
    """The policy's ``lm_head`` (FSDP1 wrapper, FSDP2 module or plain HF model)."""
    model = module
    while True:
        inner = getattr(model, "_fsdp_wrapped_module", None)
        if not isinstance(inner, torch.nn.Module):
            break
        model = inner
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if isinstance(head, torch.nn.Module):
        return head
    for name, sub in module.named_modules():
        if name.split(".")[-1] == "lm_head":
            return sub
    raise RuntimeError(f"CARE embeddings: no lm_head found in {type(model).__name__}")


class HiddenStatePooler:
    """Pools the ``lm_head`` input of one micro-batch forward over the CARE mask.

    ``mask``: jagged nested ``[b, j]`` weights with the packed per-sample lengths of the micro-batch. Layouts:
    remove-padding ``[1, total_nnz + pad, H]`` (or one contiguous Ulysses shard of it: ``sp_group`` set), padded
    ``[b, max_len, H]`` (right-padded valid tokens, as ``prepare_model_inputs`` builds it).
    """

    def __init__(self, mask: torch.Tensor, remove_padding: bool, sp_group: Any = None):
        self.values = mask.values()
        self.lengths = mask.offsets().diff()
        self.remove_padding = remove_padding
        self.sp_group = sp_group
        self.calls = 0
        self.embeddings: torch.Tensor | None = None

    def _pool(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.remove_padding:
            if hidden.dim() != 3 or hidden.shape[0] != self.lengths.numel():
                raise RuntimeError(f"CARE embeddings: padded hidden states {tuple(hidden.shape)} for "
                                   f"{self.lengths.numel()} samples")
            mask = padded_from_packed(self.values.to(hidden.device), self.lengths, hidden.shape[1])
            return pool_padded(hidden, mask)
        if self.sp_group is None:
            return pool_packed(hidden, self.values, self.lengths)
        import torch.distributed as dist

        rank = dist.get_rank(group=self.sp_group)
        local = hidden.shape[-2]
        sums, counts = packed_partial_sums(hidden, self.values, self.lengths, start=rank * local)
        dist.all_reduce(sums, group=self.sp_group)
        dist.all_reduce(counts, group=self.sp_group)
        expected = torch.zeros_like(counts)
        expected.index_add_(0, torch.repeat_interleave(torch.arange(self.lengths.numel(), device=counts.device),
                                                        self.lengths.to(counts.device)),
                            self.values.to(device=counts.device, dtype=torch.float32))
        if not torch.allclose(counts, expected):
            raise RuntimeError("CARE embeddings: the sequence-parallel shards do not cover the packed sequence")
        return finish_mean(sums, counts)

    def hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.calls += 1
        if self.calls == 1:
            hidden = args[0] if args else kwargs.get("input")
            with torch.no_grad():
                self.embeddings = self._pool(hidden.detach())

    @contextlib.contextmanager
    def attached(self, module: torch.nn.Module):
        handle = output_head(module).register_forward_pre_hook(self.hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()

    def result(self) -> torch.Tensor:
        if self.calls != 1 or self.embeddings is None:
            raise RuntimeError(
                f"CARE embeddings: lm_head ran {self.calls} times in one micro-batch forward (expected once). The "
                "fused log-prob kernels skip lm_head: set actor_rollout_ref.model.use_fused_kernels=False, or "
                "algorithm.care.similarity=ngram."
            )
        return self.embeddings
