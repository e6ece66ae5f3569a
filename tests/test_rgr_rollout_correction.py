"""Rows repaired by RGR and verl's consumers of the rollout engine's log-probs (decoupled mode, verl's default).

A repaired row's new tokens were sampled at the repair temperature / top-p, and the engine reports their log-probs
after temperature and top-p, while the actor recomputes the old log-probs at the rollout temperature. verl's
``calculate_debug_metrics`` (``training/rollout_probs_diff_*``) and ``compute_rollout_correction_and_add_to_batch``
(IS weights, rejection sampling, ``rollout_corr/*``) are called here the way ``fit()`` calls them (imported from their
modules at call time, i.e. recipe_care's patched versions): ordinary rows must get exactly what verl computes for them
alone, repaired rows must never be mixed in, and without repaired rows nothing changes.
"""

import numpy as np
import pytest
import torch

import verl  # noqa: F401  (loads the plugin: post-import hooks patch the modules below when they are imported)
import verl.trainer.ppo.rollout_corr_helper as rollout_corr
import verl.utils.debug.metrics as debug_metrics
from verl import DataProto
from verl.trainer.config.algorithm import RolloutCorrectionConfig

from recipe_care.patches import is_patched

REPAIRED = [1, 4]


def make_batch(flags=REPAIRED, n=6, width=6):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(n, width, dtype=torch.long)
    mask[:, -1] = 0  # padding
    mask[REPAIRED, :2] = 0  # the repair context is not trained
    old = -torch.rand(n, width, generator=g) * 2
    rollout = old + 0.01 * torch.randn(n, width, generator=g)  # ordinary rows: engine and actor nearly agree
    rollout[REPAIRED] = old[REPAIRED] - 1.0  # repaired rows: another sampling distribution (T=0.6, top-p)
    rgr = np.zeros(n)
    rgr[list(flags)] = 1.0
    return DataProto.from_dict(
        tensors={"old_log_probs": old * mask, "rollout_log_probs": rollout * mask, "response_mask": mask,
                 "responses": torch.randint(0, 50, (n, width), generator=g),
                 "attention_mask": torch.cat([torch.ones(n, 3, dtype=torch.long), mask], 1)},
        non_tensors={"rgr_row": rgr, "uid": np.array([f"u{i // 3}" for i in range(n)], dtype=object)},
    )


def rows(data, idx):
    return data.select_idxs(np.asarray(idx))


ORDINARY = [0, 2, 3, 5]


def test_both_functions_are_patched():
    assert is_patched(debug_metrics) and is_patched(rollout_corr)


def test_rollout_probs_diff_reports_repaired_rows_apart():
    original = debug_metrics.calculate_debug_metrics.__wrapped__
    data = make_batch()
    got = debug_metrics.calculate_debug_metrics(data)
    ordinary, repaired = original(rows(data, ORDINARY)), original(rows(data, REPAIRED))
    for key, value in ordinary.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key
        rgr_key = "rgr/" + key.split("/", 1)[1]
        assert got[rgr_key] == pytest.approx(repaired[key], nan_ok=True), rgr_key
    assert got["rgr/rollout_probs_diff_valid"] == 1
    # mixed together, the repaired rows would dominate verl's metric: this test tells the two apart
    assert original(data)["training/rollout_probs_diff_max"] > 10 * got["training/rollout_probs_diff_max"]


def test_without_repaired_rows_verls_metrics_are_unchanged():
    original = debug_metrics.calculate_debug_metrics.__wrapped__
    data = make_batch(flags=[])
    assert debug_metrics.calculate_debug_metrics(data) == original(data)
    del data.non_tensor_batch["rgr_row"]
    assert debug_metrics.calculate_debug_metrics(data) == original(data)


@pytest.mark.parametrize("is_mode,rs_mode", [("token", "token_k1"), ("sequence", "seq_mean_k1"), (None, "token_k1"),
                                             ("token", None)])
def test_rollout_correction_keeps_repaired_rows_out(is_mode, rs_mode):
    original = rollout_corr.compute_rollout_correction_and_add_to_batch.__wrapped__
    cfg = RolloutCorrectionConfig(rollout_is=is_mode, rollout_is_threshold=2.0, rollout_rs=rs_mode,
                                  rollout_rs_threshold="0.5_1.5" if rs_mode else None)
    data = make_batch()
    mask_before = data.batch["response_mask"].clone()
    out, metrics = rollout_corr.compute_rollout_correction_and_add_to_batch(data, cfg)
    expected, expected_metrics = original(rows(make_batch(), ORDINARY), cfg)
    # ordinary rows: exactly verl's result for them alone (weights, rejections, metrics)
    assert torch.equal(out.batch["response_mask"][ORDINARY], expected.batch["response_mask"])
    assert metrics == pytest.approx(expected_metrics, nan_ok=True)
    # repaired rows: never rejected, IS weight 1 on their trained tokens
    assert torch.equal(out.batch["response_mask"][REPAIRED], mask_before[REPAIRED])
    if is_mode is None:
        assert "rollout_is_weights" not in out.batch.keys()
    else:
        weights = out.batch["rollout_is_weights"]
        assert torch.equal(weights[ORDINARY], expected.batch["rollout_is_weights"])
        assert torch.equal(weights[REPAIRED], mask_before[REPAIRED].to(weights.dtype))
    # verl alone would have treated the repaired rows as far off-policy: this test tells the two apart
    alone, _ = original(make_batch(), cfg)
    changed = not torch.equal(alone.batch["response_mask"][REPAIRED], mask_before[REPAIRED])
    if is_mode is not None:
        changed |= not torch.equal(alone.batch["rollout_is_weights"][REPAIRED], mask_before[REPAIRED].float())
    assert changed


def test_rollout_correction_without_repaired_rows_is_verls():
    original = rollout_corr.compute_rollout_correction_and_add_to_batch.__wrapped__
    cfg = RolloutCorrectionConfig(rollout_is="token", rollout_rs="token_k1", rollout_rs_threshold="0.5_1.5")
    out, metrics = rollout_corr.compute_rollout_correction_and_add_to_batch(make_batch(flags=[]), cfg)
    ref, ref_metrics = original(make_batch(flags=[]), cfg)
    assert torch.equal(out.batch["response_mask"], ref.batch["response_mask"])
    assert torch.equal(out.batch["rollout_is_weights"], ref.batch["rollout_is_weights"])
    assert metrics == pytest.approx(ref_metrics, nan_ok=True)
