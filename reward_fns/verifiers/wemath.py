"""We-Math testmini (``wemath_testmini``): multiple choice, ground truth one letter (A–G).

Options come from ``choices`` or, when empty, from the ``A. …;B. …`` option string inside ``question`` (separators
vary: ``;``, ``; ``, runs of spaces, even a missing one). Option texts may themselves be letters
(``A. E;B. I;C. C``): a bare letter is read as a letter when it is in range, as option text otherwise.

train:    the answer names the ground-truth letter or states its option text.
official: We-Math's rule (``evaluation/four_dimensional_metrics.py``): the text after the last ``Answer``, with
          ``> < : .`` removed, must start with the ground-truth letter (letters A–H only). A final answer in this
          recipe's format (``<answer>``/``\\boxed{}``) is given to the rule as its ``Answer: X`` line. The 4-D
          metrics (IK/IG/CM/RM, Score Strict/Loose) are aggregates over ``ID``/``key`` groups, not per response.
"""

from __future__ import annotations

import re

from reward_fns.choice import options_from_text
from reward_fns.extract import extract_final
from reward_fns.verdict import RecordError, Verdict, gt_letters, letter_verdict
from reward_fns.verifiers.mmmu_pro import with_answer_line


def official_letter(response: str) -> str | None:
    pred = response.split("Answer")[-1].strip()
    pred = re.sub(r"[><:.]", "", pred).strip()
    return pred[0] if pred and pred[0] in "ABCDEFGH" else None


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    gold = gt_letters(gt)
    if gold is None or len(gold) != 1:
        raise RecordError(
            f"ground truth {gt!r} of We-Math record id={info.id!r} is not one option letter; write the published "
            "'answer' field unchanged in data prep"
        )
    if mode == "official":
        letter = official_letter(with_answer_line(response))
        return Verdict(letter is not None and letter in gold, letter is not None, letter or "")
    choices = info.choices or tuple(options_from_text(info.question))
    return letter_verdict(extract_final(response).answer, gold, choices, len(choices) or 8)  # official range A-H
