"""``mode="official"`` on free-form responses: the rules that stand in for the benchmarks' LLM answer extractors
(``reward_fns/freeform.py``), MathVista's own pipeline parts, LogicVista's pre-GPT rules, and what stays strict in
``mode="train"``.

Every response here is written for the rule it tests (none is copied from published results). Each case states
what a careful reader takes from the response; MathVista's official normalisation then applies unchanged.
"""

from __future__ import annotations

import doctest
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import cpu_seconds
from test_reward_robustness import ADVERSARIAL

from reward_fns import compute_score, freeform
from reward_fns.choice import parenthesised_options
from reward_fns.verifiers import logicvista, mathvista, wemath

# --- MathVista: numbers stated inside a sentence ---------------------------------------------------------------------

INTEGER = {"id": "t-int", "question_type": "free_form", "answer_type": "integer", "precision": -1}
FLOAT2 = {"id": "t-float", "question_type": "free_form", "answer_type": "float", "precision": 2}


INTEGER_CASES = [
    ("Counting every basket, so the total comes to 12 apples.", "12", "12"),
    ("The tallest bar reaches 75.", "75", "75"),
    ("The answer is 12. Let me know if you need anything else!", "12", "12"),  # trailing pleasantries
    ("There are **7** red cubes left. I hope that helps.", "7", "7"),  # bold
    ("The square has side 4, so the perimeter is 4 x 4 = 16 meters.", "16", "16"),  # after '='
    ("Spending stayed below 0.2% of GDP until 1970.", "1970", "1970"),  # no 'is': the last number
    ("There are 9 dots in 3 groups. There are 3 dots in each group.</s>", "3", "3"),  # last sentence, EOS token
    ("The difference in fare is $2.", "2", "2"),
    ("We count 1,578 points in total.", "1578", "1578"),
    ("The slope is −3.", "-3", "-3"),
    ("The rope is 12cm long.", "12", "12"),  # a unit glued to the number
    ("所以答案是12", "12", "12"),
    ("Let's count: 1, 2, 3, 4, 5. So five objects.", "5", "5"),  # a number word in the final sentence
    ("The answer is seven.", "7", "7"),
    ("Version R2 of the chart shows 4 bars.", "4", "4"),  # "R2" is a label, not a number
]


@pytest.mark.parametrize(("response", "gt", "pred"), INTEGER_CASES)
def test_mathvista_integer_in_a_sentence(response, gt, pred):
    official = compute_score("mathvista_testmini", response, gt, INTEGER, mode="official")
    assert (official["acc"], official["pred"]) == (1.0, pred)
    train = compute_score("mathvista_testmini", response, gt, INTEGER)  # train: no <answer>/box/Answer line
    assert (train["acc"], train["extracted"]) == (0.0, 0.0)


def test_mathvista_numbers_are_normalised_as_officially():
    # integers: str(int(float(x))) truncates, so 3.7 counts as 3 (and is wrong for 4)
    about = "It holds about 3.7 liters."
    assert compute_score("mathvista_testmini", about, "3", INTEGER, mode="official")["acc"] == 1.0
    assert compute_score("mathvista_testmini", about, "4", INTEGER, mode="official")["acc"] == 0.0
    # floats: round(x, precision), so more digits than asked still match
    long = "The length is approximately 1.4523 cm."
    result = compute_score("mathvista_testmini", long, "1.45", FLOAT2, mode="official")
    assert (result["acc"], result["pred"]) == (1.0, "1.45")
    assert compute_score("mathvista_testmini", "The length is 1.46 cm.", "1.45", FLOAT2, mode="official")["acc"] == 0.0
    # a fraction stands for its value
    half = {"id": "t-half", "question_type": "free_form", "answer_type": "float", "precision": 1}
    assert compute_score("mathvista_testmini", "The probability is 1/2.", "0.5", half, mode="official")["acc"] == 1.0
    # no number at all: no prediction
    none = compute_score("mathvista_testmini", "I cannot read the chart.", "3", INTEGER, mode="official")
    assert (none["acc"], none["pred"]) == (0.0, "")


def test_mathvista_number_prefers_the_answer_marker_and_the_final_answer_region():
    text = "Step 1 gives 5 and step 2 gives 9. The answer is 14 because 5 + 9 = 14, see step 2."
    assert compute_score("mathvista_testmini", text, "14", INTEGER, mode="official")["pred"] == "14"
    # a number only in the <think> part and none after it: nothing is read
    think = "<think>The bar is 12 units high.</think>\nI am not sure."
    assert compute_score("mathvista_testmini", think, "12", INTEGER, mode="official")["extracted"] == 0.0
    # the recipe's own format still wins in official mode
    ours = "<think>12 or 13?</think><answer>\\boxed{13}</answer>"
    assert compute_score("mathvista_testmini", ours, "13", INTEGER, mode="official")["acc"] == 1.0


# --- MathVista: yes/no and two-way questions -------------------------------------------------------------------------

YES_NO = {"id": "t-yn", "question_type": "multi_choice", "answer_type": "text", "choices": ["Yes", "No"],
          "question": "Is the red cube larger than the blue sphere?"}
TRUE_FALSE = {"id": "t-tf", "question_type": "multi_choice", "answer_type": "text", "choices": ["True", "False"],
              "question": "The function is surjective."}


@pytest.mark.parametrize(
    ("response", "info", "gt", "acc"),
    [
        ("No, the red cube is not larger than the blue sphere.", YES_NO, "No", 1.0),
        ("Yes, the red cube is larger than the blue sphere.", YES_NO, "No", 0.0),
        ("no. The sphere is bigger.", YES_NO, "No", 1.0),
        ("True. Every value is reached.", YES_NO, "Yes", 1.0),  # "True." stands for "Yes"
        ("False. Some values are never reached.", TRUE_FALSE, "False", 1.0),
        ("True.", TRUE_FALSE, "False", 0.0),
        # a statement that repeats the question's words: negated → "No"
        ("The red cube is not larger than the blue sphere.", YES_NO, "No", 1.0),
        ("The red cube is larger than the blue sphere.", YES_NO, "Yes", 1.0),
    ],
)
def test_mathvista_yes_no_answers(response, info, gt, acc):
    assert compute_score("mathvista_testmini", response, gt, info, mode="official")["acc"] == acc
    assert compute_score("mathvista_testmini", response, gt, info)["extracted"] == 0.0  # train: no final answer


# --- MathVista: option answers --------------------------------------------------------------------------------------

SHAPES = {"id": "t-mc", "question_type": "multi_choice", "answer_type": "text",
          "choices": ["cube", "sphere", "cone", "cylinder"], "question": "Which solid has two circular faces?"}
COMPARE = {"id": "t-mc2", "question_type": "multi_choice", "answer_type": "text",
           "choices": ["A is larger", "Both are equal", "B is larger"], "question": "Compare the two areas."}


OPTION_CASES = [
    ("2. D", SHAPES, "cylinder"),  # an enumerated line
    ("(B) Both are equal", COMPARE, "Both are equal"),  # parenthesised letter + option text
    ("• (B) Both are equal", COMPARE, "Both are equal"),  # after a stray symbol
    ("Figure D", SHAPES, "cylinder"),  # a picture label
    ("C) B is larger, since its base is longer.", COMPARE, "B is larger"),  # letter + ')' at the start
    ("The answer is D cylinder", SHAPES, "cylinder"),  # a letter followed by words
    ("cylinder", SHAPES, "cylinder"),  # the option text alone
    ("A cylinder has two circular faces and one curved face.", SHAPES, "cylinder"),  # the only option named
    ("Option D is the one that has two flat circular faces joined by a curved surface, unlike the others.",
     SHAPES, "cylinder"),  # a letter inside a long explanation
    ("Here is my answer:\n\nD\n\nA cylinder has two circular faces.", SHAPES, "cylinder"),  # a line of its own
    ("Looking at each solid in turn, the correct option letter for this question is D.", SHAPES, "cylinder"),
    ("所以答案是D", SHAPES, "cylinder"),
    ("Based on the two circular faces, the solid should be D.", SHAPES, "cylinder"),  # the sentence ends with it
    ("I would choose option D.", SHAPES, "cylinder"),
]


@pytest.mark.parametrize(("response", "info", "gt"), OPTION_CASES)
def test_mathvista_option_answers(response, info, gt):
    result = compute_score("mathvista_testmini", response, gt, info, mode="official")
    assert (result["acc"], result["pred"]) == (1.0, gt)
    other = next(c for c in info["choices"] if c != gt)
    assert compute_score("mathvista_testmini", response, other, info, mode="official")["acc"] == 0.0
    assert compute_score("mathvista_testmini", response, gt, info)["acc"] == 0.0  # train: no final answer slot


def test_mathvista_option_reading_is_not_fooled():
    # the article "a" is not option A, a listing of the options is no answer, and a point label is no option
    assert compute_score("mathvista_testmini", "The answer is a cylinder.", "cylinder", SHAPES, mode="official")[
        "pred"] == "cylinder"
    geometry = {"id": "t-g", "question_type": "multi_choice", "choices": ["30°", "45°", "60°", "70°"]}
    listing = "(A) 30°\n(B) 45°\n(C) 60°\n(D) 70°"
    assert freeform.stated_letters(listing, 4) is None
    assert freeform.stated_letters("The vertex of the angle is A, so we measure from there.", 4) is None
    assert freeform.stated_letters("So the two lines meet at point D.", 4) is None  # a point, not option D
    assert compute_score("mathvista_testmini", "So the answer is (C) 60°.", "60°", geometry, mode="official")[
        "acc"] == 1.0
    # several different letters on lines of their own answer nothing
    assert freeform.stated_letters("1. B\n2. D\n3. A", 4) is None


def test_mathvista_numeric_options_match_the_stated_number():
    angles = {"id": "t-num", "question_type": "multi_choice", "choices": ["30°", "45°", "60°", "70°"],
              "question": "What is the measure of angle ABC?"}
    for response in ("The measure of angle ABC is 60 degrees.", "The angle is 30° + 30° = 60°."):
        result = compute_score("mathvista_testmini", response, "60°", angles, mode="official")
        assert (result["acc"], result["pred"]) == (1.0, "60^\\circ"), response
    lengths = {"id": "t-len", "question_type": "multi_choice", "choices": ["14cm", "28cm", "10cm", "20cm"]}
    assert compute_score("mathvista_testmini", "Its perimeter is 20 cm.", "20cm", lengths, mode="official")[
        "acc"] == 1.0


def test_mathvista_letter_beyond_the_options_goes_to_the_nearest_option_as_officially():
    """GPT copies a letter the options do not have; ``normalize_extracted_answer`` then takes the Levenshtein-
    nearest option text: 'D' against ['yes', 'no'] is 'no' (2 edits against 3)."""
    info = {"id": "t-d", "question_type": "multi_choice", "choices": ["yes", "no"], "question": "Is it red?"}
    result = compute_score("mathvista_testmini", "The correct option letter is D.", "no", info, mode="official")
    assert (result["acc"], result["pred"]) == (1.0, "no")


def test_mathvista_official_shortcuts_and_normalisation_are_the_published_code():
    info = {"id": "t-s", "question_type": "multi_choice", "choices": ["12", "92.5", "97"]}
    # a response equal to a choice is taken as is; a letter is mapped to its option; anything else → nearest option
    assert mathvista._official_extract("92.5", info, "multi_choice", "text", info["choices"]) == "92.5"
    assert mathvista._official_normalize("B", info["choices"], "multi_choice", "text", 0) == "92.5"
    assert mathvista._official_normalize("(c) 97", info["choices"], "multi_choice", "text", 0) == "97"
    assert mathvista._official_normalize("92.6", info["choices"], "multi_choice", "text", 0) == "92.5"
    assert mathvista._official_normalize("3.7", [], "free_form", "integer", 0) == "3"
    assert mathvista._official_normalize("1.4567", [], "free_form", "float", 2) == "1.46"
    assert mathvista._official_normalize("twelve", [], "free_form", "integer", 0) is None
    # a response that parses as the required int/float skips extraction (even "12.0" for a float)
    assert mathvista._official_extract("12.0", {}, "free_form", "float", []) == "12.0"


def test_levenshtein_is_the_edit_distance():
    def table(a, b):
        previous = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            current = [i]
            for j, cb in enumerate(b, 1):
                current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
            previous = current
        return previous[-1]

    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("ab°1 x") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("ab°1 x") for _ in range(rng.randint(0, 70)))
        assert mathvista.levenshtein(a, b) == mathvista.levenshtein(b, a) == table(a, b)
    _, seconds = cpu_seconds(mathvista.levenshtein, "ab" * 500, "ba" * 500)
    assert seconds < 0.05  # bit-parallel: ~1 ms for two 1,000-character strings


# --- LogicVista ------------------------------------------------------------------------------------------------------

QUESTION = "Which two shapes are rotations of the first? Select from A, B, C, D and E. (A) Square (B) Star " \
           "(C) Kite (D) Arrow (E) Impossible to tell"


def _lv(response, gt, question=QUESTION, mode="official"):
    return compute_score("logicvista_test", response, gt, {"id": "t-lv", "question": question}, mode=mode)


LETTER_SET_CASES = [
    ("A and C", "A, C", 1.0),
    ("B, D", "B, D", 1.0),
    ("The answer is A and C.", "A, C", 1.0),
    ("Option A and C are correct.", "A, C", 1.0),
    ("AC", "A, C", 1.0),
    ("The answer is A.", "A, C", 0.0),  # one of two letters
    ("A, C and D", "A, C", 0.0),  # one too many
    ("Choices A and C have an X in the centre.", "A, C", 1.0),
    ("The green category includes A and C", "A, C", 1.0),  # the sentence ends with the letters
]


@pytest.mark.parametrize(("response", "gt", "acc"), LETTER_SET_CASES)
def test_logicvista_letter_sets(response, gt, acc):
    assert _lv(response, gt)["acc"] == acc


def test_logicvista_one_character_rule_is_official():
    """``extract_accuracy.py``: a one-character entry that is a letter outside a-e, or neither letter nor digit, is
    no answer (no GPT call); a letter a-e is read as that letter (any case)."""
    assert (_lv("F", "F")["acc"], _lv("F", "F")["extracted"]) == (0.0, 0.0)
    assert _lv("?", "A")["extracted"] == 0.0
    assert _lv("b", "B")["acc"] == 1.0 and _lv("B", "B")["acc"] == 1.0
    assert _lv("   ", "B")["extracted"] == 0.0
    # the text after 'ASSISTANT:' is the entry
    assert _lv("USER: which? ASSISTANT: C", "C")["acc"] == 1.0
    assert logicvista.official_entry("USER: x ASSISTANT: F") is None


@pytest.mark.parametrize(
    ("response", "gt"),
    [
        ("kite", "C"),  # the option text alone
        ("1. C", "C"),  # enumerated
        ("(C) Kite", "C"),
        ("based on the image, which shape? ( a ) square ( b ) star ( c ) kite. answer : c", "C"),  # echo, then answer
        ("The first shape turned by 90 degrees is the kite.", "C"),  # the option named
        ("It is impossible to tell from the picture.", "E"),  # an 'impossible to tell' option
    ],
)
def test_logicvista_reads_options_like_the_extractor(response, gt):
    assert _lv(response, gt)["acc"] == 1.0
    assert _lv(response, gt, mode="train")["acc"] == 0.0  # train: no final answer slot


TRUE_FALSE_QUESTION = (
    "The desk is next to the sofa. Select from A, B and C. (A) True (B)False (C)Insufficient Information"
)


@pytest.mark.parametrize(
    ("response", "gt"),
    [
        ("False", "B"),
        ("True. The desk touches the sofa.", "A"),
        ("The statement is false because the sofa is across the room.", "B"),
        ("This is not true.", "B"),
        ("It is not possible to determine whether the statement is true or false.", "C"),
        ("There is not enough information in the picture.", "C"),
    ],
)
def test_logicvista_true_false_questions(response, gt):
    assert _lv(response, gt, question=TRUE_FALSE_QUESTION)["acc"] == 1.0


def test_logicvista_no_answer_stays_no_answer():
    # a dangling "answer :" and a listing of the options state nothing
    assert _lv("which shape? ( a ) square ( b ) star ( c ) kite. answer :", "C")["extracted"] == 0.0
    assert _lv("A) Square\nB) Star\nC) Kite", "C")["extracted"] == 0.0


def test_parenthesised_options_from_the_question():
    assert parenthesised_options(QUESTION) == ["Square", "Star", "Kite", "Arrow", "Impossible to tell"]
    assert parenthesised_options("Pick one. (A) (B) (C) (D)") == ["", "", "", ""]
    assert parenthesised_options("No options here (A) only") == []


def test_doctests():
    for module in (freeform, mathvista, wemath):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- robustness of the new reading -----------------------------------------------------------------------------------

EXTRA_CONTEXTS = [
    ("mathvista_testmini", "12", INTEGER),
    ("mathvista_testmini", "1.45", FLOAT2),
    ("mathvista_testmini", "cylinder", SHAPES),
    ("mathvista_testmini", "No", YES_NO),
    ("logicvista_test", "A, C", {"id": "t-lv", "question": QUESTION}),
]
TARGETED = {
    "20k answer markers": "The answer is " * 20_000,
    "20k option mentions": "Option " * 20_000,
    "30k equals signs": "1 = " * 30_000,
    "10k bold numbers": "**7** " * 10_000,
    "10k labelled lines": "\n".join(f"({'ABCDE'[i % 5]}) x" for i in range(10_000)),
    "10k sentences": "The red cube is not larger. " * 10_000,
    "long option text": "cylinder " * 12_000,
}


def test_free_form_reading_from_threads_matches_sequential():
    """verl scores from threads: the reader's cache and rules give the same verdicts in a pool."""
    cases = [("mathvista_testmini", r, gt, INTEGER) for r, gt, _ in INTEGER_CASES]
    cases += [("mathvista_testmini", r, gt, info) for r, info, gt in OPTION_CASES]
    cases += [("logicvista_test", r, gt, {"id": "t-lv", "question": QUESTION}) for r, gt, _ in LETTER_SET_CASES]
    cases = cases * 6

    def run(case):
        return compute_score(*case, mode="official")

    expected = [run(c) for c in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, cases)) == expected
    assert sum(r["acc"] for r in expected) > len(cases) / 2


@pytest.mark.parametrize("name", list(ADVERSARIAL) + list(TARGETED))
def test_official_reading_is_bounded(name):
    response = ADVERSARIAL.get(name, TARGETED.get(name))
    for source, gt, info in EXTRA_CONTEXTS:
        result, seconds = cpu_seconds(compute_score, source, response, gt, info, mode="official")
        assert seconds < 1.0, (name, source)
        assert result["acc"] in (0.0, 1.0)
