"""LogicVista test (``logicvista_test``): letters described only in the question/image.

Ground truth as published: one letter (``C``), a letter set (``A, C``: all must be named, no more), or a digit
(``3``, "select from 1-5"). An empty ground truth (record ``v1_382``) is a data error: data prep must drop it.

train:    the final answer's letters (``A, C`` / ``AC`` / ``A and C`` / ``(A) (C)`` / ``Option B``) must equal the
          ground-truth set; digit answers are compared as integers.
official: LogicVista's ``eval/extract_accuracy.py``: the text after ``ASSISTANT:`` (when present) is the entry; an
          empty entry, or one character that is a letter outside a–e or neither letter nor digit, is no answer
          (exactly as officially); otherwise GPT-4 extracts the chosen letters ("first try to infer the answer
          based off the given choices"), then ``sorted(lower(letters)) == sorted(lower(answer.split(", ")))``.
          The GPT step is replaced by ``reward_fns.freeform``: the letters the response names (answer marker,
          whole response, leading label, a line of its own, ``Option B``; sets such as ``A and C``), else the
          option whose text it states (options parsed from the question's ``(A) … (B) …``), else no answer.
"""

from __future__ import annotations

import re

from reward_fns import freeform
from reward_fns.choice import LETTERS, parenthesised_options, parse_letter_set, unwrap_choice
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
    if mode == "official":
        return _official(response, gold, digits, info)
    answer = extract_final(response).answer
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    named = _digits(answer) if digits else parse_letter_set(answer, 26)
    if named is None:
        return Verdict(False, True, short(answer))
    return Verdict(named == gold, True, ",".join(sorted(named)))


def official_entry(response: str) -> str | None:
    """The official pre-GPT rules: the text after ``ASSISTANT:``; ``None`` when they score it as no answer."""
    entry = response.split("ASSISTANT:")[1] if "ASSISTANT:" in response else response
    stripped = entry.strip()
    if not stripped:
        return None
    if len(stripped) == 1 and (
        (stripped.isalpha() and stripped.lower() not in "abcde")
        or (not stripped.isalpha() and not stripped.isnumeric())
    ):
        return None
    return entry


def _official_letters(entry: str, options: list[str]) -> frozenset[str] | None:
    n = len(options) if len(options) >= 2 else 26  # options only in the image: any letter
    final = extract_final(entry).answer  # the model's own marker: \boxed{}, an "Answer:" line, <answer>
    if final is not None and len(final) <= MAX_ANSWER_CHARS:
        named = parse_letter_set(final, n)
        if named is not None:
            return named
        index = freeform.stated_option(final, options)
        if index is not None:
            return frozenset(LETTERS[index])
    found = freeform.stated_letters(entry, n, multi=True)
    if found is not None:
        return found.letters
    if freeform.dangling_answer(entry):
        return None
    tail = freeform.answer_tail(entry)
    index = freeform.stated_option(tail, options) if tail else None
    if index is None:
        index = freeform.stated_option(entry, options)
    return None if index is None else frozenset(LETTERS[index])


def _official(response: str, gold: frozenset[str], digits: bool, info) -> Verdict:
    entry = official_entry(response)
    if entry is None:
        return Verdict.none()
    if digits:
        tail = freeform.answer_tail(entry)
        named = _digits(tail) if tail else None
        named = named or _digits(freeform.clean_response(entry))
        if named is None:
            number = freeform.stated_number(entry)
            named = frozenset([str(int(float(number)))]) if number and float(number).is_integer() else None
    else:
        named = _official_letters(entry, info.choices and list(info.choices) or parenthesised_options(info.question))
    if named is None:
        return Verdict.none()
    return Verdict(named == gold, True, ",".join(sorted(named)))
