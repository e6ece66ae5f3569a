"""MMMU-Pro, ``standard (10 options)`` (``mmmu_pro_standard10``) and ``vision`` (``mmmu_pro_vision``).

Ground truth: one letter (A–L: up to 12 options). ``choices``: the option texts (``options`` parsed with
``ast.literal_eval``, a single nested list flattened); the letter range comes from it (A–J when it is empty).

train:    the tolerant final answer names the letter (``B``, ``(B)``, ``B. text``, ``Option B``) or states an
          option's text; it must be the ground-truth letter. No answer → wrong (never a random guess).
official: MMMU-Pro's ``parse_multi_choice_response`` on the whole response: a unique option letter after the last
          ``Answer:``; else ``(X)``, then ``X ``, then ``X.`` anywhere (the last one when several); else (responses
          longer than 5 words) option texts contained in the response; else a random letter — seeded here by the
          record id and the response so the verdict is reproducible (``extracted`` is 0 for a random pick). A final
          answer in this recipe's format (``<answer>``/``\\boxed{}``) is given to the parser as its ``Answer:`` line.
"""

from __future__ import annotations

import random
import zlib

from reward_fns.choice import LETTERS
from reward_fns.extract import extract_final
from reward_fns.verdict import RecordError, Verdict, gt_letters, letter_verdict


def _letter_count(gt: frozenset[str], info) -> int:
    if info.choices:
        return len(info.choices)
    return max(10, 1 + max(LETTERS.index(x) for x in gt))


def with_answer_line(response: str, marker: str = "Answer:") -> str:
    """Give an official "Answer: X" parser this recipe's final answer (``\\boxed{}`` / ``<answer>``) as X."""
    found = extract_final(response)
    if found.answer is not None and found.how != "answer_line":
        return f"{response}\n{marker} {found.answer}"
    return response


def official_parse(response: str, all_choices: list[str], index2ans: dict[str, str], seed: str) -> tuple[str, bool]:
    """MMMU-Pro's parser (re-implemented). Returns (letter, found) — ``found`` False means a random guess."""
    pos = response.rfind("Answer:")
    if pos != -1:
        tail = response[pos + len("Answer:") :].strip()
        unique = [c for c in all_choices if c in tail]
        if len(unique) == 1:
            return unique[0], True
    for ch in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(ch)
    padded = " " + response + " "
    candidates = [c for c in all_choices if f"({c})" in padded]
    bracketed = bool(candidates)
    if not candidates:
        candidates = [c for c in all_choices if f"{c} " in padded]
    if not candidates:
        candidates = [c for c in all_choices if f"{c}." in padded]
    by_text = False
    if not candidates and len(padded.split()) > 5:
        lowered = padded.lower()
        candidates = [c for c, text in index2ans.items() if text.lower() in lowered]
        by_text = bool(candidates)
    if not candidates:
        rng = random.Random(zlib.crc32(seed.encode("utf-8", "replace")))
        return rng.choice(all_choices), False
    if len(candidates) == 1:
        return candidates[0], True
    if by_text:
        lowered = padded.lower()
        positions = [lowered.rfind(index2ans[c].lower()) for c in candidates]
    elif bracketed:
        positions = [padded.rfind(f"({c})") for c in candidates]
    else:
        positions = [padded.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))], True


def gold_letter(gt: str, info) -> frozenset[str]:
    gold = gt_letters(gt)
    if gold is None or len(gold) != 1:
        raise RecordError(
            f"ground truth {gt!r} of MMMU-Pro record id={info.id!r} is not one option letter; MMMU-Pro "
            "answers are letters A-L — write the published 'answer' field unchanged in data prep"
        )
    if info.choices and LETTERS.index(next(iter(gold))) >= len(info.choices):
        raise RecordError(
            f"ground truth {gt!r} of MMMU-Pro record id={info.id!r} is beyond its {len(info.choices)} "
            "choices; data prep must pass all options (flatten a single nested options list)"
        )
    return gold


def verify(response: str, gt: str, info, mode: str) -> Verdict:
    gold = gold_letter(gt, info)
    n = _letter_count(gold, info)
    if mode == "official":
        all_choices = [LETTERS[i] for i in range(min(n, 26))]
        index2ans = {LETTERS[i]: text for i, text in enumerate(info.choices[:26])}
        # The official script crashes on options that are not strings; ours are strings already.
        letter, found = official_parse(with_answer_line(response), all_choices, index2ans, f"{info.id}\x00{response}")
        return Verdict(letter in gold, found, letter)
    return letter_verdict(extract_final(response).answer, gold, info.choices, n)
