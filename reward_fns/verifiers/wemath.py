"""We-Math testmini (``wemath_testmini``): multiple choice, ground truth one letter (A–G).

Options come from ``choices`` or, when empty, from the ``A. …;B. …`` option string inside ``question`` (separators
vary: ``;``, ``; ``, runs of spaces, even a missing one). Option texts may themselves be letters
(``A. E;B. I;C. C``): a bare letter is read as a letter when it is in range, as option text otherwise.

train:    the answer names the ground-truth letter or states its option text.
official: exactly We-Math's rule (``evaluation/four_dimensional_metrics.py``, ``load_and_process_data``):
          ``response.split('Answer')[-1].strip()``, every ``>``, ``<``, ``:``, ``.`` removed, stripped; the first
          character, if it is one of ``ABCDEFGH``, is the prediction, which must equal the published answer. Nothing
          else is read: the match on ``Answer`` is case-sensitive, so a response in this recipe's training format
          (``<answer>B</answer>``, ``\\boxed{B}``) without an ``Answer`` line scores 0, as it would officially (the
          official prompt asks for ``<Answer>: <<your option>>``). The 4-D metrics (IK/IG/CM/RM, Score Strict/Loose)
          are aggregates over ``ID``/``key`` groups, not per response.
"""

from __future__ import annotations

import re

from reward_fns.choice import options_from_text
from reward_fns.extract import extract_final
from reward_fns.verdict import RecordError, Verdict, gt_letters, letter_verdict


def official_letter(response: str) -> str | None:
    """The official prediction: ``str.split('Answer')[-1].strip()``, then ``str.replace(r'[>><<:.]', '', regex=True)
    .strip()``, then ``x[0] if x and x[0] in 'ABCDEFGH' else None``.

    >>> official_letter("<Thought process>: … <Answer>: <<C>>"), official_letter("answer: C"), official_letter("")
    ('C', None, None)
    """
    pred = response.split("Answer")[-1].strip()
    pred = re.sub(r"[>><<:.]", "", pred).strip()
    return pred[0] if pred and pred[0] in "ABCDEFGH" else None


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    gold = gt_letters(gt)
    if gold is None or len(gold) != 1:
        raise RecordError(
            f"ground truth {gt!r} of We-Math record id={info.id!r} is not one option letter; write the published "
            "'answer' field unchanged in data prep"
        )
    if mode == "official":
        letter = official_letter(response)
        return Verdict(letter is not None and letter == gt, letter is not None, letter or "")
    choices = info.choices or tuple(options_from_text(info.question))
    return letter_verdict(extract_final(response).answer, gold, choices, len(choices) or 8)  # official range A-H
