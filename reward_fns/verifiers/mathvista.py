"""MathVista testmini (``mathvista_testmini``).

Ground truth as published: for multiple choice the option TEXT (e.g. ``145°``), else a value; ``answer_type`` is
MathVista's own (``text`` / ``integer`` / ``float`` / ``list``), ``precision`` the decimals of floats, ``unit`` the
unit (``g``) that may follow a value.

train (strict, for rewards):
  * multi_choice: the answer names a letter (``B``, ``(B) 145°``) or states an option text; the chosen option's
    text is compared with the ground-truth text, so duplicate options (pid 781: ``['9','12','18','18']``) are
    right under either letter. No nearest-option fallback: garbage is wrong.
  * integer: numeric equality (``1,000``, ``1000 g`` with unit ``g``, ``\\frac{2000}{2}`` all equal 1000).
  * float: ``round(x, precision) == answer`` (``1.20`` → 1.2); non-decimal forms go through math equivalence.
  * list: element-wise numeric equality, brackets optional (``2014, 2016`` = ``[2014, 2016]``).
official: MathVista's own pipeline where it is code, a rule stand-in where it is GPT-4:
  * ``extract_answer.py``'s shortcuts exactly: a response equal to a choice is the extraction; a response that
    parses as the required ``int`` / ``float`` is too; ``The answer is "X".`` gives X;
  * the GPT-4 extraction otherwise: ``_gpt_standin`` with ``reward_fns.freeform`` (a letter or option text for
    multiple choice, the stated number for integer/float; see docs/verifiers.md);
  * ``calculate_score.py``'s ``normalize_extracted_answer`` exactly: ``(b)`` → B, letter → option text, anything
    else → the option with the smallest Levenshtein distance (so every MC response maps to some option), integers
    ``str(int(float(x)))``, floats ``str(round(float(x), precision))``, lists as strings; then string equality.
"""

from __future__ import annotations

import re

from reward_fns import freeform
from reward_fns.choice import (
    LETTERS,
    match_option_text,
    options_from_text,
    parse_letter,
    unwrap_choice,
)
from reward_fns.extract import MAX_ANSWER_CHARS, extract_final
from reward_fns.mathcheck import math_equal
from reward_fns.normalize import (
    format_number,
    numbers_close,
    parse_number_list,
    squash,
    to_decimal,
)
from reward_fns.verdict import RecordError, Verdict, short


def _qtype(gt: str, info, choices) -> str:
    if info.question_type:
        return info.question_type
    return "multi_choice" if choices else "free_form"


def _atype(gt: str, info) -> str:
    if info.answer_type in ("integer", "float", "list", "text"):
        return info.answer_type
    if re.fullmatch(r"-?\d+", gt.strip()):
        return "integer"
    if re.fullmatch(r"-?\d*\.\d+", gt.strip()):
        return "float"
    if gt.strip().startswith("["):
        return "list"
    return "text"


def _decimals(gt: str, info) -> int:
    if info.precision >= 0:
        return info.precision
    frac = gt.strip().partition(".")[2]
    return len(frac) if frac.isdigit() else 0


def _check_choices(gt: str, info, choices) -> None:
    if choices and _qtype(gt, info, choices) == "multi_choice" and not any(c.strip() == gt.strip() for c in choices):
        raise RecordError(
            f"MathVista record id={info.id!r}: the multiple-choice answer {gt!r} is not one of its choices "
            f"{list(choices)!r}; data prep must pass the published 'answer' (the option text) and 'choices' unchanged"
        )


def _train(response: str, gt: str, info) -> Verdict:
    answer = extract_final(response).answer
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    choices = info.choices or tuple(options_from_text(info.question))
    if _qtype(gt, info, choices) == "multi_choice":
        if not choices:  # no option list: compare the stated text itself
            return Verdict(squash(answer) == squash(gt) or math_equal(answer, gt), True, short(answer))
        letter = parse_letter(answer, len(choices))
        picked = [LETTERS.index(letter)] if letter else match_option_text(answer, choices)
        if not picked:
            return Verdict(False, True, short(answer))
        right = [i for i in picked if choices[i].strip() == gt.strip()]
        return Verdict(bool(right), True, choices[(right or picked)[0]].strip())
    atype = _atype(gt, info)
    if atype == "list":
        pred, gold = parse_number_list(answer), parse_number_list(gt)
        if pred is None or gold is None:
            return Verdict(squash(answer) == squash(gt), True, short(answer))
        ok = len(pred) == len(gold) and all(numbers_close(a, b) for a, b in zip(pred, gold))
        return Verdict(ok, True, "[" + ", ".join(format_number(v) for v in pred) + "]")
    value, gold_value = to_decimal(answer, info.unit), to_decimal(gt, info.unit)
    if value is not None and gold_value is not None:
        if atype == "float":  # MathVista's own rounding: Python round() of the float value
            places = _decimals(gt, info)
            return Verdict(round(float(value), places) == round(float(gold_value), places), True, format_number(value))
        return Verdict(numbers_close(value, gold_value), True, format_number(value))
    return Verdict(math_equal(answer, gt, info.unit), True, short(answer))


# --- official ------------------------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert/delete/substitute, cost 1), as python-Levenshtein's ``distance`` that MathVista uses.

    Myers' bit-parallel algorithm (Hyyrö's formulation): one pass over ``a`` with ``len(b)``-bit integers, so a
    1,000-character extraction against an option costs about a millisecond.

    >>> levenshtein("kitten", "sitting"), levenshtein("", "abc"), levenshtein("92.5", "97")
    (3, 3, 3)
    """
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full, top = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & full) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def _read_choice(response: str, choices, question: str) -> str:
    """What MathVista's GPT extractor returns for a multiple-choice response (``reward_fns.freeform`` reads it):

    Step 1: the model's own final-answer marker (box, ``Answer:`` line, ``<answer>``): a letter or an option text.
    Step 2: a letter the response names; also one beyond the options (GPT copies it, and ``_official_normalize``
    maps it to the Levenshtein-nearest option, as officially).
    Step 3: the option whose text the response states (after an answer marker first), or, for a yes/no question, a
    statement that repeats the question (negated → "no").
    Step 4: nothing stated: the final statement, as GPT typically copies it; the normalisation maps it to the
    nearest option."""
    n = len(choices)
    final = extract_final(response).answer  # a box / "Answer: X" line / <answer> span: the model's own marker
    if final is not None and len(final) <= MAX_ANSWER_CHARS:
        letter = parse_letter(final, n)
        if letter is not None:
            return letter
        index = freeform.stated_option(final, choices)
        if index is not None:
            return choices[index]
    letters = freeform.stated_letters(response, n)
    if letters is not None:
        return next(iter(letters.letters))
    beyond = freeform.stated_letters(response, 26, strong_only=True)  # "The correct option letter is D." (2 options)
    if beyond is not None:
        return next(iter(beyond.letters))
    tail = freeform.answer_tail(response)
    index = freeform.stated_option(tail, choices) if tail else None
    if index is None:
        index = freeform.stated_option(response, choices)
    if index is None:
        index = freeform.yes_no_statement(response, question, choices)
    if index is not None:
        return choices[index]
    found = extract_final(freeform.clean_response(response), prose=True).answer  # GPT copies the final statement
    return "" if found is None else unwrap_choice(found)[:MAX_ANSWER_CHARS]


def _gpt_standin(response: str, info, qtype: str, atype: str, choices) -> str:
    """What MathVista's GPT extractor would return, approximated by rules (units/markup stripped)."""
    if qtype == "multi_choice":
        return _read_choice(response, choices, info.question)
    if atype in ("integer", "float"):
        final = extract_final(response).answer
        for text in ([final] if final is not None else []) + [response]:
            value = freeform.stated_number(text, info.unit)
            if value is not None:
                return value
        return ""
    found = extract_final(freeform.clean_response(response), prose=True).answer
    if found is None:
        return ""
    text = unwrap_choice(found)[:MAX_ANSWER_CHARS]
    if atype == "list":
        values = parse_number_list(text)
        return "[" + ", ".join(format_number(v) for v in values) + "]" if values else text
    return text


def _official_extract(response: str, info, qtype: str, atype: str, choices) -> str:
    if not response.strip():
        return ""
    if qtype == "multi_choice" and response in choices:
        return response
    if atype == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if atype == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    quick = re.search(r'The answer is "(.*)"\.', response[-2000:])
    if quick:
        return quick.group(1)
    return _gpt_standin(response, info, qtype, atype, choices)


def _official_normalize(extraction: str, choices, qtype: str, atype: str, places: int) -> str | None:
    if qtype == "multi_choice":
        text = extraction.strip()
        letters = re.findall(r"\(([a-zA-Z])\)", text)
        if letters:
            text = letters[0].upper()
        options = [LETTERS[i] for i in range(min(len(choices), 26))]
        if text in options:
            return choices[options.index(text)]
        if not choices:
            return text
        distances = [levenshtein(text, c) for c in choices]
        return choices[distances.index(min(distances))]
    try:
        if atype == "integer":
            return str(int(float(extraction)))
        if atype == "float":
            return str(round(float(extraction), places))
    except (ValueError, OverflowError):
        return None
    return str(extraction)


def _official(response: str, gt: str, info) -> Verdict:
    choices = info.choices or tuple(options_from_text(info.question))
    qtype = _qtype(gt, info, choices)
    atype = _atype(gt, info) if qtype != "multi_choice" else "text"
    extraction = _official_extract(response, info, qtype, atype, choices)
    pred = _official_normalize(extraction, list(choices), qtype, atype, _decimals(gt, info))
    if pred is None:
        return Verdict(False, bool(extraction), short(extraction))
    return Verdict(pred == gt, bool(extraction), short(pred))


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    _check_choices(gt, info, info.choices)
    return _official(response, gt, info) if mode == "official" else _train(response, gt, info)
