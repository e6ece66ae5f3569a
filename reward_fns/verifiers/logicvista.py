"""LogicVista test (``logicvista_test``): letters described only in the question/image.

Ground truth as published: one letter (``C``), a letter set (``A, C``: all must be named, no more), or a digit
(``3``, "select from 1-5"). An empty ground truth (record ``v1_382``) is a data error: data prep must drop it.

train:    the final answer's letters (``A, C`` / ``AC`` / ``A and C`` / ``(A) (C)`` / ``Option B``) must equal the
          ground-truth set; digit answers are compared as integers.
official: LogicVista's judge is an LLM that extracts the chosen letters, then
          ``sorted(lower(letters)) == sorted(lower(answer.split(", ")))``. Here the letters are extracted by rule,
          also from prose ("the answer is X", the last line), and compared the same way (no format needed).
"""

from __future__ import annotations

import re

from reward_fns.choice import parse_letter_set, unwrap_choice
from reward_fns.extract import MAX_ANSWER_CHARS, extract_final
from reward_fns.verdict import RecordError, Verdict, gt_letters, short

_DIGIT_RE = re.compile(r"(?i)(?:(?:option|choice|answer|figure|number)\s*(?:is\s*)?[:：]?\s*)?[\(\[]?(\d{1,2})[\)\]]?")


def _digits(answer: str) -> frozenset[str] | None:
    text = unwrap_choice(answer)
    parts = [p for p in re.split(r"\s*(?:,|;|\band\b|&)\s*", text) if p]
    found = []
    for part in parts:
        m = _DIGIT_RE.fullmatch(part.strip())
        if not m:
            return None
        found.append(str(int(m.group(1))))
    return frozenset(found) if found else None


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    text = gt.strip()
    if re.fullmatch(r"\d+(?:\s*,\s*\d+)*", text):
        gold = frozenset(str(int(x)) for x in re.findall(r"\d+", text))
        digits = True
    else:
        letters = gt_letters(text)
        if letters is None:
            raise RecordError(
                f"ground truth {gt!r} of LogicVista record id={info.id!r} is neither letters ('C', 'A, C') nor a "
                "digit; write the published 'answer' unchanged and drop records with an empty answer in data prep"
            )
        gold, digits = letters, False
    answer = extract_final(response, prose=(mode == "official")).answer
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    named = _digits(answer) if digits else parse_letter_set(answer, 26)
    if named is None:
        return Verdict(False, True, short(answer))
    return Verdict(named == gold, True, ",".join(sorted(named)))
