"""String normalisation shared by the verifiers: unicode/LaTeX cleanup, numbers, lists, ground-truth dirt.

Nothing here parses LaTeX: it only strips wrappers and maps unicode symbols to the LaTeX spelling the graders
(math-verify, mathruler) understand. All functions are linear-time, pure and never raise on model output.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation

_UNICODE_MAP = {
    "−": "-",  # minus sign
    "–": "-",
    "—": "-",
    "﹣": "-",
    "×": "\\times ",
    "·": "\\cdot ",
    "÷": "\\div ",
    "π": "\\pi ",
    "∞": "\\infty ",
    "≤": "\\le ",
    "≥": "\\ge ",
    "≠": "\\ne ",
    "°": "^\\circ ",
    "º": "^\\circ ",
    "掳": "^\\circ ",  # mojibake of "°" in MathVerse ground truths
    "∠": "\\angle ",
    "△": "\\triangle ",
    "\u00a0": " ",
    "\u200b": "",
    "\ufeff": "",
}
_UNICODE_RE = re.compile("|".join(re.escape(k) for k in _UNICODE_MAP))
_SQRT_RE = re.compile(r"√\s*(\{|[0-9.]+|[A-Za-z])")


def _sqrt_repl(m: re.Match) -> str:
    token = m.group(1)
    return "\\sqrt{" if token == "{" else "\\sqrt{" + token + "}"

_WRAPPER_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(r"\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\limits|~")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree|\^\s*\\circ")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def fix_unicode(text: str) -> str:
    """NFKC (full-width digits, commas) plus math symbols → LaTeX; ``√{2}``/``√2`` → ``\\sqrt{2}``."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text) if not text.isascii() else text
    if text.isascii():
        return text
    text = _SQRT_RE.sub(_sqrt_repl, text)
    text = text.replace("√", "\\sqrt ")
    return _UNICODE_RE.sub(lambda m: _UNICODE_MAP[m.group(0)], text)


def strip_math_delims(text: str) -> str:
    """Remove ``$``/``$$``, ``\\(…\\)``, ``\\[…\\]`` delimiters and surrounding whitespace."""
    text = text.strip()
    text = text.replace("\\$", "").replace("$", "")
    for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(a) and text.endswith(b):
            text = text[len(a) : -len(b)]
    return text.strip()


def unwrap_text(text: str) -> str:
    """``\\text{B}`` → ``B``, ``\\mathrm{cm}`` → ``cm`` (innermost first, a few rounds), markdown bold removed."""
    for _ in range(3):
        new = _WRAPPER_RE.sub(lambda m: m.group(1), text)
        if new == text:
            break
        text = new
    return text.replace("**", "").replace("__", "")


def repair_control_chars(text: str) -> str:
    """Undo LaTeX commands whose backslash became a control character (``\\f``rac → form feed + ``rac``)."""
    if text.isprintable():
        return text
    text = text.replace("\x0c", "\\f").replace("\x08", "\\b").replace("\x07", "\\a").replace("\x0b", "\\v")
    return re.sub(r"\t(?=[a-z]{2})", r"\\t", text)


def clean_answer(text: str) -> str:
    """Common cleanup for an extracted answer or a ground truth (keeps the math, drops the decoration)."""
    text = fix_unicode(repair_control_chars(text))
    text = strip_math_delims(text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _SPACING_RE.sub(" ", text)
    text = _LEFT_RIGHT_RE.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    # trailing sentence punctuation ("B.", "12;")
    text = text.rstrip(".;,!?。 ")
    return text


def squash(text: str) -> str:
    """Comparison key for exact-match checks: cleaned, wrappers unwrapped, no whitespace, lower case."""
    text = unwrap_text(clean_answer(text))
    text = _DEGREE_RE.sub("°", text)
    return re.sub(r"\s+", "", text).lower()


def strip_units(text: str, unit: str = "") -> str:
    """Drop a known unit (``extra_info.unit``), degree marks and percent signs from the end of a value."""
    text = unwrap_text(text).strip()
    text = _DEGREE_RE.sub("", text).replace("°", "")
    text = text.replace("\\%", "").rstrip("%").strip()
    if unit:
        u = unit.strip()
        if u and text.lower().endswith(u.lower()) and len(text) > len(u):
            text = text[: -len(u)].strip()
    return text


def to_decimal(text: str | None, unit: str = "") -> Decimal | None:
    """Parse a plain number (``-4.3``, ``1,000``, ``1000 g`` with unit ``g``, ``60°``, ``12%``) exactly, or ``None``.

    Only plain decimal notation is accepted here; fractions and other LaTeX go to the math graders.
    """
    if text is None:
        return None
    text = clean_answer(text)
    if len(text) > 64:
        return None
    text = strip_units(text, unit)
    text = text.replace(" ", "")
    if _THOUSANDS_RE.fullmatch(text):
        text = text.replace(",", "")
    if not _NUMBER_RE.fullmatch(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if math.isfinite(float(value)) else None


def to_number(text: str | None, unit: str = "") -> float | None:
    """``to_decimal`` as a float."""
    value = to_decimal(text, unit)
    return None if value is None else float(value)


def numbers_close(a: float | Decimal, b: float | Decimal) -> bool:
    """Equal numbers: integers exactly (no tolerance: 123456789 ≠ 123456790), others up to a 1e-9 relative error."""
    a, b = Decimal(a), Decimal(b)
    if a == b:
        return True
    if a == a.to_integral_value() and b == b.to_integral_value():
        return False
    return abs(a - b) <= Decimal("1e-9") * max(Decimal(1), abs(a), abs(b))


def parse_number_list(text: str | None) -> list[Decimal] | None:
    """``[2014, 2016]`` / ``2014, 2016`` / ``(1.2; 1.3)`` → list of floats, or ``None`` if any item is not a number."""
    if text is None:
        return None
    text = clean_answer(text)
    if not text or len(text) > 400:
        return None
    if text[0] in "[(" and text[-1] in "])":
        text = text[1:-1]
    parts = [p for p in re.split(r"\s*(?:,|;|\band\b)\s*", text) if p.strip()]
    if not parts:
        return None
    values = []
    for part in parts:
        value = to_decimal(part)
        if value is None:
            return None
        values.append(value)
    return values


def format_number(value: float | Decimal) -> str:
    """Canonical short string for a number (``7.0`` → ``7``, ``4.80`` → ``4.8``)."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


# --- ground-truth cleaning (dirt seen in the published answers) -----------------------------------------------

_BRACE_UNIT_RE = re.compile(r"(?<![A-Za-z\\])\{\s*(?:degrees?|square\s*inches|squareinches|inches|units?|cm|m|km)\s*\}\s*$", re.IGNORECASE)


def clean_ground_truth(gt: str) -> str:
    """Repair known dirt: ``\\x0c`` for ``\\f`` (``\\frac``), ``$…$``, an enclosing ``\\boxed{}``, trailing spaces,
    unit words in braces (``69{degrees}``, ``8\\sqrt{3}{squareinches}``)."""
    text = repair_control_chars(gt).strip()
    text = strip_math_delims(text)
    boxed = re.fullmatch(r"\\boxed\s*\{(.*)\}", text, flags=re.DOTALL)
    if boxed:
        text = boxed.group(1).strip()
    text = _BRACE_UNIT_RE.sub("", text).strip()
    return text
