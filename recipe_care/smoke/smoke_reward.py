"""A PLUMBING reward for the CPU smoke run: it says nothing about correctness.

A tiny random model never answers a benchmark question correctly, so the real verifier (``pkg://reward_fns``) would
give every rollout reward 0, every group would be uniform, and every advantage would be 0: the smoke run would then
not exercise the advantage estimator at all. This function instead decides ``acc`` from a SHA-256 hash of the
response text (about half of the responses pass, deterministically for a given text), so most groups of ``rollout.n``
responses have mixed rewards and the estimator produces non-zero advantages.

It returns the same keys and types as ``reward_fns.compute_score`` (``score, acc, format, extracted`` floats, ``pred``
a string) so the rest of the
pipeline (reward-extra-info columns, validation metrics, CARE's ``acc`` lookup) sees the same shapes. Select it with
``reward.custom_reward_function.path=pkg://recipe_care.smoke.smoke_reward`` (``SMOKE_REWARD=hash`` in
``run_scripts/cpu_smoke.sh``). Never use it for training.
"""

from __future__ import annotations

import hashlib
import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"\s*<think>.*</think>\s*<answer>.*</answer>\s*", re.DOTALL)


def hash_pass(text: str) -> bool:
    """Deterministic coin flip on the text: True for about half of all strings."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[0] < 128


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    text = solution_str if isinstance(solution_str, str) else str(solution_str)
    acc = 1.0 if hash_pass(text) else 0.0
    found = _ANSWER.findall(text)
    pred = found[-1].strip() if found else ""
    return {
        "score": acc,
        "acc": acc,
        "format": 1.0 if _FORMAT.fullmatch(text) else 0.0,
        "extracted": 1.0 if found else 0.0,
        "pred": pred,
    }
