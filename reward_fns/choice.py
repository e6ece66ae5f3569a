"""Multiple-choice helpers: letter parsing, letter sets, option-text matching, option lists inside question text."""

from __future__ import annotations

import re
import string

from reward_fns.mathcheck import math_equal
from reward_fns.normalize import clean_answer, squash, strip_units, unwrap_text

LETTERS = string.ascii_uppercase

_SINGLE_RE = re.compile(r"[\(\[\{]?\s*([A-Za-z])\s*[\)\]\}]?[.:：)]?")
_LABELLED_RE = re.compile(r"[\(\[]?([A-Z])[\)\]]?\s*[.:：)\]]\s*\S")
_PAREN_LABEL_RE = re.compile(r"\(([A-Za-z])\)\s*\S")
_KEYWORD_RE = re.compile(
    r"(?i:option|choice|answer)s?(?i:\s+is|\s+should\s+be)?\s*[:：]?\s*(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z]))"
    r"(?![A-Za-z0-9])"
)
# One letter, then (separator, letter)*; the separators are unambiguous so matching stays linear
# (the input has its whitespace collapsed by clean_answer).
_LETTER = r"[\(\[]?[A-Za-z][\)\]]?"
_LETTER_LIST_RE = re.compile(_LETTER + r"(?:(?:\s*[,;/&、]\s*|\s+and\s+|\s+)" + _LETTER + r")*")
_LETTER_TOKEN_RE = re.compile(r"[A-Za-z]+")
_HEADER_RE = re.compile(r"(?i)\b(?:choices|choice|options|option)\s*[:：]")


def unwrap_choice(text: str) -> str:
    """Strip LaTeX/markdown decoration around a choice answer: ``$\\text{(B)}$.`` → ``(B)``."""
    text = unwrap_text(clean_answer(text))
    text = text.strip().strip("*_`'\"“”‘’").strip()
    return text.rstrip(".:;,!").strip()


def parse_letter(answer: str | None, n_options: int) -> str | None:
    """The option letter an extracted answer names (``B``, ``(b)``, ``B. 12``, ``Option B``), or ``None``.

    Lower-case letters count only when the whole answer is that letter (or it is parenthesised).
    """
    if not answer or n_options <= 0:
        return None
    text = unwrap_choice(answer)
    if not text or len(text) > 300:
        return None
    valid = LETTERS[: min(n_options, 26)]
    m = _SINGLE_RE.fullmatch(text)
    if m:
        letter = m.group(1).upper()
        return letter if letter in valid else None
    m = _LABELLED_RE.match(text) or _PAREN_LABEL_RE.match(text)
    if m:
        letter = m.group(1).upper()
        return letter if letter in valid else None
    hits = [next(g for g in k.groups() if g) for k in _KEYWORD_RE.finditer(text)]
    if hits:
        letter = hits[-1].upper()
        return letter if letter in valid else None
    return None


def parse_letter_set(answer: str | None, n_options: int = 26) -> frozenset[str] | None:
    """Letters of a multi-answer (``A, C`` / ``AC`` / ``A and C`` / ``(A) (C)``), or ``None`` if not a letter list."""
    if not answer:
        return None
    text = unwrap_choice(answer)
    if not text or len(text) > 200:
        return None
    valid = LETTERS[: min(n_options, 26)]
    letters: list[str] | None = None
    if _LETTER_LIST_RE.fullmatch(text):
        tokens = [t for t in _LETTER_TOKEN_RE.findall(text) if t.lower() != "and"]
        if all(len(t) == 1 for t in tokens):
            # mixed case like "a, B" is odd but harmless; all-lower lists are letters only when the whole span is
            letters = [t.upper() for t in tokens]
    elif re.fullmatch(r"[A-Z]{2,6}", text) and len(set(text)) == len(text):
        letters = list(text)
    if letters is None:
        single = parse_letter(text, n_options)
        letters = [single] if single else None
    if not letters or any(x not in valid for x in letters):
        return None
    return frozenset(letters)


def _option_key(text: str) -> str:
    return squash(text).rstrip(".")


def _core_key(text: str) -> str:
    """A numeric option without its trailing unit word (``20海里`` → ``20``, ``145°`` → ``145``, ``1000 g`` →
    ``1000``); ``""`` when the text is not a number/expression followed by a unit."""
    core = strip_units(clean_answer(text))
    core = re.sub(r"[^\x00-\x7f]+$", "", core).strip()  # trailing CJK/other unit words
    core = re.sub(r"(?<=[\d}])\s*[A-Za-z]{1,6}\.?$", "", core).strip()  # trailing ASCII unit word after a value
    if not core or not any(ch.isdigit() for ch in core) or re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", core)):
        return ""
    return squash(core)


def match_option_text(answer: str | None, choices: tuple[str, ...] | list[str], *, math: bool = True) -> list[int]:
    """Indices of the options whose text the answer states (exact after normalisation, then unit-less, then — with
    ``math`` — math-equivalent for short mathematical options). Returns ``[]`` when nothing or an ambiguous set
    matches."""
    if not answer or not choices:
        return []
    text = unwrap_choice(answer)
    if not text or len(text) > 500:
        return []
    key = _option_key(text)
    hits = [i for i, c in enumerate(choices) if c.strip() and _option_key(c) == key]
    if hits:
        return hits
    core = _core_key(text)
    if core:
        hits = [i for i, c in enumerate(choices) if c.strip() and _core_key(c) == core]
        if hits and len({_option_key(choices[i]) for i in hits}) == 1:
            return hits
    if math and len(text) <= 80 and any(ch.isdigit() or ch == "\\" for ch in text):
        hits = [
            i
            for i, c in enumerate(choices)
            if c.strip() and len(c) <= 80 and any(ch.isdigit() or ch == "\\" for ch in c) and math_equal(text, c)
        ]
        if hits and len({_option_key(choices[i]) for i in hits}) == 1:
            return hits
    return []


def options_from_text(text: str) -> list[str]:
    """Option texts listed inside a question (``Choices:\\nA:40°\\nB:60°`` or ``A. 300;B. 400; C. …``).

    Labels must run A, B, C, … in order; the first at a line start or right after a ``Choices:`` header, the
    others after a newline, ``;`` or a space. Each option ends at the next label or the end of its line.
    Returns ``[]`` unless at least two options are found.
    """
    if not text or len(text) > 20000:
        return []
    headers = list(_HEADER_RE.finditer(text))
    start = headers[-1].end() if headers else 0
    seg = text[start:]
    first = re.compile(r"(?:^|\n)[ \t]*\(?A\)?[ \t]*[.:：)]" if not headers else r"^\s*\(?A\)?[ \t]*[.:：)]")
    m = first.search(seg)
    if not m:
        return []
    bounds = [(m.start(), m.end())]
    pos = m.end()
    for letter in LETTERS[1:]:
        nxt = re.compile(r"(?:\n|;|\s)[ \t]*\(?" + letter + r"\)?[ \t]*[.:：)]").search(seg, pos)
        if not nxt:
            break
        bounds.append((nxt.start(), nxt.end()))
        pos = nxt.end()
    if len(bounds) < 2:
        return []
    options = []
    for k, (_, body_start) in enumerate(bounds):
        body_end = bounds[k + 1][0] if k + 1 < len(bounds) else len(seg)
        body = seg[body_start:body_end]
        newline = body.find("\n")
        if newline != -1:
            body = body[:newline]
        options.append(body.strip().rstrip(";").strip())
    return options


_PAREN_LABEL_RUN_RE = re.compile(r"\(\s*([A-Z])\s*\)")


def parenthesised_options(text: str) -> list[str]:
    """Options written inline as ``(A) Birmingham  (B) Glasgow (C) Liverpool`` (LogicVista's questions).

    Labels must run A, B, C, … in order (the last such run in the text); each option is the text up to the next
    label, trailing ``,``/``.`` removed. Returns ``[]`` unless at least two labels are found. Options may be empty
    (``(A) (B) (C) (D)``: the options are in the image).
    """
    if not text or len(text) > 20000:
        return []
    labels = list(_PAREN_LABEL_RUN_RE.finditer(text))
    starts = [k for k, m in enumerate(labels) if m.group(1) == "A"]
    for start in reversed(starts):
        run = [labels[start]]
        for m in labels[start + 1 :]:
            if m.group(1) == LETTERS[len(run)]:
                run.append(m)
        if len(run) < 2:
            continue
        options = []
        for k, m in enumerate(run):
            end = run[k + 1].start() if k + 1 < len(run) else len(text)
            options.append(text[m.end() : end].strip().rstrip(",.;").strip())
        return options
    return []
