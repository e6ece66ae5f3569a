"""Answer extraction from a model response, and the strict format check.

Every function here is linear in the input length (no regex with nested unbounded repeats over the whole
response), never raises on model output, and keeps no state, so it is safe from any thread.

Expected training format (the data-prep instruction): ``<think>reasoning</think><answer>final answer</answer>``;
a ``\\boxed{…}`` inside ``<answer>`` is accepted. Extraction is tolerant, ``format_ok`` is strict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reward_fns.normalize import repair_control_chars

# Loose tag matcher for extraction (tolerates "< answer >", "</ Answer>").
_TAG_RE = re.compile(r"<\s*(/?)\s*(think|answer)\s*>", re.IGNORECASE)
# \boxed{ / \boxed { / \fbox{ — the brace position is what matters.
_BOX_RE = re.compile(r"\\(?:boxed|fbox)[ \t]*\{")
# "Answer: X" / "**Final answer:** X" / "> answer：X" at a line start; group 1 = rest of the line.
_ANSWER_LINE_RE = re.compile(
    r"(?:^|\n)[ \t>*#_\-]*(?:the[ \t]+)?(?:final[ \t]+|correct[ \t]+)?answer[ \t*_]*(?:is[ \t*_]*)?[:：][ \t]*([^\n]*)",
    re.IGNORECASE,
)
# "the answer is X" anywhere (prose; used by the official modes only); group 1 = rest of the line.
_ANSWER_PHRASE_RE = re.compile(
    r"(?:the[ \t]+)?(?:final[ \t]+|correct[ \t]+)?answer(?:[ \t]+should[ \t]+be|[ \t]+is)[ \t:：]*([^\n]*)",
    re.IGNORECASE,
)

MAX_ANSWER_CHARS = 1000  # longer "answers" are not gradable (acc 0, still counted as extracted)


def as_text(value: object) -> str:
    """Model output as a string: ``None`` → ``""``, bytes decoded, anything else ``str()``-ed (never raises)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not crash the reward loop
        return ""


def _brace_partners(text: str) -> dict[int, int]:
    """Map the index of every balanced ``{`` to its matching ``}`` (escaped ``\\{`` / ``\\}`` are literal)."""
    partners: dict[int, int] = {}
    stack: list[int] = []
    prev_backslash = False
    for i, ch in enumerate(text):
        if prev_backslash:
            prev_backslash = False
            continue
        if ch == "\\":
            prev_backslash = True
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            partners[stack.pop()] = i
    return partners


def boxed_contents(text: str) -> list[str]:
    """Contents of every balanced ``\\boxed{…}`` / ``\\fbox{…}`` in order (unbalanced ones are skipped)."""
    if "box" not in text:
        return []
    starts = [m.end() - 1 for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    partners = _brace_partners(text)
    return [text[s + 1 : partners[s]] for s in starts if s in partners]


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{…}`` (inner box when nested), or ``None``."""
    boxes = boxed_contents(text)
    return boxes[-1].strip() if boxes else None


def answer_line(text: str) -> str | None:
    """The last non-empty ``Answer: X`` line's X, or ``None``."""
    found = None
    for m in _ANSWER_LINE_RE.finditer(text):
        value = m.group(1).strip().strip("*_").strip()
        if value:
            found = value
    return found


def answer_phrase(text: str) -> str | None:
    """The last ``the answer is X`` in prose (first sentence of X), or ``None``."""
    found = None
    for m in _ANSWER_PHRASE_RE.finditer(text):
        value = m.group(1).strip().strip("*_").strip()
        if value:
            found = value
    if found is None:
        return None
    # first sentence only: cut at ". " (not inside a decimal number)
    cut = re.search(r"\.(?:\s|$)", found)
    if cut:
        found = found[: cut.start()]
    return found.strip() or None


@dataclass(frozen=True)
class Region:
    text: str
    has_answer_tag: bool


def answer_region(response: str) -> Region:
    """Text of the last ``<answer>…</answer>`` (to the end if unclosed); else after the last ``</think>``; else all."""
    last_open = None
    last_think_close = None
    tags = list(_TAG_RE.finditer(response)) if "<" in response else []
    for m in tags:
        closing, name = m.group(1) == "/", m.group(2).lower()
        if name == "answer" and not closing:
            last_open = m
        elif name == "think" and closing:
            last_think_close = m
    if last_open is not None:
        start = last_open.end()
        end = len(response)
        for m in tags:
            if m.start() >= start and m.group(2).lower() == "answer" and m.group(1) == "/":
                end = m.start()
                break
        return Region(response[start:end], True)
    if last_think_close is not None:
        return Region(response[last_think_close.end() :], False)
    return Region(response, False)


@dataclass(frozen=True)
class Extraction:
    answer: str | None  # None: nothing found
    how: str  # "boxed" | "answer_line" | "answer_tag" | "phrase" | "last_line" | "none"


def extract_final(response: object, *, prose: bool = False) -> Extraction:
    """Tolerant extraction of the final answer.

    Order: last balanced ``\\boxed{}`` in the answer region → ``Answer: X`` line in the region → the ``<answer>``
    content → last ``\\boxed{}`` anywhere. With ``prose=True`` (official modes) also ``the answer is X`` and
    finally the last non-empty line of the response.
    """
    text = repair_control_chars(as_text(response))  # "\x0crac" is a \frac whose backslash became a form feed
    if not text.strip():
        return Extraction(None, "none")
    region = answer_region(text)
    boxed = last_boxed(region.text)
    if boxed:
        return Extraction(boxed, "boxed")
    line = answer_line(region.text)
    if line:
        return Extraction(line, "answer_line")
    if region.has_answer_tag and region.text.strip():
        return Extraction(region.text.strip(), "answer_tag")
    boxed = last_boxed(text)
    if boxed:
        return Extraction(boxed, "boxed")
    if prose:
        phrase = answer_phrase(region.text)
        if phrase:
            return Extraction(phrase, "phrase")
        lines = [ln.strip() for ln in region.text.strip().splitlines() if ln.strip()]
        if lines:
            return Extraction(lines[-1][:MAX_ANSWER_CHARS], "last_line")
    return Extraction(None, "none")


def format_ok(response: object) -> bool:
    """Strict format: ``<think>T</think>`` then ``<answer>A</answer>``, nothing else around them.

    Exactly one of each tag, in this order, only whitespace between ``</think>`` and ``<answer>`` and around the
    whole; ``T`` and ``A`` non-empty; at most one ``\\boxed`` in ``A`` and, if present, balanced and non-empty.
    """
    text = as_text(response).strip()
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        if text.count(tag) != 1:
            return False
    think_end = text.index("</think>")
    answer_start = text.index("<answer>")
    if answer_start < think_end or text[think_end + len("</think>") : answer_start].strip():
        return False
    think = text[len("<think>") : think_end]
    answer = text[answer_start + len("<answer>") : -len("</answer>")]
    if not think.strip() or not answer.strip():
        return False
    n_box = len(_BOX_RE.findall(answer))
    if n_box > 1 or ("\\boxed" in answer and n_box == 0):
        return False
    if n_box == 1:
        boxes = boxed_contents(answer)
        if len(boxes) != 1 or not boxes[0].strip():
            return False
    return True
