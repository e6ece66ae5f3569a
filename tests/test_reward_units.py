"""Unit tests of reward_fns' building blocks: extraction, strict format, letters/options, normalisation, the math
guard and budget, and the thread-targeted CPU limit."""

from __future__ import annotations

import contextlib
import gc
import threading
import time

import pytest

from reward_fns import deadline, mathcheck
from reward_fns.choice import (
    match_option_text,
    options_from_text,
    parse_letter,
    parse_letter_set,
)
from reward_fns.extract import (
    answer_line,
    answer_region,
    extract_final,
    format_ok,
    last_boxed,
)
from reward_fns.normalize import (
    clean_ground_truth,
    fix_unicode,
    parse_number_list,
    to_number,
)
from reward_fns.verifiers.mathverse import value_aliases

# --- extraction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{3}", "3"),
        ("a \\boxed{1} b \\boxed{2}", "2"),  # last wins
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # balanced braces
        ("\\boxed {7}", "7"),  # space before the brace
        ("\\fbox{C}", "C"),
        ("\\boxed{\\boxed{5}}", "5"),  # nested: the inner (last opened) box
        ("\\boxed{4} and then \\boxed{5", "4"),  # the unbalanced last box is skipped
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces are literal
        ("no box here", None),
        ("\\boxed{", None),
        ("}}}\\boxed{x}{{{", "x"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_answer_region_and_lines():
    assert answer_region("<think>a</think><answer> B </answer>").text == " B "
    assert answer_region("<think>a</think>< answer >B</ Answer>").text == "B"  # tolerant tags
    assert answer_region("<think>a</think><answer>B and more").text == "B and more"  # unclosed: to the end
    assert answer_region("<think>a</think> after").text == " after"
    assert answer_region("<answer>1</answer><answer>2</answer>").text == "2"  # the last answer
    assert answer_line("work\nAnswer: B") == "B"
    assert answer_line("**Final Answer:** C") == "C"
    assert answer_line("answer：D") == "D"
    assert answer_line("The answer is E") is None  # prose is for the official modes only
    assert answer_line("Answer: A\nmore\nAnswer: B") == "B"


@pytest.mark.parametrize(
    "response, answer, how",
    [
        ("<think>x</think><answer>\\boxed{3}</answer>", "3", "boxed"),
        ("<think>\\boxed{1}</think><answer>\\boxed{3}</answer>", "3", "boxed"),
        ("<think>\\boxed{1}</think><answer>3</answer>", "3", "answer_tag"),  # the answer tag beats a box in think
        ("<think>x</think><answer>Answer: B</answer>", "B", "answer_line"),
        ("<think>x</think>The result is \\boxed{9}", "9", "boxed"),
        ("<think>only \\boxed{9} in think</think>", "9", "boxed"),  # last resort: any box
        ("reasoning\nAnswer: 12", "12", "answer_line"),
        ("<think>x</think><answer>   </answer>", None, "none"),
        ("", None, "none"),
        ("I think it is 12.", None, "none"),
    ],
)
def test_extract_final(response, answer, how):
    found = extract_final(response)
    assert (found.answer, found.how) == (answer, how)


def test_extract_final_prose_only_when_asked():
    assert extract_final("So the answer is 12. Done.").answer is None
    assert extract_final("So the answer is 12. Done.", prose=True).answer == "12"
    assert extract_final("Lots of work\nfinal: 42", prose=True) == extract_final("Lots of work\nfinal: 42", prose=True)
    assert extract_final("Lots of work\n42", prose=True).how == "last_line"


@pytest.mark.parametrize(
    "response, ok",
    [
        ("<think>r</think><answer>3</answer>", True),
        ("  <think>r</think>\n\n<answer>\\boxed{3}</answer>\n", True),
        ("<think>a \\boxed{1} b</think><answer>\\boxed{3}</answer>", True),  # boxes in think are fine
        ("<think>r</think><answer>\\boxed{3} or \\boxed{4}</answer>", False),  # two boxes in the answer
        ("<think>r</think><answer>\\boxed{3</answer>", False),  # unbalanced box
        ("<think>r</think><answer>\\boxed{}</answer>", False),  # empty box
        ("<think>r</think><answer></answer>", False),
        ("<think> </think><answer>3</answer>", False),  # empty reasoning
        ("Sure! <think>r</think><answer>3</answer>", False),  # text before
        ("<think>r</think><answer>3</answer> Hope it helps", False),  # text after
        ("<think>r</think> x <answer>3</answer>", False),  # text between
        ("<think>r</think><answer>3</answer><answer>4</answer>", False),
        ("<think>r<think>s</think><answer>3</answer>", False),
        ("<answer>3</answer><think>r</think>", False),
        ("<think>r</think>\\boxed{3}", False),  # EasyR1's math.jinja shape is not this recipe's format
        ("< think>r</think><answer>3</answer>", False),  # format is strict about the tags themselves
        (None, False),
    ],
)
def test_format_is_strict(response, ok):
    assert format_ok(response) is ok


# --- letters and options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, n, letter",
    [
        ("B", 4, "B"),
        ("b", 4, "B"),  # a lone lower-case letter is a letter
        ("(c)", 4, "C"),
        ("\\text{D}", 4, "D"),
        ("$\\mathbf{(A)}$.", 4, "A"),
        ("B. 145°", 4, "B"),
        ("(B) 12", 4, "B"),
        ("Option C", 4, "C"),
        ("The correct answer is D", 4, "D"),
        ("E", 4, None),  # out of range
        ("L", 12, "L"),
        ("I think B", 4, None),  # no guessing from prose
        ("the answer is a triangle", 4, None),  # 'a' is an article here
        ("145°", 4, None),
        ("", 4, None),
    ],
)
def test_parse_letter(answer, n, letter):
    assert parse_letter(answer, n) == letter


@pytest.mark.parametrize(
    "answer, letters",
    [
        ("A, C", {"A", "C"}),
        ("AC", {"A", "C"}),
        ("A and C", {"A", "C"}),
        ("(A) (C)", {"A", "C"}),
        ("C\nD", {"C", "D"}),
        ("B", {"B"}),
        ("Option B", {"B"}),
        ("AA", None),  # not a set of distinct letters
        ("I think so", None),
        ("A, Z", None),  # Z is out of range for 6 options
    ],
)
def test_parse_letter_set(answer, letters):
    got = parse_letter_set(answer, 6)
    assert (set(got) if got is not None else None) == letters


def test_match_option_text():
    assert match_option_text("18", ["9", "12", "18", "18"]) == [2, 3]  # duplicates both match
    assert match_option_text("50", ["15", "100", "50", "50"]) == [2, 3]
    assert match_option_text("20\\sqrt{2}", ["20海里", "20√{2}海里", "15海里"]) == [1]  # unit-less
    assert match_option_text("145", ["135°", "140°", "145°"]) == [2]
    assert match_option_text("0.5", ["\\frac{1}{2}", "\\frac{1}{3}"]) == [0]  # math-equivalent option
    assert match_option_text("science", ["Legal ", "Science"]) == [1]  # case and spaces
    assert match_option_text("RFT U13", ["RFT U13B", "ICL"]) == []  # a prefix is not the option
    assert match_option_text("12", ["\\frac{24}{2}", "12"]) == [1]  # an exact text match wins
    assert match_option_text("12", ["\\frac{24}{2}", "\\frac{36}{3}"]) == []  # two different options: ambiguous
    assert match_option_text("", ["a"]) == [] and match_option_text("a", []) == []


def test_options_from_text():
    assert options_from_text("Q?\nChoices:\nA:40°\nB:60°\nC:120°") == ["40°", "60°", "120°"]
    assert options_from_text("Q?\nChoice:\nA. True\nB. False") == ["True", "False"]
    assert options_from_text("Q\nChoices:\nA.$y$ up\nB.$y$ down\nFormat: think first.") == ["$y$ up", "$y$ down"]
    assert options_from_text("A. 300, 400;B. 400, 300; C. 3000; D. No correct answer") == [
        "300, 400",
        "400, 300",
        "3000",
        "No correct answer",
    ]
    assert options_from_text("A. 45° B. 60° ;C. 120°; D. No correct answer") == ["45°", "60°", "120°", "No correct answer"]
    assert options_from_text("In triangle ABC, point A. is on the line") == []
    assert options_from_text("") == []


# --- normalisation ----------------------------------------------------------------------------------------------


def test_to_number_and_lists():
    assert to_number("1,000") == 1000.0
    assert to_number("1000 g", "g") == 1000.0
    assert to_number("1000 g") is None  # unknown unit: not a plain number
    assert to_number("60°") == 60.0 and to_number("60^{\\circ}") == 60.0
    assert to_number("−4.3") == -4.3  # unicode minus
    assert to_number("１２") == 12.0  # full-width digits
    assert to_number("\\frac{1}{2}") is None  # LaTeX goes to the math graders
    assert to_number("1e400") is None  # not finite
    assert parse_number_list("[2014, 2016]") == [2014.0, 2016.0]
    assert parse_number_list("2014 and 2016") == [2014.0, 2016.0]
    assert parse_number_list("[1, x]") is None


def test_clean_ground_truth_dirt():
    assert clean_ground_truth("11 ") == "11"
    assert clean_ground_truth("$\\boxed{\\frac{16}{7}}$") == "\\frac{16}{7}"
    assert clean_ground_truth("\x0crac{36}{13}") == "\\frac{36}{13}"
    assert clean_ground_truth("69{degrees}") == "69"
    assert clean_ground_truth("8\\sqrt{3}{squareinches}") == "8\\sqrt{3}"
    assert clean_ground_truth("C\nD") == "C\nD"  # a real newline is data, not dirt
    assert fix_unicode("20√{2}海里") == "20\\sqrt{2}海里"
    assert "\\circ" in fix_unicode("118掳T")


def test_mathverse_value_aliases():
    assert "15" in value_aliases("$h=15$")
    assert "5" in value_aliases("$5=s$")
    assert "9 \\pi" in value_aliases("Area $=9 \\pi \\mathrm{cm}^{2}$")
    assert "74" in value_aliases(" Perimeter $=74 \\mathrm{~mm}$")
    assert "315" in value_aliases("315^\\circT")
    assert value_aliases("\\frac{x^2}{81}+\\frac{y^2}{9}=1") == ["\\frac{x^2}{81}+\\frac{y^2}{9}=1"]  # an equation


# --- math guard, equivalence and budget ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "9^{9^{9}}",
        "2^3^4",
        "10**10**10",
        "(999^{999})^{999}",
        "10^{99999}",
        "x^{100}-1",
        "(10^{9})!",
        "1000!",
        "\\sum_{i=1}^{n} i",
        "\\int_0^1 x dx",
        "\\binom{100000}{50000}",
        "1e999",
        "9" * 40,
        "{" * 20 + "1" + "}" * 20,
        "\\frac{1}{2",
        "x" * 200,
    ],
)
def test_sympy_guard_rejects_dangerous_input(expr):
    assert not mathcheck.sympy_safe(expr)


@pytest.mark.parametrize("expr", ["2\\sqrt{221}", "\\frac{x^2}{81}+\\frac{y^2}{9}=1", "(-2,1]", "45^2", "2^{1000}", "5!", "1e-6"])
def test_sympy_guard_accepts_ordinary_answers(expr):
    assert mathcheck.sympy_safe(expr)


def test_math_equal():
    eq = mathcheck.math_equal
    assert eq("2\\sqrt{221}", "2 \\sqrt { 221 }") and eq("\\sqrt{884}", "2\\sqrt{221}")
    assert eq("0.5", "\\frac{1}{2}") and eq("7", "7.00") and eq("2025", "45^2") and eq("(3,-4)", "(3,-4)")
    assert eq("x=3", "3") and eq("1000 g", "1000", unit="g")
    assert not eq("0.333", "\\frac{1}{3}") and not eq("[-2,1)", "(-2,1]") and not eq("3", "4")
    assert not eq("", "3") and not eq(None, "3")
    # too dangerous for sympy: only an exact match counts
    assert eq("9^{9^{9}}", "9^{9^{9}}") and not eq("9^{9^{9}}", "9^{9^{9}}+0")


def test_budget_exhaustion_is_not_equal_and_not_cached(monkeypatch):
    pair = ("\\tan^{-1}(y)+\\frac{\\pi}{4}", "\\frac{\\pi}{4}+\\arctan(y)")
    mathcheck._symbolic_equal.cache_clear()
    with mathcheck.sympy_budget(0.0):
        assert mathcheck.math_equal(*pair) is False  # no budget left: "not shown equal"
    assert mathcheck.math_equal(*pair) is True  # and that verdict was not cached


# --- the CPU limit --------------------------------------------------------------------------------------------


def _busy(seconds: float) -> str:
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return "finished"


def test_cpu_limit_interrupts_a_worker_thread_and_leaves_nothing_behind():
    outcome = {}

    def worker():
        start = time.thread_time()
        try:
            deadline.run_with_cpu_limit(0.05, _busy, 5.0)
            outcome["result"] = "finished"
        except deadline.BudgetExceeded:
            outcome["result"] = "interrupted"
        outcome["cpu"] = time.thread_time() - start
        _busy(0.1)  # a stray asynchronous exception would surface here
        outcome["after"] = "clean"

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert outcome == {"result": "interrupted", "cpu": pytest.approx(outcome["cpu"]), "after": "clean"}
    assert outcome["cpu"] < 0.5
    assert deadline.run_with_cpu_limit(1.0, _busy, 0.01) == "finished"  # main thread, within budget
    with pytest.raises(deadline.BudgetExceeded):
        deadline.run_with_cpu_limit(0.0, _busy, 0.01)


def test_cpu_limit_many_short_calls_from_many_threads():
    """Six threads each make 12 limited calls: every third one would need far more than its budget (it must be
    interrupted), the others fit easily (they must finish). No exception may escape a call: the plain work after
    each call would catch it. (Under GIL contention the watchdog reacts within a few switch intervals, so the
    over-budget work is made long enough for that.)"""
    errors, results = [], []

    def worker(k):
        for j in range(12):
            over = j % 3 == 0
            try:
                outcome = deadline.run_with_cpu_limit(0.02 if over else 1.0, _busy, 2.0 if over else 0.002)
            except deadline.BudgetExceeded:
                outcome = "interrupted"
            results.append((over, outcome))
            try:
                _busy(0.001)
            except deadline.BudgetExceeded:
                errors.append((k, j))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, f"asynchronous exceptions escaped their call: {errors}"
    assert len(results) == 72
    assert {outcome for over, outcome in results if over} == {"interrupted"}
    assert {outcome for over, outcome in results if not over} == {"finished"}


# --- garbage collection waits until a limited call is over --------------------------------------------------------


@contextlib.contextmanager
def _collections_due_every(allocations: int, on_gc):
    """Collections fall due every ``allocations`` allocations and ``on_gc`` sees each; all restored after."""
    thresholds = gc.get_threshold()
    gc.callbacks.append(on_gc)
    gc.set_threshold(allocations)
    try:
        yield
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*thresholds)
        gc.enable()


def test_no_automatic_collection_runs_inside_a_limited_call_and_it_resumes_after():
    seen, during = [], []

    def on_gc(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    def allocate():
        first = len(seen)
        assert not gc.isenabled()
        n = len([[i] for i in range(5000)])
        during.extend(seen[first:])
        return n

    with _collections_due_every(50, on_gc):
        assert deadline.run_with_cpu_limit(1.0, allocate) == 5000
        assert during == []
        assert gc.isenabled()
        after = len(seen)
        [[i] for i in range(5000)]
        assert len(seen) > after  # and afterwards they run again


def test_no_collection_runs_inside_a_budgeted_comparison_and_the_verdict_stands(monkeypatch):
    """CI failure of ``math_equal('x^{2}+18x+81', '(x+9)^{2}')`` scoring 0: a collection fell due inside
    math-verify's work, and its cost (a full collection of a process with verl loaded: ~0.6 CPU-s) used up the reward
    call's 0.5 s budget. Here collections fall due every 10 allocations: none may start inside the comparison."""
    inside, calls, during = [], [], []
    real = mathcheck._mv_equal

    def watched(pred, gt):  # what _run_limited runs under the budget
        calls.append((pred, gt))
        inside.append(True)
        try:
            return real(pred, gt)
        finally:
            inside.pop()

    def on_gc(phase, info):
        if phase == "start" and inside:
            during.append(info["generation"])

    monkeypatch.setattr(mathcheck, "_mv_equal", watched)
    mathcheck._symbolic_equal.cache_clear()
    with _collections_due_every(10, on_gc):
        assert mathcheck.math_equal("z^{2}+14z+49", "(z+7)^{2}") is True
    assert calls, "the comparison never reached math-verify: the test did not test anything"
    assert during == [], f"{len(during)} collections ran inside the budgeted comparison"
