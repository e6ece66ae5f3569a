"""MathVerse testmini (``mathverse_testmini``): all five problem versions (options may be only in the image).

Ground truth as published: a letter for multiple choice (dirty forms: ``(C)``, two letters ``C\\nD``, or the
option TEXT such as ``090^\\circ T`` / ``False``), free text for free-form (``$h=15$``, ``Area $=9 \\pi
\\mathrm{cm}^{2}$``, ``(-2,1]``, bearings ``315^\\circT``, sentences). ``question_type`` may use MathVerse's hyphen.
Options come from ``choices`` or, when that is empty, from the ``Choices:`` block of ``question``.

train:
  * multi_choice: the answer must name exactly the ground-truth letter(s) or state the option text.
  * free_form: the answer must equal one ground-truth alias by math equivalence or exact text: the cleaned answer,
    its value after a label (``h=15`` → ``15``, ``5=s`` → ``5``, ``Perimeter =74 \\mathrm{~mm}`` → ``74``), the
    value without a LaTeX unit (``9 \\pi``), and for true bearings ``315°T`` also ``315°``. Sentences and
    compass bearings (``S 23.5° W``) only match as text (whitespace/case-insensitive).
official: MathVerse's official judge is GPT-4 (extraction + judgement; its only rule-based option, quick_match, is
  exact string equality). Here: the final answer is also taken from prose ("the answer is X", the last line) and
  judged with the train rule — the stand-in for the judge — and no format is required.
"""

from __future__ import annotations

import re

from reward_fns.choice import LETTERS, match_option_text, options_from_text
from reward_fns.extract import MAX_ANSWER_CHARS, extract_final
from reward_fns.mathcheck import math_equal
from reward_fns.normalize import (
    clean_answer,
    clean_ground_truth,
    fix_unicode,
    squash,
    unwrap_text,
)
from reward_fns.verdict import Verdict, gt_letters, letter_verdict, short

_LABEL_RE = re.compile(r"^\s*(?:\\text\s*\{[^{}]*\}|[A-Za-z][A-Za-z ]{0,30}|[A-Za-z]_\{?\w+\}?)\s*=\s*(.+)$", re.DOTALL)
_REVERSED_RE = re.compile(r"^\s*(.+?)\s*=\s*[A-Za-z]\s*$", re.DOTALL)
_LATEX_UNIT_RE = re.compile(r"\s*\\(?:mathrm|text|mbox)\s*\{\s*~?\s*[A-Za-z ]+\}(?:\s*\^\s*\{?\d\}?)?\s*$")
_BEARING_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*\^\s*\{?\\circ\}?\s*T$")


def value_aliases(text: str) -> list[str]:
    """The ways a free-form value may be stated: as is, after a label, without a trailing LaTeX unit."""
    base = clean_answer(fix_unicode(text))
    out = [base]
    m = _LABEL_RE.match(base)
    if m and "=" not in m.group(1):
        out.append(m.group(1).strip())
    else:
        r = _REVERSED_RE.match(base)
        if r and "=" not in r.group(1):
            out.append(r.group(1).strip())
    for item in list(out):
        stripped = _LATEX_UNIT_RE.sub("", item).strip()
        if stripped and stripped != item:
            out.append(stripped)
    for item in list(out):
        b = _BEARING_RE.match(item.replace(" ", ""))
        if b:
            out.extend([b.group(1) + "^\\circ", b.group(1)])
    return list(dict.fromkeys(x for x in out if x))


def _free_form(answer: str, gt: str) -> Verdict:
    golds = value_aliases(clean_ground_truth(gt))
    preds = value_aliases(answer)
    pred = short(preds[-1] if len(preds) > 1 else preds[0])
    gold_keys = {squash(g) for g in golds}
    if any(squash(p) in gold_keys for p in preds):  # cheap exact-text pass before any sympy work
        return Verdict(True, True, pred)
    return Verdict(any(math_equal(p, g) for g in golds for p in preds), True, pred)


def _gold_letters(gt: str, choices) -> frozenset[str] | None:
    letters = gt_letters(gt)
    if letters is not None:
        return letters
    hits = match_option_text(gt, choices)  # dirty GT: the option text instead of its letter
    return frozenset(LETTERS[i] for i in hits) if hits else None


def _is_multi_choice(gt: str, info, choices) -> bool:
    if info.question_type:
        return info.question_type == "multi_choice"
    return bool(choices) or (not info.question.strip() and gt_letters(gt) is not None and len(gt.strip()) <= 3)


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    answer = extract_final(response, prose=(mode == "official")).answer
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    choices = info.choices or tuple(options_from_text(info.question))
    if not _is_multi_choice(gt, info, choices):
        return _free_form(answer, gt)
    gold = _gold_letters(gt, choices)
    if gold is None:  # option text GT but no option list: compare texts
        return Verdict(squash(unwrap_text(answer)) == squash(unwrap_text(gt)), True, short(answer))
    return letter_verdict(answer, gold, choices, len(choices) or 6)  # A-F when the options are only in the image
