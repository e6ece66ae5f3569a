"""Math equivalence: cheap exact/numeric checks first, then math-verify and mathruler, safely.

Why it is safe to call from verl's reward threads:

* math-verify's own timeout uses ``signal.alarm`` and raises off the main thread, so it is always called with
  ``parsing_timeout=None`` / ``timeout_seconds=None``, and two bounds of our own replace it:
  1. the *input* is bounded before sympy ever sees it (``sympy_safe``): at most ``MAX_MATH_CHARS`` characters,
     balanced and shallow braces, no power towers, no huge exponents or factorials, no sums/products/integrals/
     limits/binomials — the things that make sympy spin inside C big-int code, where nothing can interrupt it;
  2. a CPU-time budget per ``compute_score`` call (``SYMPY_BUDGET_S``, all comparisons together, counted on the
     calling thread's own CPU clock): each sympy call runs under ``reward_fns.deadline.run_with_cpu_limit``, which
     interrupts it from a watchdog thread with a thread-targeted asynchronous exception → "not equal", never
     cached, and which holds off automatic garbage collection meanwhile (a full collection of a reward worker's heap
     costs more than the whole budget).
  Everything that fails the guard is compared by exact string match only.
* All sympy work runs under one process-wide lock (sympy/antlr caches are shared state; the GIL serialises the
  CPU work anyway), and every exception is swallowed into "not equal" (model output must never crash training).
* Results are memoised (``functools.lru_cache`` is thread-safe): GRPO samples repeat the same answers a lot.
"""

from __future__ import annotations

import cmath
import contextlib
import functools
import logging
import os
import re
import threading
import time

import sympy
from math_verify import parse as _mv_parse
from math_verify import verify as _mv_verify
from mathruler.grader import grade_answer as _mathruler_grade

from reward_fns.deadline import BudgetExceeded as SympyBudgetExceeded
from reward_fns.deadline import run_with_cpu_limit
from reward_fns.normalize import (
    clean_answer,
    numbers_close,
    squash,
    to_decimal,
    to_number,
)

MAX_MATH_CHARS = 160
MAX_DEPTH = 8
SYMPY_BUDGET_S = 0.5  # CPU seconds of sympy work allowed per compute_score call (all comparisons together)
_SYMPY_LOCK = threading.RLock()
_BUDGET = threading.local()


def _reset_lock_after_fork() -> None:  # another thread may have held the lock when the process forked
    global _SYMPY_LOCK
    _SYMPY_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


@contextlib.contextmanager
def sympy_budget(seconds: float = SYMPY_BUDGET_S):
    """Give the enclosed code (one ``compute_score`` call) ``seconds`` of CPU time for sympy work in total.

    Nested uses keep the outer budget."""
    if getattr(_BUDGET, "remaining", None) is not None:
        yield
        return
    _BUDGET.remaining = seconds
    try:
        yield
    finally:
        _BUDGET.remaining = None


def _run_limited(fn, *args):
    """Run ``fn(*args)`` under the lock and the thread's remaining budget (lock waiting is not charged)."""
    with _SYMPY_LOCK:
        remaining = getattr(_BUDGET, "remaining", None)
        if remaining is None:
            remaining = SYMPY_BUDGET_S
        start = time.thread_time()
        try:
            return run_with_cpu_limit(remaining, fn, *args)
        finally:
            if getattr(_BUDGET, "remaining", None) is not None:
                _BUDGET.remaining = remaining - (time.thread_time() - start)


_FORBIDDEN_RE = re.compile(
    r"\\(?:sum|prod|coprod|int|iint|iiint|oint|lim|limsup|liminf|binom|dbinom|tbinom|choose|Gamma|zeta|"
    r"operatorname|mathop|newcommand|def|begin|end|underbrace|overbrace|stackrel|substack)(?![A-Za-z])"
)
_EXPONENT_RE = re.compile(r"\^\s*(\{|\()?\s*[-+]?\s*(\d+)")
_FACTORIAL_RE = re.compile(r"!")
_SMALL_FACTORIAL_RE = re.compile(r"(?<![\d.])\d{1,3}\s*!")
_LONG_NUMBER_RE = re.compile(r"\d{31,}")
_SCI_EXPONENT_RE = re.compile(r"(?<=[\d.])[eE][+-]?(\d+)")
_SYMBOL_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z](?![A-Za-z])")

# math-verify warns once per process that its (signal-based) timeout is disabled; we bound inputs instead.
logging.getLogger("math_verify.parser").addFilter(lambda r: "Timeout is disabled" not in r.getMessage())
logging.getLogger("math_verify.grader").addFilter(lambda r: "Timeout is disabled" not in r.getMessage())


def _exponent_groups_have_powers(text: str) -> bool:
    """True for power towers: ``a^{b^c}``, ``a^b^c``, ``(a^b)^c`` style nesting of ``^``."""
    i = text.find("^")
    while i != -1:
        j = i + 1
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] in "{(":
            opener, closer = text[j], "}" if text[j] == "{" else ")"
            depth = 0
            for k in range(j, len(text)):
                if text[k] == opener:
                    depth += 1
                elif text[k] == closer:
                    depth -= 1
                    if depth == 0:
                        if "^" in text[j:k]:
                            return True
                        break
        else:  # bare exponent: 2^3^4
            k = j
            while k < len(text) and (text[k].isalnum() or text[k] in ".-+"):
                k += 1
            if k < len(text) and text[k] == "^":
                return True
        i = text.find("^", i + 1)
    return False


def sympy_safe(text: str) -> bool:
    """Whether ``text`` is small and tame enough to hand to sympy without a timeout."""
    if not text or len(text) > MAX_MATH_CHARS:
        return False
    text = text.replace("**", "^")  # python-style powers reach mathruler's parse_expr as powers too
    depth = max_depth = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            max_depth = max(max_depth, depth)
        elif ch in "})]":
            depth -= 1
    if max_depth > MAX_DEPTH or text.count("{") != text.count("}"):
        return False
    if _FORBIDDEN_RE.search(text) or _LONG_NUMBER_RE.search(text):
        return False
    if text.count("^") > 4 or _exponent_groups_have_powers(text):
        return False
    if any(int(m.group(1)) > 300 for m in _SCI_EXPONENT_RE.finditer(text)):
        return False
    exponents = [int(m.group(2)) for m in _EXPONENT_RE.finditer(text)]
    if exponents:
        has_symbols = bool(_SYMBOL_RE.search(re.sub(r"\\[A-Za-z]+", " ", text)))
        limit = 20 if has_symbols else 10_000
        if max(exponents) > limit or sum(e > 60 for e in exponents) > 1:
            return False
    # factorials only of small literal integers: 12! yes, (10^9)! or n! no
    return len(_FACTORIAL_RE.findall(text)) == len(_SMALL_FACTORIAL_RE.findall(text))


@functools.lru_cache(maxsize=8192)
def _parse_gold(gt: str):
    return _mv_parse(f"${gt}$", parsing_timeout=None)


@functools.lru_cache(maxsize=32768)
def _parse_pred(pred: str):
    return _mv_parse(f"${pred}$", parsing_timeout=None)


# Points at which two expressions with free symbols are compared numerically (arbitrary, away from 0, ±1, π…).
_PROBES = ((0.7371, 1.3249, 2.1713, 0.4517), (1.9183, 0.6011, 1.4427, 2.7301))


def _value_at(expr, point) -> complex | None:
    try:
        value = complex(expr.evalf(15, subs=point))
    except (TypeError, ValueError, OverflowError, ArithmeticError, AttributeError):
        return None
    return value if cmath.isfinite(value) else None


def _clearly_different(gold, parsed) -> bool:
    """True when both answers are plain expressions (no relation, set, tuple) whose values clearly differ —
    as constants, or at a probe point for their free symbols. Equal expressions agree at every point, so this
    only ever skips ``verify`` for answers it would reject; anything undecided goes to ``verify``."""
    g = next((x for x in gold if not isinstance(x, str)), None)
    p = next((x for x in parsed if not isinstance(x, str)), None)
    if not isinstance(g, sympy.Expr) or not isinstance(p, sympy.Expr):
        return False
    symbols = sorted(g.free_symbols | p.free_symbols, key=str)
    if len(symbols) > len(_PROBES[0]):
        return False
    for probe in _PROBES[: 1 if not symbols else 2]:
        point = dict(zip(symbols, probe))
        gv, pv = _value_at(g, point), _value_at(p, point)
        if gv is None or pv is None:
            return False
        if abs(gv - pv) > 1e-4 * max(1.0, abs(gv), abs(pv)):
            return True
    return False


def _mv_equal(pred: str, gt: str) -> bool | None:
    """math-verify's verdict, or ``None`` when it could not read one side as math (then mathruler may try)."""
    try:
        gold = _parse_gold(gt)
        parsed = _parse_pred(pred)
        if not any(not isinstance(x, str) for x in gold) or not any(not isinstance(x, str) for x in parsed):
            return None
        if _clearly_different(gold, parsed):
            verdict = False  # no need for verify's symbolic work
        else:
            verdict = bool(_mv_verify(gold, parsed, timeout_seconds=None))
        if not verdict and (_dropped_text(gt, gold) or _dropped_text(pred, parsed)):
            return None  # math-verify read less than was written (e.g. '4+4t' as 4+4, 't' taken for tonnes)
        return verdict
    except Exception:  # noqa: BLE001 - any grader failure means "not shown equal"
        return None


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _dropped_text(source: str, parsed) -> bool:
    """Whether math-verify's reading of ``source`` (the string it keeps beside the sympy object) lost letters or
    digits — then its verdict is not trusted alone and mathruler gets a say."""
    kept = next((x for x in parsed if isinstance(x, str)), None)
    return kept is not None and _alnum(kept) < _alnum(source)


def _mathruler_equal(pred: str, gt: str) -> bool:
    try:
        return bool(_mathruler_grade(pred, gt))
    except Exception:  # noqa: BLE001
        return False


@functools.lru_cache(maxsize=65536)
def _symbolic_equal(pred: str, gt: str) -> bool:
    """math-verify first (gold first: it is asymmetric); mathruler only where math-verify could not read an answer
    as math, or read less of it than was written. Caller checked safety. ``SympyBudgetExceeded`` propagates (so a verdict cut short is never cached)."""
    verdict = _run_limited(_mv_equal, pred, gt)
    if verdict is not None:
        return verdict
    return _run_limited(_mathruler_equal, pred, gt)


_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _is_prose(text: str) -> bool:
    """Words, not math: a bare word ('even') or three or more words ('every point is 4 units away')."""
    if re.fullmatch(r"[A-Za-z][A-Za-z ]*", text) and len(text.replace(" ", "")) > 1:
        return True
    return len(_WORD_RE.findall(text)) >= 3


def math_equal(pred: str | None, gt: str | None, unit: str = "") -> bool:
    """Whether ``pred`` equals ``gt`` mathematically. Never raises; bounded time for any input."""
    if not pred or not gt:
        return False
    p, g = clean_answer(pred), clean_answer(gt)
    if not p or not g:
        return False
    if squash(p) == squash(g):
        return True
    pn, gn = to_decimal(p, unit), to_decimal(g, unit)
    if pn is not None and gn is not None:
        return numbers_close(pn, gn)
    if not (sympy_safe(p) and sympy_safe(g)) or _is_prose(p) or _is_prose(g):
        return False
    try:
        with sympy_budget():
            return _symbolic_equal(p, g)
    except SympyBudgetExceeded:
        return False


@functools.lru_cache(maxsize=16384)
def _mathruler_cached(pred: str, gt: str) -> bool:
    return _run_limited(_mathruler_equal, pred, gt)


def grade_answer_guarded(pred: str | None, gt: str | None) -> bool:
    """``mathruler.grade_answer`` alone (verl's geo3k rule), with the same input bounds as ``math_equal``."""
    if not pred or not gt:
        return False
    if not (sympy_safe(pred) and sympy_safe(gt)):
        return squash(pred) == squash(gt)
    try:
        with sympy_budget():
            return _mathruler_cached(pred, gt)
    except SympyBudgetExceeded:
        return False


def _value_of(text: str) -> float | None:
    try:
        for item in _parse_gold(text):
            if isinstance(item, str):
                continue
            value = complex(item.evalf(15))
            return float(value.real) if value.imag == 0 else None
    except Exception:  # noqa: BLE001 - not a closed-form number
        return None
    return None


@functools.lru_cache(maxsize=16384)
def _numeric_value_cached(text: str) -> float | None:
    return _run_limited(_value_of, text)


def numeric_value(text: str | None) -> float | None:
    """The real value of a closed-form expression (``\\frac{1}{2}``, ``2\\sqrt{3}``, ``45^2``), or ``None``.

    Stands in for the ``eval(str(latex2sympy(x)))`` of official scripts, without ``eval`` and with bounded input.
    """
    if not text:
        return None
    value = to_number(text)
    if value is not None:
        return value
    text = clean_answer(text)
    if not sympy_safe(text):
        return None
    try:
        with sympy_budget():
            return _numeric_value_cached(text)
    except SympyBudgetExceeded:
        return None


def _warm_up() -> None:
    """Build sympy's and antlr's lazy caches now, so the first scored response does not pay ~0.5 s for them."""
    pairs = (("\\frac{1}{2}", "0.5"), ("2\\sqrt{3}", "\\sqrt{12}"), ("x=3", "3"), ("(-2,1]", "(-2,1]"), ("2x+1", "1+2x"),
             # equations with fractions: their first comparison cost ~0.2 s of CPU, and under a parallel test run it
             # ran out of SYMPY_BUDGET_S and scored a right answer 0
             ("x^2/81 + y^2/9 = 1", "\\frac{x^2}{81}+\\frac{y^2}{9}=1"),
             ("\\pi - \\arctan(1/d)", "\\pi-\\tan ^{-1}\\left(\\frac{1}{d}\\right)"), ("\\sin(x)^2", "1-\\cos^2 x"),
             # a power of a sum against its expansion: the first one in a process cost 0.13-0.27 s, the next 0.04 s
             ("x^{2}+2x+1", "(x+1)^{2}"))
    for pred, gt in pairs:
        try:
            math_equal(pred, gt)
            _mv_equal(pred, gt)
            _mathruler_equal(pred, gt)
        except Exception:  # noqa: BLE001 - warming up is best effort
            pass


_warm_up()
