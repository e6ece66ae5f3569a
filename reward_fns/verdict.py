"""What a verifier returns, the result dict built from it, and the shared multiple-choice verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reward_fns.choice import LETTERS, match_option_text, parse_letter, parse_letter_set
from reward_fns.extract import MAX_ANSWER_CHARS
from reward_fns.normalize import clean_answer

# Keys (and value types) of every result, for every sample of every data source.
RESULT_KEYS: tuple[str, ...] = ("score", "acc", "format", "extracted", "pred")
MAX_PRED_CHARS = 200


class RecordError(ValueError):
    """Bad benchmark data (ground truth / extra_info), as opposed to bad model output. Always raised."""


@dataclass(frozen=True)
class Verdict:
    acc: bool
    extracted: bool
    pred: str

    @staticmethod
    def none() -> Verdict:
        return Verdict(False, False, "")


def short(text: str) -> str:
    """A prediction string for logging / maj@N: cleaned and capped."""
    return clean_answer(text)[:MAX_PRED_CHARS]


def build_result(verdict: Verdict, fmt: bool, format_weight: float) -> dict:
    acc = 1.0 if verdict.acc else 0.0
    fmt_f = 1.0 if fmt else 0.0
    score = acc if format_weight == 0.0 else (1.0 - format_weight) * acc + format_weight * fmt_f
    return {
        "score": float(score),
        "acc": acc,
        "format": fmt_f,
        "extracted": 1.0 if verdict.extracted else 0.0,
        "pred": str(verdict.pred)[:MAX_PRED_CHARS],
    }


def where(info, data_source: str) -> str:
    rid = f"id={info.id!r}" if info.id else "id unknown (extra_info['id'] missing)"
    return f"record {rid} of data_source {data_source!r}"


def gt_letters(gt: str, n_max: int = 26) -> frozenset[str] | None:
    """A ground truth that is a letter or letter list (``B``, ``(C)``, ``A, C``, ``C\\nD``) → its letters."""
    text = gt.strip()
    if not text or len(text) > 40:
        return None
    if not re.fullmatch(r"[\(\[]?[A-Z][\)\]]?(?:(?:\s*[,;/&]\s*|\s+and\s+|\s+)[\(\[]?[A-Z][\)\]]?)*\.?", text):
        return None
    letters = frozenset(re.findall(r"[A-Z]", text))
    return letters if all(LETTERS.index(x) < n_max for x in letters) else None


def letter_verdict(
    answer: str | None, gold: frozenset[str], choices: tuple[str, ...] | list[str], n_options: int
) -> Verdict:
    """Verdict for a letter ground truth (one letter, or a set that must be named exactly).

    The answer may name the letter(s) (``B``, ``(B) 12``, ``Option B``, ``A, C``) or state an option's text
    (matched exactly after normalisation, unit-less, or math-equivalent; duplicate option texts all count).
    """
    if answer is None:
        return Verdict.none()
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, True, short(answer))
    n = max(n_options, 1 + max(LETTERS.index(x) for x in gold))
    if len(gold) > 1:
        named = parse_letter_set(answer, n)
        if named is None:
            hits = match_option_text(answer, choices)
            named = frozenset(LETTERS[i] for i in hits[:1]) if hits else None
        if named is None:
            return Verdict(False, True, short(answer))
        return Verdict(named == gold, True, ",".join(sorted(named)))
    letter = parse_letter(answer, n)
    if letter is not None:
        return Verdict(letter in gold, True, letter)
    hits = match_option_text(answer, choices)
    if hits:
        named_letters = [LETTERS[i] for i in hits]
        correct = [x for x in named_letters if x in gold]
        return Verdict(bool(correct), True, correct[0] if correct else named_letters[0])
    return Verdict(False, True, short(answer))
