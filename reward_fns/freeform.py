"""Reading the chosen answer out of a free-form response, as the benchmarks' LLM extractors do (official mode only).

MathVista and LogicVista let GPT-4 read "the answer" out of whatever a model wrote, then apply rules to what it
read. These functions are the rule stand-in for that reader: what a careful reader takes as the stated answer. They
are used by ``mode="official"`` only; ``mode="train"`` keeps its strict contract (the answer is the ``<answer>``
span / ``\\boxed{}`` / ``Answer:`` line, see ``reward_fns.extract``). Tests: ``tests/test_reward_freeform.py``.

* ``stated_letters``: the option letters a response names (``The answer is D cylinder``, ``answer : c``,
  ``(B) Both are equal``, ``C) …``, ``2. B``, ``Figure B``, ``Option B is the one that …``, ``A and C``);
* ``stated_option``: the option whose *text* a response states (the text alone, ``No, …`` / ``True.`` for a two-way
  question, "not enough information" for such an option, the option named in the final statement);
* ``yes_no_statement``: a yes/no question answered by a statement that repeats it, negated or not;
* ``stated_number``: the number a response gives (``… so the total comes to 12 apples.``, ``**7**``, ``five``).

What is read: the answer region (after ``</think>`` / inside ``<answer>`` when present), end-of-sequence tokens and
invisible characters removed, at most its last ``MAX_READ_CHARS`` characters. Option listings (``(A) yes (B) no``,
a model echoing the question) are never read as answers. Every function is linear in its input, pure (one
``lru_cache``), and never raises on model output.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from reward_fns.choice import LETTERS, match_option_text
from reward_fns.extract import answer_region
from reward_fns.normalize import to_decimal, unwrap_text

MAX_READ_CHARS = 6000  # the end of a response is where its answer is; earlier text is not read
MAX_HEAD_CHARS = 400  # the start of a response (leading labels, "Yes, …")

_EOS_RE = re.compile(r"</s>|<s>|<\|endoftext\|>|<\|im_end\|>|<\|eot_id\|>|<end_of_turn>|<\|end\|>|\[/INST\]")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


@functools.lru_cache(maxsize=256)  # the rules below each read the same response; thread-safe
def clean_response(text: str) -> str:
    """The part of a response that states its answer: after ``</think>`` / inside ``<answer>`` when the response
    has them (``reward_fns.extract.answer_region``), without end-of-sequence tokens and invisible characters, at
    most the last ``MAX_READ_CHARS``."""
    if "<" in text:
        text = answer_region(text).text
    text = _EOS_RE.sub(" ", text).translate(_INVISIBLE)
    if len(text) > MAX_READ_CHARS:
        text = text[-MAX_READ_CHARS:]
    return text.strip()


# --- option letters -------------------------------------------------------------------------------------------

# A letter standing alone: upper case not followed by a letter/digit, or lower case only before a closing bracket,
# punctuation or the end (so the article in "the answer is a square" is not a letter).
_ONE = r"(?:[\(\[]\s*([A-Za-z])\s*[\)\]]|([A-Z])(?![A-Za-z0-9'’])|([a-z])(?=\s*(?:$|[)\].,;:!?\n])))"
_ONE_RE = re.compile(_ONE)
_LIST_ITEM = r"[\(\[]?[A-Z][\)\]]?"
_SEP = r"\s*(?:,|;|/|&|\band\b|\bor\b|、)\s*"
_LETTER_LIST_RE = re.compile(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?(?:" + _SEP + r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?)*")
_LABEL_WORDS = r"(?:option|choice|letter|figure|fig\.?|image|picture|graph|shape|diagram|box|candidate|answer)"
# "the (final|correct) answer (is|would be|:)", "option letter (for …) is", "correct choice:"; group 1: the line's rest
_ANSWER_MARK_RE = re.compile(
    r"(?i)(?:final\s+|correct\s+|right\s+|best\s+)?(?:answer|option|choice)(?:\s+(?:letter|choice|option))?"
    r"(?:\s*\(s\))?(?:\s+(?:for|to|of|in)\s[^\n.:;?!]{0,50}?)?"
    r"(?:\s+(?:is|are|would\s+be|should\s+be|will\s+be|must\s+be|=)|\s*[:：])\s*([^\n]{0,200})"
)
_ZH_ANSWER_RE = re.compile(r"(?:答案|选项|应选|故选|所以选|选择)\s*(?:是|为|应该是|应为|[:：])?\s*[\(（]?\s*([A-Z])(?![A-Za-z])")
# "… is option B", "I choose (C)", "select D", "go with B"; "A is correct", "(B) is the answer"
_CHOSEN_RE = re.compile(
    r"(?i:\b(?:choose|chose|select|pick|picked|go\s+with))\s+(?i:the\s+)?(?i:(?:option|choice|answer|letter)\s*)?"
    + _ONE
    + r"|(?i:\b(?:is|be))\s+(?i:the\s+)?(?i:(?:option|choice|answer|letter)\s*)"
    + _ONE
    + r"|(?i:\b(?:is|be))\s+[\(\[]\s*([A-Za-z])\s*[\)\]]"
)
_IS_CORRECT_RE = re.compile(
    r"(?:^|(?<=[\s(\[]))(" + _LIST_ITEM + r"(?:\s*(?:,|&|\band\b)\s*" + _LIST_ITEM + r"){0,5})"
    r"\s+(?i:is|are|would\s+be|should\s+be)\s+(?i:the\s+)?(?i:(?:correct|right|best)\b|answers?\b)"
)
# "Option B", "Figure (C)", "choice d)" anywhere
_LABELLED_LETTER_RE = re.compile(
    r"(?i:\b(?:options?|choices?|figures?|fig\.?|images?|pictures?|graphs?|shapes?|diagrams?|candidates?))\s*" + _ONE
)
# A sentence that ends with letters: "… the next box should be C.", "The green category includes A and C"
_FINAL_LETTERS_RE = re.compile(
    r"(?:^|\s)((?:" + _LIST_ITEM + r")(?:\s*(?:,|&|\band\b)\s*" + _LIST_ITEM + r"){0,5})\s*[.!]?\s*$"
)
# Words after which a capital letter names a point, not an option ("… the shortest side is from point C.")
_GEOMETRY_WORDS = {
    "point", "points", "angle", "vertex", "vertices", "line", "segment", "side", "triangle", "circle", "center",
    "centre", "chord", "arc", "ray", "plane", "at", "from", "through", "between", "∠",
}
# A leading label: "C) …", "(B) Both are equal", "B. No, …", "A: …" (after stray symbols such as "* ", "• ", "- ")
_LEAD_RE = re.compile(r"^[^\w(\[]{0,4}(?:[\(\[]\s*([A-Za-z])\s*[\)\]][.:]?|([A-Z])\s*[.:)：])(?:\s+|$)(.*)", re.DOTALL)
_LINE_LABEL_RE = re.compile(r"^[^\w(\[]{0,4}(?:[\(\[]\s*([A-Za-z])\s*[\)\]]|([A-Z])\s*[.:)：])(?:\s|$)")
_ENUM_LINE_RE = re.compile(r"^\s*\d{1,2}\s*[.)]\s*[\(\[]?([A-Z])[\)\]]?\s*[.]?\s*$")
_LONE_LINE_RE = re.compile(
    r"^[^\w(\[]{0,4}(?:" + _LABEL_WORDS + r"\s*[:：]?\s*)?[\(\[]?\s*([A-Z])\s*[\)\]]?\s*[.:]?[^\w]{0,3}$",
    re.IGNORECASE,
)
_LISTED_LABEL_RE = re.compile(r"\(\s*[A-Za-z]\s*\)")


def _undecorate(text: str) -> str:
    text = unwrap_text(text.replace("$", "")).replace("\\", " ")
    return text.replace("*", "").replace("`", "").replace('"', "").replace("“", "").replace("”", "")


def _letters_of(groups, valid: str) -> list[str]:
    return [g.upper() for g in groups if g and g.upper() in valid]


def is_listing(text: str) -> bool:
    """A run of option labels (``(A) yes (B) no``, ``( a ) true ( b ) false``): the options, not an answer."""
    return len(_LISTED_LABEL_RE.findall(text)) >= 2


def _labelled_lines(plain: str) -> set[str]:
    """Letters that start a line as a label (``A) Set A\\nB) Set B``); two or more make the response a listing."""
    found = set()
    for line in plain.splitlines()[:80]:
        m = _LINE_LABEL_RE.match(line)
        if m:
            found.add((m.group(1) or m.group(2)).upper())
    return found


def _letters_prefix(text: str, valid: str, multi: bool) -> tuple[frozenset[str], str] | None:
    """Letters at the start of an answer tail (``D cylinder``, ``(b)``, ``c. c. c``, ``A and C``, ``AC``, ``1. B``)
    and the text after them."""
    text = text.strip().lstrip(":：-–/ \t").strip()
    text = re.sub(r"(?i)^(?:the\s+)?(?:" + _LABEL_WORDS + r")\s*(?:letter\s*)?[:：]?\s*", "", text)
    enum = re.match(r"\d{1,2}\s*[.,)]\s*(?=\S)", text)  # "1. B", "1, d": an enumeration number before the letter
    if enum:
        text = text[enum.end() :]
    if multi:
        m = _LETTER_LIST_RE.match(text)
        if m and m.group(0).strip():
            tokens = [t for t in re.findall(r"[A-Za-z]+", m.group(0)) if t.lower() not in ("and", "or")]
            rest = text[m.start() + len(m.group(0).rstrip()) :]
            standalone = not rest or not rest[0].isalnum()
            if len(tokens) > 1 and standalone and all(len(t) == 1 for t in tokens):
                upper_ok = all(t.isupper() for t in tokens) or not re.match(r"\s*[A-Za-z]{2,}", rest)
                letters = [t.upper() for t in tokens]
                if upper_ok and all(x in valid for x in letters):
                    return frozenset(letters), rest
        run = re.match(r"([A-Z]{2,6})(?![A-Za-z0-9])", text)  # "AC"
        if run and len(set(run.group(1))) == len(run.group(1)) and all(x in valid for x in run.group(1)):
            return frozenset(run.group(1)), text[run.end() :]
    m = _ONE_RE.match(text)
    if m:
        letters = _letters_of(m.groups(), valid)
        if letters:
            return frozenset(letters[:1]), text[m.end() :]
    return None


def _letters_at_start(text: str, valid: str, multi: bool) -> frozenset[str] | None:
    found = _letters_prefix(text, valid, multi)
    return None if found is None else found[0]


@dataclass(frozen=True)
class Letters:
    letters: frozenset[str]
    how: str  # "whole" | "answer_marker" | "chosen" | "leading_label" | "own_line" | "final_letters" | "option_mention"


def dangling_answer(response: str) -> bool:
    """The response ends with an answer marker and nothing after it (``… answer :``): it states no answer."""
    text = _undecorate(clean_response(response)).rstrip()
    marks = list(_ANSWER_MARK_RE.finditer(text[-300:]))
    return bool(marks) and not marks[-1].group(1).strip(" )(.:-") and not text[-300:][marks[-1].end() :].strip()


def stated_letters(response: str, n_options: int, *, multi: bool = False, strong_only: bool = False) -> Letters | None:
    """The option letter(s) among the first ``n_options`` that a free-form response names, or ``None``.

    In order (the first rule that reads something decides):

    1. the whole response is letters: ``B``, ``(b)``, ``Option C.``, ``2. B``, ``A, C``;
    2. the last answer marker followed by letters: ``The answer is D cylinder``, ``answer : c``, ``The correct
       option letter for this question is C``, ``正确答案是C`` (a marker followed by a listing of options is skipped);
    3. a choice statement: ``… is option B``, ``I choose (C)``, ``A and C are correct``;
    4. a leading label: ``C) …``, ``(B) Both are equal``, ``• (B) …`` — unless the response lists the options line
       by line (``A) Set A\\nB) Set B``);
    5. lines of their own: ``C``, ``(C)``, ``2. B``, ``Figure B`` (several different ones answer nothing);
    6. the final sentence ends with letters: ``… the next box should be C.``, ``… includes A and C``;
    7. ``Option B`` / ``Figure C`` / ``Choices A and C`` in the explanation: the first one in the last sentence
       that names one.

    Lower-case letters count only before punctuation or the end (``answer : c``; not the article in ``the answer is
    a square``). ``multi`` reads letter sets (``A and C``, ``B, D``, ``AC``) for items with several answers;
    ``strong_only`` stops after rule 4.

    >>> [sorted(stated_letters(r, 4, multi=True).letters) for r in ("2. B", "The answer is D cylinder", "A and C")]
    [['B'], ['D'], ['A', 'C']]
    >>> stated_letters("The answer is a square.", 4) is None
    True
    """
    text = clean_response(response)
    if not text or n_options <= 0:
        return None
    valid = LETTERS[: min(n_options, 26)]
    plain = _undecorate(text)
    # 1. the whole response
    whole = plain.strip().rstrip(".").strip()
    if len(whole) <= 40:
        found = _letters_prefix(whole, valid, multi)
        if found is not None and not re.search(r"[A-Za-z0-9]", found[1]):
            return Letters(found[0], "whole")
        m = _LONE_LINE_RE.match(whole)
        if m and m.group(1).upper() in valid:
            return Letters(frozenset(m.group(1).upper()), "whole")
    # 2. answer markers (a tail that lists the options, "Answer: (A) 2006 (B) 2007", names nothing)
    for m in reversed(list(_ANSWER_MARK_RE.finditer(plain))[-8:]):
        tail = m.group(1)
        if is_listing(tail[:80]) and len(_LISTED_LABEL_RE.findall(tail)) >= 3:
            continue
        found = _letters_at_start(tail, valid, multi)
        if found is not None:
            return Letters(found, "answer_marker")
    zh = [m.group(1) for m in _ZH_ANSWER_RE.finditer(plain) if m.group(1) in valid]
    if zh:
        return Letters(frozenset(zh[-1]), "answer_marker")
    # 3. choice statements
    chosen = []  # (position, letters)
    for m in _CHOSEN_RE.finditer(plain):
        start = next(m.start(k) for k in range(1, len(m.groups()) + 1) if m.group(k))
        found = _letters_at_start(plain[start : start + 40], valid, multi)
        if found is not None:
            chosen.append((m.start(), found))
    for m in _IS_CORRECT_RE.finditer(plain):
        found = _letters_at_start(m.group(1), valid, multi)
        if found is not None:
            chosen.append((m.start(), found))
    if chosen:
        return Letters(max(chosen, key=lambda item: item[0])[1], "chosen")
    # 4. a leading label, unless the options are listed line by line ("A) Set A\nB) Set B\n…")
    listed = _labelled_lines(plain)
    lead = _LEAD_RE.match(plain[:MAX_HEAD_CHARS])
    if lead and len(listed) < 2 and not is_listing(plain[:MAX_HEAD_CHARS].split("\n")[0]):
        letter = (lead.group(1) or lead.group(2)).upper()
        if letter in valid:
            return Letters(frozenset(letter), "leading_label")
    if strong_only:
        return None
    # 5. lines of their own ("C", "(C)", "2. B", "Figure B"); several different ones answer nothing
    own = set()
    for line in plain.splitlines()[-80:]:
        m = _ENUM_LINE_RE.match(line) or _LONE_LINE_RE.match(line)
        if m and m.group(1).upper() in valid:
            own.add(m.group(1).upper())
    if len(own) == 1:
        return Letters(frozenset(own), "own_line")
    if own:
        return None
    # 6. the final sentence ends with letters: "… the next box should be C.", "… includes A and C"
    final = [x for x in _sentences(plain)[-3:] if not is_listing(x)]
    if final:
        m = _FINAL_LETTERS_RE.search(final[-1][-80:])
        before = final[-1][-80:][: m.start(1)].split()[-1:] if m else []
        geometric = bool(before) and before[0].lower().strip(",;:") in _GEOMETRY_WORDS  # "… meet at point D."
        found = _letters_at_start(m.group(1), valid, multi) if m and not geometric else None
        if found is not None:
            return Letters(found, "final_letters")
    # 7. "Option B" / "Figure C" inside the explanation: the first one named in the last sentence naming one
    for sentence in reversed(_sentences(plain)[-60:]):
        for m in _LABELLED_LETTER_RE.finditer(sentence):
            start = next(m.start(k) for k in range(1, len(m.groups()) + 1) if m.group(k))
            found = _letters_at_start(sentence[start : start + 40], valid, multi)
            if found is not None:
                return Letters(found, "option_mention")
    return None


# --- option texts ---------------------------------------------------------------------------------------------

_YES = {"yes", "true"}
_NO = {"no", "false"}
_INSUFFICIENT_OPTION_RE = re.compile(
    r"(?i)insufficient|not\s+enough|cannot\s+(?:say|tell|be\s+determined)|can\s*not\s+(?:say|tell|be\s+determined)|"
    r"impossible\s+to\s+(?:tell|say|determine)|not\s+(?:possible\s+to\s+)?determin|cannot\s+determine|"
    r"unable\s+to\s+determine"
)
_INSUFFICIENT_RESPONSE_RE = re.compile(
    r"(?i)insufficient|not\s+enough\s+information|(?:cannot|can\s*not|can't|unable\s+to|impossible\s+to|"
    r"not\s+possible\s+to)\s+(?:be\s+)?(?:determine|tell|say|know|conclude)"
)
_STATEMENT_IS_RE = re.compile(
    r"(?i)\b(?:statement|claim|sentence|it|this|that)\s+is\s+(not\s+)?(true|false)\b(?!\s+(?:or|and)\b)"
)
_WORD_RE = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(_undecorate(text).lower())


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?。！？])\s+|\n+", text)
    return [p.strip() for p in parts if p.strip()]


def _binary_options(choices) -> dict[str, int]:
    """``{"yes": i, "no": j}`` for a yes/no or true/false option pair (both present), else ``{}``."""
    keys = {}
    for i, c in enumerate(choices):
        k = _undecorate(c).strip().strip(".").lower()
        if k in _YES | _NO:
            keys["yes" if k in _YES else "no"] = i
    return keys if len(keys) == 2 else {}


def _position(words: list[str], option_words: list[str]) -> int | None:
    """Index of the first occurrence of ``option_words`` in ``words`` that no negation precedes
    (``not all men are women`` does not name the option ``All men are women``)."""
    n = len(option_words)
    for i in range(len(words) - n + 1):
        if words[i : i + n] == option_words and not (i and words[i - 1] in _NEGATIONS):
            return i
    return None


def _distinctive(option: str) -> bool:
    """An option text that can be recognised inside a sentence: not a lone letter, yes/no, or short number."""
    key = _undecorate(option).strip().lower()
    if key in _YES | _NO or len(key) < 2:
        return False
    if re.fullmatch(r"[-+]?\d{1,2}(?:\.\d+)?", key):
        return False
    return bool(_words(key))


def _mathy(text: str) -> bool:
    """A formula or number, not prose: no word of three letters outside LaTeX commands."""
    return not re.search(r"[A-Za-z]{3,}", re.sub(r"\\[A-Za-z]+", "", text))


def _same_text(choices, hits) -> bool:
    return len({_undecorate(choices[i]).strip().lower() for i in hits}) == 1


def stated_option(response: str, choices) -> int | None:
    """Index of the option whose text a free-form response states, or ``None``.

    In order: the whole response is an option text (exact, without its unit, or — formulas only — math-equivalent;
    ``1000`` for ``(A) 1000``); a short response opens one option's text (``northern`` for ``northern region``);
    options that are all numbers and the number the response states (``stated_number``); an "insufficient
    information" option and the response says the question cannot be decided (or declines to answer); a yes/no or
    true/false pair and ``the statement is false``, a first word ``No, …`` / ``True.`` or a last word ``… so yes.``;
    else the option named in the last sentence that names any (the first one there: ``Red gems affect the score less
    than green gems`` → red; an option after a negation, ``not all men are women``, is not named). Option listings
    such as ``(A) yes (B) no`` are not read.
    """
    choices = list(choices)
    text = clean_response(response)
    if not choices or not text:
        return None
    plain = _undecorate(text).strip()
    short = plain.rstrip(".").strip()
    if len(short) <= 200 and not is_listing(short):
        hits = match_option_text(text.replace("**", ""), choices, math=False)
        if not hits and _mathy(text):  # math equivalence only between formulas (sympy on prose is slow and moot)
            hits = match_option_text(text.replace("**", ""), [c if _mathy(c) else "" for c in choices])
        if hits and (len(hits) == 1 or _same_text(choices, hits)):
            return hits[0]
        words = _words(short)
        if 0 < len(words) <= 6 and any(len(w) >= 4 for w in words):
            hits = [i for i, c in enumerate(choices) if _words(c)[: len(words)] == words]
            if hits and (len(hits) == 1 or _same_text(choices, hits)):
                return hits[0]
    numeric = stated_number_option(text, choices)
    if numeric is not None:
        return numeric
    lines = plain.splitlines()
    if len(_labelled_lines(plain)) >= 2:  # "A) Set A\nB) Set B\n…": the listed options are not statements
        lines = [x for x in lines if not _LINE_LABEL_RE.match(x)]
    sentences = [x for x in _sentences("\n".join(lines[-80:]))[-40:] if not is_listing(x)]
    undecided = [i for i, c in enumerate(choices) if _INSUFFICIENT_OPTION_RE.search(c)]
    undecided_said = any(_INSUFFICIENT_RESPONSE_RE.search(x) or REFUSAL_RE.search(x) for x in sentences[-12:])
    if len(undecided) == 1 and undecided_said:
        return undecided[0]
    binary = _binary_options(choices)
    if binary:
        verdict = list(_STATEMENT_IS_RE.finditer(plain[-1500:]))  # "… the statement is (not) false because …"
        if verdict:
            negated, word = verdict[-1].group(1), verdict[-1].group(2).lower()
            return binary["yes" if (word == "true") != bool(negated) else "no"]
        first = re.match(r"[^A-Za-z]{0,4}([A-Za-z]+)\b", plain)  # "No, …", "True."
        last = re.search(r"(?<!\bnot\s)\b([A-Za-z]+)[^A-Za-z]{0,4}$", plain)  # "…, so yes."
        for word in (first, last):
            if word and word.group(1).lower() in _YES | _NO:
                return binary["yes" if word.group(1).lower() in _YES else "no"]
    named = {i: _words(c) for i, c in enumerate(choices) if _distinctive(c)}
    for sentence in reversed(sentences if named else []):
        words = _words(sentence)
        found = {i: _position(words, option_words) for i, option_words in named.items()}
        found = {i: at for i, at in found.items() if at is not None}
        # an option inside a longer named option ("grass" in "grass snake") is not named on its own
        found = {i: at for i, at in found.items() if not any(j != i and _position(named[j], named[i]) is not None
                                                             for j in found)}
        if found:
            return min(found, key=lambda i: (found[i], i))
    return None


def yes_no_statement(response: str, question: str, choices) -> int | None:
    """For a yes/no question answered by a statement (``Dark Periwinkle does not intersect Yellow Green.``): the
    sentence that repeats most of the question's words decides — negated → "no", else "yes". ``None`` when the
    choices are not a yes/no pair or no sentence repeats at least two of the question's content words."""
    binary = _binary_options(choices)
    if not binary or len(choices) != 2 or not question:
        return None
    asked = {w for w in _words(question) if len(w) >= 3 and w not in _STOPWORDS}
    best, best_overlap = None, 2
    text = _undecorate(clean_response(response))
    if REFUSAL_RE.search(text):
        return None
    for sentence in _sentences(text)[-40:]:
        words = _words(sentence.replace("n't", " not"))
        overlap = len(asked & set(words))
        if overlap >= best_overlap and not is_listing(sentence):
            best, best_overlap = words, overlap
    if best is None:
        return None
    return binary["no" if _NEGATIONS & set(best) else "yes"]


REFUSAL_RE = re.compile(
    r"(?i)\b(?:(?:does|do|did)\s+not\s+(?:provide|include|contain|show|give|mention|specify)|"
    r"not\s+enough\s+information|"
    r"(?:cannot|can\s*not|can't|unable\s+to|impossible\s+to|not\s+possible\s+to)\s+(?:be\s+)?"
    r"(?:answer|determine|tell|see|view|interpret|process|access|identify)|please\s+provide|as\s+an\s+ai\b|"
    r"i(?:'m|\s+am)\s+sorry|more\s+(?:information|context|details)\b)"
)
_NEGATIONS = {"not", "no", "never", "neither", "nor", "none", "cannot", "without"}
_STOPWORDS = {"the", "and", "are", "was", "were", "than", "that", "this", "there", "these", "those", "does", "did",
              "for", "with", "what", "which", "have", "has", "more", "less", "from", "into", "its", "any", "all"}


# --- numbers --------------------------------------------------------------------------------------------------

# A number standing alone (units may follow: "12cm"; not part of a label such as "R2" or "v1.5"); "1,578"; "3/4".
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.,/])[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s?/\s?\d+(?:\.\d+)?)?(?!\d|\.\d|,\d{3})"
    r"|(?<![A-Za-z0-9_.,/])[-−]?\.\d+(?!\d)"
)
_LEADS_VALUE_RE = re.compile(
    r"(?i)(?:=|≈|\bis\b|\bare\b|\bwas\b|\bwere\b|\bequals?\b|\bbe\b|:)\s*(?:about|around|approximately|roughly|"
    r"exactly|only|just|nearly|almost|of)?\s*[$£€¥]?\s*$"
)
_BOLD_RE = re.compile(r"\*\*([^*\n]{1,40})\*\*")


def _number_in(sentence: str) -> str | None:
    """The value a sentence states: after its last ``=``, else after its last ``is``/``are``/``:``, else its last
    number (``… lower than 0.2% of GDP in 1970`` → 1970)."""
    sentence = sentence.replace("−", "-")
    found = list(_NUMBER_RE.finditer(sentence))
    if not found:
        return None
    eq = sentence.rfind("=")
    if eq != -1:
        after = [m for m in found if m.start() > eq]
        if after:
            return after[0].group(0)
    led = [m for m in found if _LEADS_VALUE_RE.search(sentence[max(0, m.start() - 40) : m.start()])]
    if led:
        return led[-1].group(0)
    return found[-1].group(0)


_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORD_RE = re.compile(r"(?i)\b(" + "|".join(_NUMBER_WORDS) + r")\b")


def _number_word(sentence: str, led_only: bool) -> str | None:
    """A number written as a word (``So five objects.``); ``one`` only after ``is``/``are``/``=`` (not the
    pronoun in ``the one on the left``)."""
    for m in reversed(list(_NUMBER_WORD_RE.finditer(sentence))):
        led = bool(_LEADS_VALUE_RE.search(sentence[max(0, m.start() - 40) : m.start()]))
        if (led or not led_only) and (led or m.group(1).lower() != "one"):
            return str(_NUMBER_WORDS[m.group(1).lower()])
    return None


def stated_number(response: str, unit: str = "") -> str | None:
    """The number a free-form response gives as its answer (a plain decimal string), or ``None``.

    In order: after the last answer marker (``The answer is 12 apples``); a bold number (``**7**``); the last
    sentence holding a number (``_number_in``); a number word (``So five objects.``) in the final sentence.

    >>> stated_number("So the total comes to 12 apples. Let me know if you need more help!")
    '12'
    >>> stated_number("There are **7** cubes."), stated_number("It is 4 x 4 = 16 m."), stated_number("So five.")
    ('7', '16', '5')
    """
    text = clean_response(response)
    if not text:
        return None
    # 1. after an answer marker
    for m in reversed(list(_ANSWER_MARK_RE.finditer(text))[-8:]):
        tail = _sentences(m.group(1))
        if tail:
            value = _plain_number(tail[0], unit) or _number_in(_undecorate(tail[0]))
            if value is None and not _NUMBER_RE.search(tail[0]):
                value = _number_word(tail[0], led_only=False)
            if value is not None:
                return _canonical(value)
    # 2. a bold number: "**7**"
    bold = [b.group(1) for b in _BOLD_RE.finditer(text)]
    for span in reversed(bold):
        value = _plain_number(span, unit)
        if value is not None:
            return _canonical(value)
    # 3. the last sentence that holds a number
    sentences = [x for x in _sentences(_undecorate(text))[-60:] if not is_listing(x)]  # not "(A) 21000 (B) …"
    if sentences and not _NUMBER_RE.search(sentences[-1]):
        value = _number_word(sentences[-1], led_only=False)
        if value is not None:
            return value
    for sentence in reversed(sentences):
        value = _number_in(sentence)
        if value is not None:
            return _canonical(value)
    return None


def _plain_number(text: str, unit: str) -> str | None:
    value = to_decimal(_undecorate(text).strip().rstrip(".").strip(), unit)
    return None if value is None else str(value)


def _canonical(text: str) -> str:
    """``1,578`` → ``1578``, ``−3`` → ``-3``, ``3/4`` → ``0.75`` (a fraction as the float it stands for)."""
    text = text.replace(",", "").replace("−", "-").replace(" ", "")
    if "/" in text:
        num, _, den = text.partition("/")
        try:
            value = Decimal(num) / Decimal(den)
        except (InvalidOperation, ZeroDivisionError):
            return num
        return repr(float(value))
    return text


def _option_value(option: str) -> Decimal | None:
    """The number an option states (``60°``, ``12%``, ``20cm``, ``1,000 g``), or ``None``."""
    value = to_decimal(option)
    if value is None:
        value = to_decimal(re.sub(r"(?<=\d)\s*[A-Za-z]{1,6}\.?$", "", option.strip()))
    return value


def stated_number_option(response: str, choices) -> int | None:
    """For options that are all numbers: the option equal to the number the response states, or ``None``."""
    values = [_option_value(c) for c in choices]
    if len(values) < 2 or any(v is None for v in values):
        return None
    number = stated_number(response)
    if number is None:
        return None
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    hits = [i for i, v in enumerate(values) if v == value]
    return hits[0] if hits and len({values[i] for i in hits}) == 1 else None


def answer_tail(response: str) -> str | None:
    """The first sentence after the last answer marker (``The answer is …``, ``answer : …``), or ``None``."""
    marks = list(_ANSWER_MARK_RE.finditer(clean_response(response)))
    for m in reversed(marks[-8:]):
        tail = _sentences(m.group(1))
        if tail:
            return tail[0]
    return None
