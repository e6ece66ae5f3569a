"""MATH-Vision (``mathvision_test`` / ``mathvision_testmini``).

Ground truth as published: a letter (A–E) when ``choices`` has the 5 options, else a free-form value, with known
dirt repaired here: trailing spaces (``11 ``), ``$…$``, an enclosing ``\\boxed{}``, a form feed eaten from
``\\frac`` (``\\x0crac{36}{13}``), unit words in braces (``69{degrees}``), and free-form items whose answer is a
letter (ids 59, 434: judged as letters A–E).

train:
  * multiple choice: the answer names the letter, or states the option (exactly, or math-equivalently: boxing
    ``\\frac{\\sqrt{3}}{3}`` for option ``$\\frac{\\sqrt{3}}{3}$``).
  * free-form: math equivalence with the cleaned ground truth (``7/3`` = ``\\frac{7}{3}``, ``45^2`` = ``2025``,
    ``8.0`` = ``8``); a ratio ``1:2`` also accepts ``\\frac{1}{2}``.
official (MATH-V ``evaluation/evaluate.py``): letter shortcuts (``… B.`` / ``(B)\\n…``), ``… is <number>``,
  "the answer is …" flags (first line/sentence after the flag) unless a ``\\boxed{`` is present, the LAST
  ``\\boxed{`` otherwise, then ``find_math_answer`` (lower-cased; RHS of ``=``/``\\approx``; ``\\text``, units, degrees,
  spaces removed; ``0.5`` → ``\\frac{1}{2}``; ``a/b`` → ``\\frac{a}{b}``) and ``is_equal`` against the answer or the
  answer's option text: exact string, tuples element-wise, else both values rounded to 2 decimals (so near misses
  such as ``0.333`` for ``1/3`` pass, as officially). Values come from math-verify/sympy instead of ``eval``. The
  ground-truth dirt is repaired in this mode too (the official script would mark those items wrong for everyone).
  A final answer in ``<answer>`` without a box is given to the parser as "The answer is X".
"""

from __future__ import annotations

import re

from reward_fns.choice import LETTERS
from reward_fns.extract import MAX_ANSWER_CHARS, extract_final
from reward_fns.mathcheck import math_equal, numeric_value
from reward_fns.normalize import clean_ground_truth
from reward_fns.verdict import RecordError, Verdict, gt_letters, letter_verdict, short


def _aliases(gold: str) -> list[str]:
    out = [gold]
    ratio = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", gold)
    if ratio:
        out.append(f"\\frac{{{ratio.group(1)}}}{{{ratio.group(2)}}}")
    return out


def _train(response: str, gold: str, info, letters) -> Verdict:
    answer = extract_final(response).answer
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    if letters is not None:
        return letter_verdict(answer, letters, info.choices, max(len(info.choices), 5))
    answer = clean_ground_truth(answer)  # the same dirt ($…$, units in braces) is harmless to drop from answers
    return Verdict(any(math_equal(answer, g) for g in _aliases(gold)), True, short(answer))


# --- official ------------------------------------------------------------------------------------------------

_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _fix_sqrt(text: str) -> str:
    parts = text.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += "\\sqrt{" + part[0] + "}" + part[1:] if part and part[0] != "{" else "\\sqrt" + part
    return out


def _fix_fracs(text: str) -> str:
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[:1] == "{" or len(part) < 2:
            out += part
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _fix_slash(text: str) -> str:
    if text.count("/") != 1:
        return text
    a, b = text.split("/")
    if re.fullmatch(r"-?\d+", a) and re.fullmatch(r"-?\d+", b) and text == f"{int(a)}/{int(b)}":
        return "\\frac{" + a + "}{" + b + "}"
    return text


def _strip_string(text: str) -> str:
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    text = text.split("\\text{ ")[0]
    text = text.replace("\\%", "").replace("%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    if len(text.split("=")) == 2:
        text = text.split("=")[-1]
    if len(text.split("\\approx")) == 2:
        text = text.split("\\approx")[-1]
    if "sqrt" in text:
        text = _fix_sqrt(text)
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_slash(text)


def find_math_answer(text: str) -> str:
    """MATH-V's answer normaliser (re-implemented)."""
    text = text.lower().replace("{}", "")
    start = text.find("oxed{")
    if start != -1 and "}" in text[start:]:
        ans = text[start + len("oxed{") : text.rfind("}")]  # greedy 'oxed{(.*)}' from the first box
    else:
        ans = text
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    ans = ans.replace(" ", "").replace("\\,", "").replace("∞", "\\infty").replace("+\\infty", "\\infty")
    ans = ans.replace("\\\\", "\\").replace("\n", "").replace("\\text", "").replace("\\mbox", "")
    ans = ans.replace("bmatrix", "pmatrix").replace("\\left", "").replace("\\right", "")
    ans = ans.replace("^{\\circ}", "").replace("^\\circ", "").replace("{m}^3", "").replace("m^3", "")
    ans = ans.replace("{units}", "").replace("units", "").replace("{km}", "").replace("km", "")
    return _strip_string(ans)


def _eval_tuple(text: str) -> str:
    items = text[1:-1].split(",")
    if len(text) < 2 or len(items) < 2 or (text[0], text[-1]) not in (("(", ")"), ("[", "]")):
        return text
    out = []
    for item in items:
        if "infty" in item or item in ("a", "-a"):
            out.append(item)
            continue
        value = numeric_value(item)
        if value is None:
            return text
        out.append(str(round(value, 2)))
    return text[0] + ",".join(out) + text[-1]


def official_is_equal(answer: str, gold: str) -> bool:
    answer, gold = answer.lower(), gold.lower()
    if not answer.replace(" ", "") or not gold.replace(" ", ""):
        return False
    if gold.strip() == answer.strip():
        return True
    answer, gold = _eval_tuple(answer), _eval_tuple(gold)
    if gold == answer:
        return True
    a, g = numeric_value(answer), numeric_value(gold)
    return a is not None and g is not None and round(a, 2) == round(g, 2)


def official_model_answer(response: str) -> str:
    text = response.strip()
    if "oxed{" not in text:
        found = extract_final(text)
        if found.answer is not None and found.how in ("answer_tag", "answer_line"):
            text = f"{text}\nThe answer is {found.answer}"
    text = text[-20000:]  # the official rules only look at the end of a response
    for c in "ABCDE":
        if (
            text.endswith(f" {c}.")
            or text.endswith(f" ({c}).")
            or text.startswith(f"{c}\n")
            or text.startswith(f"({c})\n")
            or text.startswith(f"({c}) {c}\n")
        ):
            text = c
    tail = text.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        text = tail
    if "oxed{" not in text:
        for flag in _FLAGS:
            for variant in (flag, flag.replace("the", "The")):
                raw = text
                text = text.split(variant)[-1].strip()
                if variant in raw:
                    text = text.split("\n")[0].split(". ")[0]
    elif text.count("oxed{") > 1:
        text = "\\boxed{" + text.split("oxed{")[-1]
    text = find_math_answer(text)
    for c in "abcde":
        text = text.replace(f"({c})", c).replace("{" + c + "}", c)
    return text.rstrip(".").lstrip(":").strip()


def _official(response: str, gold: str, info, letters) -> Verdict:
    model_answer = official_model_answer(response)
    gold_value = ""
    if info.choices and letters is not None and len(letters) == 1:
        gold_value = info.choices[LETTERS.index(next(iter(letters)))]
    correct = official_is_equal(model_answer, gold) or (bool(gold_value) and official_is_equal(model_answer, gold_value))
    return Verdict(correct, bool(model_answer), short(model_answer))


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    gold = clean_ground_truth(gt)
    letters = None
    if info.choices:
        letters = gt_letters(gold, len(info.choices))
        if letters is None or len(letters) != 1:
            raise RecordError(
                f"ground truth {gt!r} of MATH-Vision record id={info.id!r} has {len(info.choices)} choices but is "
                "not one of their letters; write the published 'answer' (a letter) and all 'options' in data prep"
            )
    elif re.fullmatch(r"[A-E]", gold):
        letters = frozenset(gold)  # free-form item whose published answer is a letter (ids 59, 434)
    if mode == "official":
        return _official(response, gold, info, letters)
    return _train(response, gold, info, letters)
