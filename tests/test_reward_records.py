"""Verifier verdicts on the real benchmark fixture records, with hand-written responses.

Every fixture record (``tests/fixtures/benchmarks/<name>/records.jsonl``) is turned into what data prep hands
the verifiers (``data_source``, ``ground_truth`` = the published answer, ``extra_info`` per the contract in
``reward_fns.schema``), and each gets the same battery of responses:

* the right answer boxed in ``<answer>`` (acc 1, format 1), as an ``Answer: X`` line inside ``<answer>``
  (acc 1, format 1) and as a bare ``Answer: X`` line without tags (acc 1, format 0);
* the option text instead of the letter (acc 1) where the option has plain text;
* two boxes: the last one counts (wrong-then-right: acc 1; right-then-wrong: acc 0; format 0 either way);
* no final answer at all (acc 0, extracted 0); formatted but wrong (acc 0, format 1); garbage (all 0).

The right/wrong answers per record are written out by hand in the tables below (they are not derived from the
verifier). Other reward test modules import ``rows()``, ``RIGHT``, ``WRONG``, ``TEXT`` and the response builders.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from reward_fns import compute_score

# --- fixture records -> (data_source, ground_truth, extra_info), as data prep writes them -------------------------


def _records(fixtures_dir: Path, name: str) -> list[dict]:
    path = fixtures_dir / name / "records.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _flat_options(options: str) -> list[str]:
    items = ast.literal_eval(options)
    if len(items) == 1 and isinstance(items[0], list):  # validation_Accounting_29: "[['A', 'B', '...']]"
        items = items[0]
    return [str(x) for x in items]


def _mathverse_choices(question: str) -> list[str]:
    """The 'Choices:' block (A:… / A. … lines), parsed here independently of reward_fns."""
    _, sep, block = question.rpartition("Choice")
    if not sep:
        return []
    out = []
    for line in block.split("\n")[1:]:
        letter = chr(ord("A") + len(out))
        if line[:1] == letter and line[1:2] in (":", "."):
            out.append(line[2:].strip())
    return out


def _wemath_choices(option: str) -> list[str]:
    out, rest = [], option
    for k in range(26):
        letter, nxt = chr(65 + k), chr(66 + k)
        start = rest.find(f"{letter}.")
        if start == -1:
            break
        rest = rest[start + 2 :]
        cut = min([i for i in (rest.find(f";{nxt}."), rest.find(f"; {nxt}."), rest.find(f" {nxt}.")) if i != -1] or [len(rest)])
        out.append(rest[:cut].strip().rstrip(";").strip())
        rest = rest[cut:]
    return out


def rows(fixtures_dir: Path) -> list[tuple[str, str, str, dict]]:
    """All gradable fixture rows: (data_source, record id, ground truth, extra_info)."""
    out = []
    for r in _records(fixtures_dir, "mathvista"):
        info = {
            "id": r["pid"],
            "question_type": r["question_type"],
            "answer_type": r["answer_type"],
            "choices": r["choices"] or [],
            "precision": -1 if r["precision"] is None else int(r["precision"]),
            "unit": r["unit"] or "",
            "question": r["query"],
        }
        out.append(("mathvista_testmini", r["pid"], r["answer"], info))
    for name in ("mmmu_pro_standard10", "mmmu_pro_vision"):
        for r in _records(fixtures_dir, name):
            info = {
                "id": r["id"],
                "question_type": "multi_choice",
                "answer_type": "letter",
                "choices": _flat_options(r["options"]),
                "question": r.get("question", ""),
            }
            out.append((name, r["id"], r["answer"], info))
    for r in _records(fixtures_dir, "mathverse"):
        mc = r["question_type"] == "multi-choice"
        info = {
            "id": r["sample_index"],
            "question_type": r["question_type"],  # hyphenated, as published: the verifier must accept it
            "answer_type": "letter" if mc else "expr",
            "choices": _mathverse_choices(r["question"]) if mc else [],
            "question": r["question"],
        }
        out.append(("mathverse_testmini", r["sample_index"], r["answer"], info))
    for r in _records(fixtures_dir, "mathvision"):
        info = {
            "id": r["id"],
            "question_type": "multi_choice" if r["options"] else "free_form",
            "answer_type": "letter" if r["options"] else "expr",
            "choices": r["options"],
            "question": r["question"],
        }
        out.append(("mathvision_test", r["id"], r["answer"], info))
    for r in _records(fixtures_dir, "wemath"):
        rid = f"{r['ID']}|{r['key']}"
        info = {
            "id": rid,
            "question_type": "multi_choice",
            "answer_type": "letter",
            "choices": _wemath_choices(r["option"]),
            "question": r["question"],
        }
        out.append(("wemath_testmini", rid, r["answer"], info))
    for r in _records(fixtures_dir, "logicvista"):
        if not r["answer"].strip():
            continue  # v1_382: no answer (data prep drops it; test_reward_api checks the verifier refuses it)
        info = {
            "id": r["id"],
            "question_type": "multi_choice",
            "answer_type": "letter_set" if "," in r["answer"] else "letter",
            "choices": [],
            "question": r["question"],
        }
        out.append(("logicvista_test", r["id"], r["answer"], info))
    # Geometry3K has no fixture records (HF parquet only); these answers are the ones benchmarks.md quotes.
    for rid, gt in (("g3k-1", "3"), ("g3k-2", "2 \\sqrt { 221 }"), ("g3k-3", "\\frac { 4 } { 3 }"), ("g3k-4", "25.4")):
        out.append(("hiyouga/geometry3k", rid, gt, {"id": rid, "question": "<image>Find x."}))
    return out


# --- hand-written answers per record: RIGHT (list of accepted forms), WRONG, TEXT (option text instead of letter) ---

RIGHT: dict[tuple[str, str], list[str]] = {}
WRONG: dict[tuple[str, str], str] = {}
TEXT: dict[tuple[str, str], str] = {}


def _table(source: str, entries: dict[str, tuple]) -> None:
    for rid, entry in entries.items():
        right, wrong, *text = entry
        RIGHT[(source, rid)] = right if isinstance(right, list) else [right]
        WRONG[(source, rid)] = wrong
        if text and text[0] is not None:
            TEXT[(source, rid)] = text[0]


_table(
    "mathvista_testmini",
    {
        "1": (["1.2", "1.20", "d = 1.2"], "1.3"),
        "108": (["51.04", "51.040"], "51.4"),
        "420": (["0.0", "0"], "0.1"),
        "833": (["-4.3", "−4.3"], "4.3"),
        "2": (["1000", "1000 g", "1,000", "1000\\text{ g}"], "100"),
        "27": (["11", "11 years"], "12"),
        "45": (["-3"], "3"),
        "506": (["[2014, 2016]", "2014, 2016"], "[2016, 2014]"),
        "781": (["C", "D", "(C)"], "A", "18"),  # duplicate options: both C and D are the text '18'
        "740": (["A"], "C", "15"),  # duplicate '50' options are wrong here
        "587": (["B"], "A", "20\\sqrt{2}"),  # option '20√{2}海里': unit-less text is accepted
        "700": (["C"], "D", "2\\sqrt{2}"),
        "10": (["E"], "A"),  # the choices are the letters themselves
        "342": (["D", "d"], "b"),  # lower-case letter choices
        "340": (["E"], "A", "Science"),
        "86": (["G"], "F", "RFT U13B"),
        "400": (["G"], "A", "4.0"),
        "3": (["C", "C. 145°"], "A", "145^\\circ"),
        "18": (
            ["B"],
            "A",
            "Does Linda's snowboard slide down a hill in less time when it has a layer of wax or when it does not "
            "have a layer of wax?",
        ),
        "24": (["B"], "A", "no"),
        "8": (["A"], "B", "Yes"),
        "204": (["12"], "13"),
    },
)
_table(
    "mmmu_pro_standard10",
    {
        "test_History_1": (["B", "(B)", "Option B"], "A", "The spread of pathogens across the Silk Road"),
        "test_Music_251": (["A"], "B"),  # options are image tokens: no text answer
        "test_Energy_and_Power_276": (["B"], "C", "0.333 m"),
        "validation_Energy_and_Power_2": (["D"], "I", "0.32 0.67"),
        "validation_Design_19": (["H"], "G", "Time waits for no man"),
        "validation_Clinical_Medicine_23": (["D"], "C", "Kidneys"),
        "test_History_134": (["J"], "I", "A dramatic increase in migration"),
        "validation_Music_11": (["F"], "J", "lower morden"),
        "validation_Biology_1": (["D"], "B", "Peroneus longus"),
        "test_Clinical_Medicine_69": (["A"], "B", "The patient has a ruptured esophagus"),
        "validation_Accounting_29": (["B"], "A"),  # nested options ['A','B','Not enough information']
        "test_Computer_Science_61": (["F"], "L", "7 and 14 are siblings"),  # 12 options, A-L
        "test_Pharmacy_287": (["A"], "B", "False"),
        "test_Computer_Science_151": (["C"], "A", "No"),
        "test_Geography_252": (["B"], "A"),
        "validation_Math_19": (["C"], "B"),
        "test_Biology_321": (["C"], "E"),
        "test_Computer_Science_158": (["F"], "A"),
        "validation_Architecture_and_Engineering_17": (["J"], "A"),
    },
)
_table(
    "mmmu_pro_vision",
    {
        "test_Clinical_Medicine_69": (["A"], "J", "The patient has a ruptured esophagus"),
        "validation_Energy_and_Power_2": (["D"], "A", "0.32 0.67"),
        "test_Clinical_Medicine_118": (["E"], "A", "Cystic fibrosis"),
        "validation_Clinical_Medicine_23": (["D"], "A", "Kidneys"),
        "validation_Music_11": (["F"], "A", "lower morden"),
        "test_Music_251": (["A"], "D"),
        "validation_Energy_and_Power_10": (["C"], "A", "0.71 W/m K"),
        "test_Energy_and_Power_276": (["B"], "I", "0.333 m"),
        "validation_Clinical_Medicine_2": (["H"], "A", "atrial flutter"),
        "validation_Energy_and_Power_24": (["E"], "A", "E1 + E2 + E3"),
        "validation_Biology_1": (["D"], "A", "Peroneus longus"),
        "validation_Accounting_29": (["B"], "C"),
        "test_Computer_Science_61": (["F"], "K", "7 and 14 are siblings"),
        "test_Pharmacy_287": (["A"], "B", "False"),
    },
)
_table(
    "mathverse_testmini",
    {
        "3421": (["14", "14 cm", "L = 14"], "13"),
        "3422": (["14"], "15"),
        "3423": (["14"], "15"),
        "3424": (["14"], "15"),
        "3425": (["14"], "15"),
        "1": (["D"], "C", "140°"),
        "524": (["E"], "F", "\\hline \\sin \\left(270^{\\circ}\\right)"),
        "622": (["C"], "A"),
        "339": (["A"], "B", "090^\\circ T"),  # published answer is the option text
        "429": (["B"], "A", "False"),  # published answer is the option text
        "440": (["C, D", "C and D", "CD"], "C"),  # two correct letters: naming only one is wrong
        "517": (["C"], "B", "y is increasing at an increasing rate"),  # published answer '(C)'
        "331": (["315^\\circ T", "315°T", "315^\\circ"], "45^\\circ T"),
        "334": (["118^\\circ T", "118°T"], "28^\\circ T"),  # published '118掳T' (mojibake for °)
        "330": (["S 23.5^\\circ W", "S23.5°W"], "N 23.5^\\circ E"),
        "395": (["9\\pi", "9 \\pi \\text{ cm}^2", "A = 9\\pi"], "6\\pi"),
        "431": (["15", "h = 15"], "21"),
        "420": (["5", "s = 5"], "4"),
        "418": (["74", "74 \\text{ mm}"], "47"),
        "390": (["7", "7.00", "r = 7.00"], "7.01"),
        "474": (["(-2, 1]"], "[-2, 1)"),
        "434": (["\\frac{x^2}{81}+\\frac{y^2}{9}=1", "x^2/81 + y^2/9 = 1"], "\\frac{x^2}{9}+\\frac{y^2}{81}=1"),
        "459": (
            ["Complete the statement.Every point on the circle is exactly 5 units away from the point (0,0)."],
            "Every point is 4 units away",
        ),
        "504": (["even", "Even"], "odd"),
    },
)
_table(
    "mathvision_test",
    {
        "1": (["60"], "50"),
        "19": (["D"], "C", "2 \\cdot 4 \\cdot 3"),
        "21": (["E"], "D"),
        "33": (["A"], "B"),
        "2653": (["A"], "B"),
        "59": (["C"], "A"),  # free-form item whose answer is a letter
        "434": (["C"], "D"),
        "250": (["4.8", "\\frac{24}{5}"], "4.5"),
        "1199": (["8", "8.0"], "9"),
        "203": (["-2"], "2"),
        "1500": (["C"], "B"),
        "2521": (["11"], "12"),  # published '11 ' (trailing space)
        "2796": (["\\frac{\\sqrt{6}}{6}", "\\frac{1}{\\sqrt{6}}"], "\\frac{\\sqrt{6}}{3}"),
        "2828": (["\\frac{16}{7}"], "\\frac{16}{9}"),  # published '$\boxed{\frac{16}{7}}$'
        "2830": (["\\frac{36}{13}"], "\\frac{36}{11}"),  # published '\x0crac{36}{13}'
        "2846": (["\\frac{7}{3}", "7/3"], "\\frac{3}{7}"),
        "2849": (["1+\\sqrt{3}", "\\sqrt{3}+1"], "1+\\sqrt{2}"),
        "2937": (["1:2", "\\frac{1}{2}"], "2:1"),
        "2947": (["69", "69^\\circ"], "96"),  # published '69{degrees}'
        "3007": (["8\\sqrt{3}"], "8\\sqrt{2}"),  # published '8\sqrt{3}{squareinches}'
        "2955": (["(3,-4)"], "(-3,4)"),
        "2866": (["\\pi-\\tan^{-1}\\left(\\frac{1}{d}\\right)", "\\pi - \\arctan(1/d)"], "\\tan^{-1}(d)"),
        "2925": (["2025", "45^2"], "2045"),
        "2804": (["\\frac{90}{23}"], "\\frac{90}{29}"),
    },
)
_table(
    "wemath_testmini",
    {
        "2steps_1|2steps_1": (["C"], "D", "3000, 4000"),
        "2steps_1|2steps_2": (["A"], "B", "First walk 3000m northeast, then walk 4000m east"),
        "2steps_1|2steps_multi": (["A"], "B"),
        "3steps_1|3steps_1": (["D"], "A", "90"),
        "3steps_1|3steps_2": (["B"], "A", "25.12"),
        "3steps_1|3steps_3": (["D"], "C", "6.28"),
        "3steps_1|3steps_multi": (["D"], "C"),
        "2steps_183|2steps_1": (["E"], "G", "①"),
        "2steps_7|2steps_1": (["B"], "A", "10π"),
        "2steps_22|2steps_1": (["C"], "A"),  # option texts are letters: 'C' is both the letter and option C
        "2steps_9|2steps_1": (["D"], "C", "I"),
        "2steps_2|2steps_1": (["A"], "D", "3, 5, 4"),
        "2steps_13|2steps_1": (["B"], "A", "Right"),
        "3steps_38|3steps_1": (["A"], "B", "45°"),
        "3steps_129|3steps_1": (["A"], "E", "⑤"),
    },
)
_table(
    "logicvista_test",
    {
        "v1_0": (["C", "(C)", "Option C"], "D"),
        "v1_1": (["A, C", "A and C", "AC", "C, A"], "A"),  # both letters are required
        "v1_2": (["B, D", "B and D"], "B, C"),
        "v1_4": (["G"], "F"),
        "v1_220": (["D"], "A"),
        "v1_20": (["3", "(3)"], "2"),
        "v1_21": (["F"], "E"),
        "v1_52": (["C"], "A"),
        "v1_23": (["C"], "D"),
        "v1_69": (["B"], "C"),
        "v1_131": (["D"], "B"),
        "v1_7": (["E"], "F"),
        "v1_287": (["A"], "B"),
    },
)
_table(
    "hiyouga/geometry3k",
    {
        "g3k-1": (["3", "3.0", "x = 3"], "4"),
        "g3k-2": (["2\\sqrt{221}", "2 \\sqrt{221}", "\\sqrt{884}"], "\\sqrt{221}"),
        "g3k-3": (["\\frac{4}{3}", "4/3"], "\\frac{3}{4}"),
        "g3k-4": (["25.4"], "25.3"),
    },
)

# --- responses ------------------------------------------------------------------------------------------------

THINK = "<think>Reading the figure and checking each option carefully.</think>"


def boxed(x: str) -> str:
    return f"{THINK}\n<answer>\\boxed{{{x}}}</answer>"


def answer_line_tagged(x: str) -> str:
    return f"{THINK}\n<answer>Answer: {x}</answer>"


def answer_line_bare(x: str) -> str:
    return f"Let me reason about the image first.\nSo the result follows.\nAnswer: {x}"


def two_boxes(first: str, last: str) -> str:
    return f"{THINK}\n<answer>\\boxed{{{first}}} … no, correcting myself: \\boxed{{{last}}}</answer>"


NO_ANSWER = f"{THINK}\nI could not decide between the options, so I will stop here."
GARBAGE = "}}{{\\boxed{ ]]] <answer <think> \x00 ::: 🙃 \\frac{"


def score(source: str, response: str, gt: str, info: dict, **kw) -> dict:
    return compute_score(source, response, gt, info, **kw)


# --- the tests ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_rows(fixtures_dir):
    return rows(fixtures_dir)


def test_tables_cover_every_fixture_record(all_rows):
    keys = {(src, rid) for src, rid, _, _ in all_rows}
    assert keys == set(RIGHT), f"missing: {keys - set(RIGHT)}, stale: {set(RIGHT) - keys}"
    counts = {}
    for src, *_ in all_rows:
        counts[src] = counts.get(src, 0) + 1
    assert counts == {
        "mathvista_testmini": 22,
        "mmmu_pro_standard10": 19,
        "mmmu_pro_vision": 14,
        "mathverse_testmini": 24,
        "mathvision_test": 24,
        "wemath_testmini": 15,
        "logicvista_test": 13,
        "hiyouga/geometry3k": 4,
    }


def _cases(all_rows):
    yield from all_rows


def test_right_answer_boxed_and_as_answer_line(all_rows):
    bad = []
    for src, rid, gt, info in _cases(all_rows):
        for form in RIGHT[(src, rid)]:
            for builder, fmt in ((boxed, 1.0), (answer_line_tagged, 1.0), (answer_line_bare, 0.0)):
                r = score(src, builder(form), gt, info)
                if (r["acc"], r["format"], r["extracted"]) != (1.0, fmt, 1.0):
                    bad.append((src, rid, builder.__name__, form, r))
    assert not bad, "\n".join(map(repr, bad))


def test_ground_truth_verbatim_in_answer_tag_is_right(all_rows):
    """The data-prep round trip: the published answer itself, as the whole <answer>, is accepted."""
    bad = []
    for src, rid, gt, info in _cases(all_rows):
        r = score(src, f"{THINK}<answer>{gt}</answer>", gt, info)
        if r["acc"] != 1.0:
            bad.append((src, rid, gt, r))
    assert not bad, "\n".join(map(repr, bad))


def test_option_text_instead_of_letter(all_rows):
    assert len(TEXT) >= 50
    bad = []
    for src, rid, gt, info in _cases(all_rows):
        if (src, rid) not in TEXT:
            continue
        r = score(src, boxed(TEXT[(src, rid)]), gt, info)
        if (r["acc"], r["format"]) != (1.0, 1.0):
            bad.append((src, rid, TEXT[(src, rid)], r))
    assert not bad, "\n".join(map(repr, bad))


def test_formatted_but_wrong_is_acc_0_format_1(all_rows):
    bad = []
    for src, rid, gt, info in _cases(all_rows):
        r = score(src, boxed(WRONG[(src, rid)]), gt, info)
        if (r["acc"], r["format"], r["extracted"], r["score"]) != (0.0, 1.0, 1.0, 0.0):
            bad.append((src, rid, WRONG[(src, rid)], r))
        shaped = score(src, boxed(WRONG[(src, rid)]), gt, info, format_weight=0.1)
        if abs(shaped["score"] - 0.1) > 1e-12 or shaped["acc"] != 0.0:
            bad.append((src, rid, "format_weight", shaped))
    assert not bad, "\n".join(map(repr, bad))


def test_two_boxes_last_one_counts(all_rows):
    bad = []
    for src, rid, gt, info in _cases(all_rows):
        right, wrong = RIGHT[(src, rid)][0], WRONG[(src, rid)]
        late_right = score(src, two_boxes(wrong, right), gt, info)
        late_wrong = score(src, two_boxes(right, wrong), gt, info)
        if (late_right["acc"], late_right["format"]) != (1.0, 0.0) or (late_wrong["acc"], late_wrong["format"]) != (
            0.0,
            0.0,
        ):
            bad.append((src, rid, late_right, late_wrong))
    assert not bad, "\n".join(map(repr, bad))


def test_no_answer_and_garbage_score_zero(all_rows):
    for src, rid, gt, info in _cases(all_rows):
        for response in (NO_ANSWER, GARBAGE, "", None):
            r = score(src, response, gt, info)
            assert (r["score"], r["acc"], r["format"], r["extracted"]) == (0.0, 0.0, 0.0, 0.0), (src, rid, response, r)
            assert r["pred"] == ""


def test_right_answer_with_format_weight_scores_one(all_rows):
    for src, rid, gt, info in _cases(all_rows):
        r = score(src, boxed(RIGHT[(src, rid)][0]), gt, info, format_weight=0.1)
        assert r["score"] == pytest.approx(1.0) and r["acc"] == 1.0, (src, rid, r)
        unformatted = score(src, answer_line_bare(RIGHT[(src, rid)][0]), gt, info, format_weight=0.1)
        assert unformatted["score"] == pytest.approx(0.9) and unformatted["acc"] == 1.0, (src, rid, unformatted)
