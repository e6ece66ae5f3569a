"""Failure-signal diagnostics logged every step for any estimator (GRPO and CARE alike).

- ``signal/fail_adv_share``: share of the absolute advantage mass ``sum |A_{i,t}|`` on failed rollouts
  (``acc != 1``), the paper's "share of learning signal that comes from failures".
- ``signal/zero_signal_group_rate``: share of groups (``uid``) whose advantages are all zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_PENDING: dict = {}


def push_step_metrics(metrics: dict) -> None:
    """Queue metrics (e.g. ``rgr/*`` from the rollout manager) for this step's verl metrics. Only works in the
    process that runs the trainer's ``fit`` (the TaskRunner), where ``compute_data_metrics`` collects them."""
    _PENDING.update({k: float(v) for k, v in metrics.items()})


def pop_step_metrics() -> dict:
    out = dict(_PENDING)
    _PENDING.clear()
    return out


def failure_signal_metrics(batch: Any) -> dict:
    if batch is None or "advantages" not in batch.batch.keys():
        return {}
    nt = batch.non_tensor_batch
    adv = batch.batch["advantages"]
    mask = batch.batch["response_mask"] if "response_mask" in batch.batch.keys() else torch.ones_like(adv)
    mass = (adv.abs() * mask).sum(-1).to(torch.float64)
    out = {}
    if "acc" in nt:
        acc = torch.from_numpy(np.asarray(nt["acc"], dtype=np.float64).reshape(-1))
        total = float(mass.sum())
        fail = float(mass[(acc - 1.0).abs() > 1e-6].sum())
        out["signal/fail_adv_share"] = fail / total if total > 0 else 0.0
    if "uid" in nt:
        _, gid = np.unique(np.asarray(nt["uid"]).astype(str), return_inverse=True)
        gid_t = torch.from_numpy(gid.reshape(-1).astype(np.int64))
        per_group = torch.zeros(int(gid_t.max()) + 1, dtype=torch.float64).index_add_(0, gid_t, mass)
        out["signal/zero_signal_group_rate"] = float((per_group == 0).double().mean())
    return out
