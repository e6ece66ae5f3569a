"""Geometry3K (``hiyouga/geometry3k``): free-form values such as ``3`` or ``2 \\sqrt { 221 }``.

train:    the tolerant final answer (``\\boxed{}`` in ``<answer>``, ``Answer:`` line, ``<answer>`` text) is compared
          to the ground truth by math equivalence (exact → numeric → math-verify → mathruler).
official: verl's / EasyR1's own Geometry3K rule: ``mathruler.grade_answer`` on the content of the last
          ``\\boxed{}`` of the whole response (mathruler's ``extract_boxed_content``); no box → wrong.
"""

from __future__ import annotations

from mathruler.grader import extract_boxed_content

from reward_fns.extract import MAX_ANSWER_CHARS, extract_final
from reward_fns.mathcheck import MAX_MATH_CHARS, grade_answer_guarded, math_equal
from reward_fns.normalize import clean_ground_truth, squash
from reward_fns.verdict import Verdict, short


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    gold = clean_ground_truth(gt)
    if mode == "official":
        content = extract_boxed_content(response) if "\\boxed{" in response else "None"
        if content == "None":
            return Verdict.none()
        if len(content) > MAX_MATH_CHARS:
            return Verdict(squash(content) == squash(gold), True, short(content))
        return Verdict(grade_answer_guarded(content, gold), True, short(content))
    answer = extract_final(response).answer
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    return Verdict(math_equal(answer, gold), True, short(answer))
