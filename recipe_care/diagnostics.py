"""The metrics the recipe adds to verl's step metrics (the ``compute_data_metrics`` patch logs them every step).

- ``signal/*``, for any estimator (GRPO and CARE alike):

  - ``signal/fail_adv_share``: share of the absolute advantage mass ``sum |A_{i,t}|`` on failed rollouts
    (not :func:`recipe_care.advantage.is_correct`), the paper's "share of learning signal that comes from failures";
  - ``signal/zero_signal_group_rate``: share of groups (``uid``) whose advantages are all zero.

- ``care/*``, the CARE selection of the step (:func:`care_metrics`, queued by the estimator).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recipe_care.advantage import ROLE_ANCHOR, ROLE_HARD_NEGATIVE, is_correct


def failure_signal_metrics(batch: Any) -> dict:
    """``signal/*`` of a DataProto that holds ``advantages`` (empty dict otherwise)."""
    if batch is None or "advantages" not in batch.batch.keys():
        return {}
    nt = batch.non_tensor_batch
    adv = batch.batch["advantages"]
    mask = batch.batch["response_mask"] if "response_mask" in batch.batch.keys() else torch.ones_like(adv)
    mass = (adv.abs() * mask).sum(-1).to(torch.float64)
    out = {}
    if "acc" in nt:
        total = float(mass.sum())
        fail = float(mass[~is_correct(nt["acc"])].sum())
        out["signal/fail_adv_share"] = fail / total if total > 0 else 0.0
    if "uid" in nt:
        _, gid = np.unique(np.asarray(nt["uid"]).astype(str), return_inverse=True)
        gid_t = torch.from_numpy(gid.reshape(-1).astype(np.int64))
        per_group = torch.zeros(int(gid_t.max()) + 1, dtype=torch.float64).index_add_(0, gid_t, mass)
        out["signal/zero_signal_group_rate"] = float((per_group == 0).double().mean())
    return out


def care_metrics(result: Any, acc: torch.Tensor, think_len: torch.Tensor) -> dict:
    """``care/*`` of one :func:`recipe_care.advantage.care_sequence_advantages` result."""
    role = result.role
    groups = int(result.has_anchor.numel())
    contrast = result.has_anchor & (result.k_prime > 0)
    anchors = role == ROLE_ANCHOR
    return {
        "care/groups": float(groups),
        "care/contrast_group_rate": float(contrast.float().mean()) if groups else 0.0,
        "care/rescue_rate": float(result.rescued.float().mean()) if groups else 0.0,
        "care/k_prime_mean": float(result.k_prime[contrast].float().mean()) if bool(contrast.any()) else 0.0,
        "care/anchor_think_len_mean": float(think_len[anchors].float().mean()) if bool(anchors.any()) else 0.0,
        "care/hard_negatives": float((role == ROLE_HARD_NEGATIVE).sum()),
        "care/subgroup_rows_rate": float((role != 0).float().mean()) if role.numel() else 0.0,
        "care/acc_mean": float(acc.float().mean()) if acc.numel() else 0.0,
    }
