"""Rationale embeddings for hard-negative selection when policy hidden states are not available (no verl import).

The paper embeds each rollout by the policy's last-layer hidden states mean-pooled over its ``<think>`` tokens.
Those exist only after the actor's forward pass; at rollout time (RGR picks its representative failure there) and
in runs without the embedding worker extension, CARE uses a *hashed token n-gram profile* of the same span: counts
of token n-grams hashed into ``dim`` buckets, L2-normalized, so cosine distance measures how much two rationales
share wording. One vectorized function serves both places.
"""

from __future__ import annotations

import torch

# Odd 61-bit multipliers for a polynomial hash of n consecutive token ids.
_MULT = (0x9E3779B97F4A7C15 >> 3, 0xC2B2AE3D27D4EB4F >> 3, 0x165667B19E3779F9 >> 3, 0x27D4EB2F165667C5 >> 3)


def ngram_embeddings(token_ids: torch.Tensor, mask: torch.Tensor, n: int = 3, dim: int = 512) -> torch.Tensor:
    """[N, dim] float32 L2-normalized hashed n-gram counts of the masked tokens of each row.

    An n-gram counts when all its n tokens are inside ``mask``. Rows with fewer than n masked tokens fall back to
    unigrams; a row with no masked token gets the zero vector (cosine distance 1 to everything).
    """
    ids = token_ids.to(torch.int64)
    m = mask.to(torch.bool)
    rows, t = ids.shape
    out = torch.zeros(rows, dim, dtype=torch.float32)
    if rows == 0 or t == 0:
        return out
    nn = max(1, min(n, t))
    h = torch.zeros(rows, t - nn + 1, dtype=torch.int64)
    ok = torch.ones(rows, t - nn + 1, dtype=torch.bool)
    for k in range(nn):
        h = h * 1_000_003 + ids[:, k : t - nn + 1 + k] * _MULT[k % len(_MULT)]
        ok &= m[:, k : t - nn + 1 + k]
    bucket = torch.remainder(h, dim)
    out.scatter_add_(1, bucket, ok.to(torch.float32))
    short = ok.sum(1) == 0  # too few tokens for an n-gram: unigram profile
    if nn > 1 and bool(short.any()):
        uni = torch.remainder(ids[short] * _MULT[0], dim)
        out[short] = torch.zeros(int(short.sum()), dim).scatter_add_(1, uni, m[short].to(torch.float32))
    return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)
