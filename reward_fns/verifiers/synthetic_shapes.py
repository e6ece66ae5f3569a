"""The synthetic CPU learning task (``synthetic_shapes``, ``recipe_care.learn_demo.shapes_task``): one option letter.

Ground truth: one letter (``A``–``D``); ``choices``: the option texts (``red``, ``green``, ``blue``, ``yellow``).
The task is ours, so ``train`` and ``official`` are the same rule: the final answer names the ground-truth letter or
states its option text (the shared multiple-choice verdict of every letter benchmark).
"""

from __future__ import annotations

from reward_fns.extract import extract_final
from reward_fns.verdict import RecordError, Verdict, gt_letters, letter_verdict


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    gold = gt_letters(gt)
    n = len(info.choices)
    if gold is None or len(gold) != 1 or n < 2 or ord(next(iter(gold))) - ord("A") >= n:
        raise RecordError(
            f"synthetic_shapes record id={info.id!r}: ground truth {gt!r} must be one letter within the {n} options "
            "of extra_info['choices']; regenerate the rows with python -m recipe_care.learn_demo.shapes_task"
        )
    return letter_verdict(extract_final(response).answer, gold, info.choices, n)
