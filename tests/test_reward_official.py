"""``mode="official"``: each benchmark's official judging, as far as rules allow, against recorded official verdicts.

Real responses with the verdict the official scripts recorded:

* MMMU-Pro: GPT-4o responses from ``MMMU-Benchmark/MMMU`` ``mmmu-pro/output/gpt-4o_vision_cot.jsonl`` (commit
  a76d44bd, Apache-2.0), with the ``pred_indexs`` / ``if_right`` that ``mmmu-pro/evaluate.py`` wrote;
* MathVista: Bard responses from ``lupantech/MathVista`` ``results/bard/output_bard.json`` (commit f036866d,
  CC BY-SA 4.0), with the GPT ``extraction`` and the ``prediction`` / ``true_false`` of ``calculate_score.py``.

Hand-written free-form responses cover the other benchmarks; each case states the official verdict and why, and
where it differs from ``mode="train"``.
"""

from __future__ import annotations

import json

import pytest

from reward_fns import compute_score
from reward_fns.verifiers import mathvista, mmmu_pro

# --- MMMU-Pro (vision setting): real GPT-4o responses ----------------------------------------------------------------

MMMU_RECORDS = [
    json.loads(line)
    for line in r"""
{"id": "test_Pharmacy_287", "options": "['False', 'True']", "answer": "A", "response": "The question is:\n\nNo. 15: The following diagram shows the bacteriorhodopsin protein. This protein has quaternary structure. \n\nOptions:\n(A) False\n(B) True\n\n**Explanation:**\n\nBacteriorhodopsin is a protein that functions as a proton pump in the membranes of certain archaea. It is composed of a single polypeptide chain and does not form complexes with other chains to achieve its function. Proteins with quaternary structure are composed of multiple polypeptide chains that come together to form a functional unit. Since bacteriorhodopsin is composed of only one chain, it does not have quaternary structure.\n\nTherefore, the statement is false.\n\nAnswer: A", "pred_indexs": "A", "if_right": true}
{"id": "validation_Architecture_and_Engineering_17", "options": "['29.193 * 106 $m^{3}$', '28.893 * 106 $m^{3}$', '28.493 * 106 $m^{3}$', '29.293 * 106 $m^{3}$', '30.393 * 106 $m^{3}$', '30.093 * 106 $m^{3}$', '29.493 * 106 $m^{3}$', '29.893 * 106 $m^{3}$', '29.793 * 106 $m^{3}$', '29.693 * 106 $m^{3}$']", "answer": "J", "response": "To solve this problem, we use the prismoidal formula for converting the contour areas into volume:\n\n\\[ V = \\frac{h}{3} \\times (A_1 + 4A_2 + A_3) \\]\n\nWhere:\n- \\( h \\) is the difference in elevation between contours.\n- \\( A_1, A_2, \\) and \\( A_3 \\) are consecutive sections.\n\nFor each pair of contours, calculate the volume for \\( h = 5 \\) m (the difference between each contour level, e.g., 660 m to 665 m) from the floor level (660 m) to 700 m:\n\n1. **Between 660 m and 665 m:**\n\n   \\[ V_1 = \\frac{5}{3} \\times (5200 + 4 \\times 9400 + 16300) \\]\n\n2. **665 m to 670 m:**\n\n   \\[ V_2 = \\frac{5}{3} \\times (9400 + 4 \\times 16300 + 22400) \\]\n\n3. **670 m to 675 m:**\n\n   \\[ V_3 = \\frac{5}{3} \\times (16300 + 4 \\times 22400 + 40700) \\]\n\n4. **675 m to 680 m:**\n\n   \\[ V_4 = \\frac{5}{3} \\times (22400 + 4 \\times 40700 + 61500) \\]\n\n5. **680 m to 685 m:**\n\n   \\[ V_5 = \\frac{5}{3} \\times (40700 + 4 \\times 61500 + 112200) \\]\n\n6. **685 m to 690 m:**\n\n   \\[ V_6 = \\frac{5}{3} \\times (61500 + 4 \\times 112200 + 198100) \\]\n\n7. **690 m to 695 m:**\n\n   \\[ V_7 = \\frac{5}{3} \\times (112200 + 4 \\times 198100 + 272400) \\]\n\n8. **695 m to 700 m:**\n\n   \\[ V_8 = \\frac{5}{3} \\times (198100 + 4 \\times 272400 + 272400) \\]\n\nCalculate each volume:\n\n- For example, for \\( V_1 \\):\n\n  \\[ V_1 = \\frac{5}{3} \\times (5200 + 37600 + 16300) = \\frac{5}{3} \\times 59100 = 98500 \\, \\text{m}^3 \\]\n\nFollow the same calculation process for \\( V_2 \\) to \\( V_8 \\).\n\nSum all calculated volumes to get the total volume of water impounded:\n\n\\[ V_{\\text{total}} = V_1 + V_2 + V_3 + V_4 + V_5 + V_6 + V_7 + V_8 \\]\n\nAfter completing calculations:\n\n\\[ V_{\\text{total}} = 29193000 \\, \\text{m}^3 \\]\n\nAnswer: \\( \\text{A} \\)", "pred_indexs": "A", "if_right": false}
{"id": "test_History_1", "options": "['Political instability leading to population decline', 'The spread of pathogens across the Silk Road', 'Development of new trade routes', 'Climate change affecting the Silk Road', 'Migrations to areas of Central Asia for resettlement', 'Technological advancements in transportation', 'Invasions by Mongol tribes', 'Large-scale famine due to crop failures', 'Economic prosperity and population growth', 'Rise of religious conflicts along the Silk Road']", "answer": "B", "response": "The multiple-choice question asks which explanation best accounts for the trend shown in the graph. The graph depicts population trends from 0 C.E. to 600 C.E. for Roman and Han empires, both showing a decline over time.\n\nTo solve this, consider historical events that might explain the population decline in both regions:\n\n- Political instability (Option A) is a major reason for decline in populations as it often leads to wars and economic issues, which further cause population decline.\n- Spread of pathogens (Option B), especially in a connected world via routes like the Silk Road, could also affect populations. However, the graph might not specifically indicate a direct link unless it specifically includes information on disease.\n- Other options, like trade routes (C), climate (D), and technological changes (F), don't directly impact population declines as broadly in historical context.\n\nConsidering the historical context, political instability due to various factors (internal strife, external invasions) likely contributed significantly to the decline in both empires' populations.\n\nAnswer: A", "pred_indexs": "A", "if_right": false}
{"id": "validation_Design_19", "options": "['A memory', 'A transition', 'An opportunity', 'A common experience', 'A journey', 'A warning', 'A clock', 'Time waits for no man', 'An obstacle', 'A mystery']", "answer": "H", "response": "The question reads: \n\n\"[image 1] is a symbol of...\"\n\nOptions:\n(A) A memory\n(B) A transition\n(C) An opportunity\n(D) A common experience\n(E) A journey\n(F) A warning\n(G) A clock\n(H) Time waits for no man\n(I) An obstacle\n(J) A mystery\n\nThe image shows \"Father Time,\" a common representation of time with a scythe, often symbolizing the passage of time and the inevitability of its flow. This directly relates to the phrase \"Time waits for no man.\"\n\nAnswer: H", "pred_indexs": "H", "if_right": true}
{"id": "test_Finance_304", "options": "['A: 5.76%; B: 6.30%; C: 8.55%; D: 5.58%; E: 8.10%', 'A: 4.76%; B: 7.30%; C: 6.45%; D: 5.58%; E: 7.20%', 'A: 6.66%; B: 7.20%; C: 8.55%; D: 6.58%; E: 8.20%', 'A: 5.56%; B: 6.10%; C: 7.45%; D: 6.48%; E: 7.10%', 'A: 6.66%; B: 7.20%; C: 6.55%; D: 6.48%; E: 8.10%', 'A: 4.66%; B: 6.20%; C: 4.55%; D: 5.48%; E: 7.10%', 'A: 4.66%; B: 8.20%; C: 4.55%; D: 9.48%; E: 10.10%', 'A: 5.66%; B: 8.20%; C: 7.55%; D: 9.48%; E: 10.10%', 'A: 5.66%; B: 6.20%; C: 7.55%; D: 5.48%; E: 7.10%', 'A: 4.56%; B: 6.10%; C: 7.45%; D: 5.38%; E: 6.10%']", "answer": "I", "response": "To solve this problem, we need to calculate the after-tax cost to maturity for each bond using the approximation formula. The formula for the after-tax cost is given by:\n\n\\[\n\\text{After-tax cost} = \\left[\\frac{\\text{Coupon Rate} \\times (1 - \\text{Tax Rate}) + \\frac{\\text{Discount or Premium} + \\text{Underwriting Fee}}{\\text{Life}}}{\\text{Face Value}}\\right] \\times 100\n\\]\n\n**Given:**\n\n- Tax Rate = 40%\n- Face Value = $1,000\n\n**Calculate for each bond:**\n\n1. **Bond A**\n   - Life = 20 years\n   - Underwriting Fee = $25\n   - Discount = -$20\n   - Coupon Rate = 9%\n\n   \\[\n   \\text{After-tax cost} = \\left[\\frac{9\\% \\times (1-0.40) + \\frac{-20 + 25}{20}}{1000}\\right] \\times 100\n   = \\left[\\frac{5.4 + 0.25}{1000}\\right] \\times 100\n   = 5.65\\%\n   \\]\n\n2. **Bond B**\n   - Life = 16 years\n   - Underwriting Fee = $40\n   - Premium = +$10\n   - Coupon Rate = 10%\n\n   \\[\n   \\text{After-tax cost} = \\left[\\frac{10\\% \\times (1-0.40) + \\frac{10 + 40}{16}}{1000}\\right] \\times 100\n   = \\left[\\frac{6 + 3.125}{1000}\\right] \\times 100\n   = 9.125\\%\n   \\]\n\n3. **Bond C**\n   - Life = 15 years\n   - Underwriting Fee = $30\n   - Discount = -$15\n   - Coupon Rate = 12%\n\n   \\[\n   \\text{After-tax cost} = \\left[\\frac{12\\% \\times (1-0.40) + \\frac{-15 + 30}{15}}{1000}\\right] \\times 100\n   = \\left[\\frac{7.2 + 1}{1000}\\right] \\times 100\n   = 8.2\\%\n   \\]\n\n4. **Bond D**\n   - Life = 25 years\n   - Underwriting Fee = $15\n   - Par = $0\n   - Coupon Rate = 9%\n\n   \\[\n   \\text{After-tax cost} = \\left[\\frac{9\\% \\times (1-0.40) + \\frac{0 + 15}{25}}{1000}\\right] \\times 100\n   = \\left[\\frac{5.4 + 0.6}{1000}\\right] \\times 100\n   = 6.0\\%\n   \\]\n\n5. **Bond E**\n   - Life = 22 years\n   - Underwriting Fee = $20\n   - Discount = -$60\n   - Coupon Rate = 11%\n\n   \\[\n   \\text{After-tax cost} = \\left[\\frac{11\\% \\times (1-0.40) + \\frac{-60 + 20}{22}}{1000}\\right] \\times 100\n   = \\left[\\frac{6.6 - 1.818}{1000}\\right] \\times 100\n   = 4.782\\%\n   \\]\n\nNow choose the correct option based on these calculations. \n\n- \\( A: 5.65\\% \\) is closest to \\( 5.66\\% \\)\n- \\( B: 9.125\\% \\) is closest to \\( 8.20\\% \\)\n- \\( C: 8.2\\% \\) is closest to \\( 8.55\\% \\)\n- \\( D: 6.0\\% \\) is closest to \\( 5.48\\% \\)\n- \\( E: 4.782\\% \\) is closest to \\( 4.76\\% \\)\n\nThe closest match corresponding to our calculations in the options provided is:\n- \\( A: 5.66\\% \\) \n- \\( B: 8.20\\% \\)\n- \\( C: 8.55\\% \\)\n- \\( D: 5.48\\% \\)\n- \\( E: 4.66\\% \\)\n\nHowever, considering the closeness to the available options aligns best with the given choice:\n\nAnswer: (F)A. 4.66%; B. 6.20%; C. 4.55%; D. 5.48%; E. 7.10%", "pred_indexs": "F", "if_right": false}
""".strip().splitlines()
]


def _mmmu_info(record):
    import ast

    return {"id": record["id"], "question_type": "multi_choice", "answer_type": "letter", "choices": ast.literal_eval(record["options"])}


@pytest.mark.parametrize("record", MMMU_RECORDS, ids=[r["id"] for r in MMMU_RECORDS])
def test_mmmu_pro_official_reproduces_the_recorded_parse(record):
    """``mmmu-pro/evaluate.py`` recorded ``pred_indexs`` / ``if_right`` for these exact responses."""
    result = compute_score("mmmu_pro_vision", record["response"], record["answer"], _mmmu_info(record), mode="official")
    assert result["pred"] == record["pred_indexs"]
    assert result["acc"] == float(record["if_right"])
    assert result["extracted"] == 1.0  # a letter was found, no random guess


def test_mmmu_pro_official_finance_304_takes_the_fallback_path():
    """The 'Answer:' tail names A–F, so the unique-letter fast path fails; '(F)' is the only bracketed letter
    in the whole response, so the official parser returns F (wrong: the key is I). Train mode reads the
    'Answer:' line itself: '(F)A. 4.66%; …' names F first → also wrong, for the same reason."""
    record = next(r for r in MMMU_RECORDS if r["id"] == "test_Finance_304")
    letter, found = mmmu_pro.official_parse(
        record["response"], list("ABCDEFGHIJ"), dict(zip("ABCDEFGHIJ", _mmmu_info(record)["choices"])), seed="x"
    )
    assert (letter, found) == ("F", True)
    train = compute_score("mmmu_pro_vision", record["response"], "I", _mmmu_info(record))
    assert (train["acc"], train["pred"], train["format"]) == (0.0, "F", 0.0)


def test_mmmu_pro_official_vs_train_on_hand_written_responses():
    info = {"id": "validation_Design_19", "choices": ["A memory", "A transition", "A clock", "Time waits for no man"]}
    # Our format: the <answer> is handed to the official parser as its "Answer:" line → D in both modes.
    ours = "<think>Father Time with a scythe.</think><answer>\\boxed{D}</answer>"
    assert compute_score("mmmu_pro_vision", ours, "D", info, mode="official")["acc"] == 1.0
    assert compute_score("mmmu_pro_vision", ours, "D", info)["acc"] == 1.0
    # Prose without an answer line: official takes the LAST bracketed letter → D (right); train finds no final
    # answer in the required places → acc 0, extracted 0.
    prose = "It could be (C) at first sight, but the scythe says (D) is what the picture symbolises."
    official = compute_score("mmmu_pro_vision", prose, "D", info, mode="official")
    train = compute_score("mmmu_pro_vision", prose, "D", info)
    assert (official["acc"], official["pred"], official["extracted"]) == (1.0, "D", 1.0)
    assert (train["acc"], train["extracted"]) == (0.0, 0.0)
    # No letter, fewer than 6 words: the official script guesses at random. Ours is seeded by id + response, so
    # the guess is reproducible; extracted = 0 marks it as a guess.
    guesses = {compute_score("mmmu_pro_vision", "I cannot tell.", "D", info, mode="official")["pred"] for _ in range(5)}
    assert len(guesses) == 1 and guesses <= set("ABCD")
    assert compute_score("mmmu_pro_vision", "I cannot tell.", "D", info, mode="official")["extracted"] == 0.0


# --- MathVista: real Bard responses --------------------------------------------------------------------------------

BARD = {
    "1": dict(
        choices=None, unit=None, precision=1, answer="1.2", question_type="free_form", answer_type="float",
        extraction="0.11", prediction="0.1", true_false=False,
        response="Sure, I can help you with that.\n\nThe work done by the spring is given by the following equation:\n\n```\nW = -\\dfrac{1}{2}kx^2\n```\n\nwhere $k$ is the spring constant, $x$ is the distance the spring is compressed, and the negative sign indicates that the work is done by the spring on the canister.\n\nWe know that the mass of the canister is $m = 0.40$ kg, the speed of the canister is $v = 0.50$ m/s, and the spring constant is $k = 750$ N/m. We are trying to find the distance $d$ the spring is compressed.\n\nSubstituting these values into the equation for work, we get:\n\n```\nW = -\\dfrac{1}{2}(750)(d^2)\n```\n\nWe know that the work done by the spring is also equal to the change in kinetic energy of the canister, which is given by the following equation:\n\n```\nW = \\dfrac{1}{2}mv^2\n```\n\nSubstituting this equation into the equation for the work done by the spring, we get:\n\n```\n\\dfrac{1}{2}mv^2 = -\\dfrac{1}{2}(750)(d^2)\n```\n\nSolving for $d$, we get:\n\n```\nd^2 = \\dfrac{mv^2}{375}\n```\n\n```\nd = \\sqrt{\\dfrac{mv^2}{375}}\n```\n\n```\nd = \\sqrt{\\dfrac{(0.40)(0.50)^2}{375}} = 0.11 \\text{ m}\n```\n\nTo two decimal places, the distance the spring is compressed is $d = 0.11$ m.\n\nTherefore, the distance the spring is compressed is 0.11 meters.",
    ),
    "2": dict(
        choices=None, unit="g", precision=None, answer="1000", question_type="free_form", answer_type="integer",
        extraction="250", prediction="250", true_false=False,
        response="Based on the image you sent, the total volume of the measuring cup is 250 g. The text on the measuring cup reads \"Mehl/Farine 2000 g\" which means \"Flour/Flour 2000 g\". This means that the maximum volume of the measuring cup is 2000 g. However, the measuring cup is only filled to the 250 g mark, so the total volume of the measuring cup is 250 g.\r\n\r\nI hope this answers your question. Let me know if you have any other questions.",
    ),
    "3": dict(
        choices=["135°", "140°", "145°", "150°"], unit=None, precision=None, answer="145°", question_type="multi_choice",
        answer_type="text", extraction="C", prediction="145°", true_false=True,
        response="The correct answer is **(C) 145°**.\n\nSince the angle bisectors of angles B and C intersect at point O, then ∠BOC = 90° + ∠A/2 = 90° + 110°/2 = **145°**.\n\nHere is the proof:\n\n```\n[ABC]\nO-----B\n/   \\\n/____\\\nA     C\n\n∠BOC = ∠1 + ∠2\n\n∠1 = ∠A/2\n\n∠2 = 180° - ∠A - ∠1 = 180° - ∠A - ∠A/2 = 180° - 3∠A/2\n\n∠BOC = ∠1 + ∠2 = ∠A/2 + 180° - 3∠A/2 = 90° + ∠A/2\n```\n\nI hope this helps! Let me know if you have any other questions.",
    ),
    "5": dict(
        choices=["97", "102", "107", "122"], unit=None, precision=None, answer="97", question_type="multi_choice",
        answer_type="text", extraction="92.5", prediction="97", true_false=True,
        response="Sure, I can help you with that.\n\nThe sum of the interior angles of a rhombus is 360 degrees. Since all the sides of a rhombus are equal, each angle in a rhombus is equal to 180 degrees - 360 degrees/4 = 180 degrees - 90 degrees = 90 degrees.\n\nAngles F and J are opposite angles in the rhombus, so they are supplementary angles. Therefore, $m\\angle F + m\\angle J = 180^\\circ$.\n\nSubstituting in the expressions that were given for each angle, we get $(x + 20^\\circ) + (x - 5^\\circ) = 180^\\circ$.\n\nCombining like terms, we get $2x + 15^\\circ = 180^\\circ$.\n\nSubtracting 15 degrees from both sides, we get $2x = 165^\\circ$.\n\nDividing both sides by 2, we get $x = 82.5^\\circ$.\n\nTherefore, $m\\angle H = (x + 10^\\circ) = (82.5^\\circ + 10^\\circ) = \\boxed{92.5^\\circ}$.\n\nHere is a breakdown of the steps:\n\n1. Find the measure of each angle in the rhombus.\n2. Find the sum of the measures of angles F and J.\n3. Set the sum equal to 180 degrees.\n4. Solve for x.\n5. Substitute the value of x into the expression for $m\\angle H$ to find its measure.",
    ),
    "6": dict(
        choices=["6cm", "7cm", "4cm", "5cm"], unit=None, precision=None, answer="6cm", question_type="multi_choice",
        answer_type="text", extraction="D", prediction="5cm", true_false=False,
        response="The answer is (D).\n\nSince D is the midpoint of AC, then AD = DC = (AC/2).\n\nWe know that CB = 4.0 and DB = 7.0, and that AD = DC. So we can write the equation:\n\n```\nAD + DC = 4.0 + 7.0\n```\n\n```\n2AD = 11.0\n```\n\n```\nAD = 5.5\n```\n\n```\nAC = 2AD = 11.0 cm\n```\n\nTherefore, the length of AC is 11.0 cm, which is answer choice (D).",
    ),
}


def _vista_info(pid, rec):
    return {
        "id": pid,
        "question_type": rec["question_type"],
        "answer_type": rec["answer_type"],
        "choices": rec["choices"] or [],
        "precision": -1 if rec["precision"] is None else rec["precision"],
        "unit": rec["unit"] or "",
    }


@pytest.mark.parametrize("pid", list(BARD))
def test_mathvista_official_normalisation_reproduces_the_recorded_prediction(pid):
    """Given the official (GPT) extraction, our ``normalize_extracted_answer`` gives the recorded prediction:
    pid 1 float → round(0.11, 1) = '0.1'; pid 3 letter → option text; pid 5 '92.5' is no option → Levenshtein
    nearest '97' (a wrong answer scored right — the artefact the train mode avoids); pid 6 D → '5cm'."""
    rec = BARD[pid]
    places = rec["precision"] if rec["precision"] is not None else 0
    pred = mathvista._official_normalize(rec["extraction"], rec["choices"] or [], rec["question_type"], rec["answer_type"], places)
    assert pred == rec["prediction"]
    assert (pred == rec["answer"]) == rec["true_false"]


@pytest.mark.parametrize("pid", list(BARD))
def test_mathvista_official_on_the_raw_response_gives_the_recorded_verdict(pid):
    """Our rule extraction replaces GPT; on these responses it lands on the same verdict: pid 1 and 2 end in prose
    without a value in final position ('… 0.11 meters.', 'I hope this answers …' → not a number → wrong, as
    recorded); pid 3 'The correct answer is **(C) 145°**' → (C) → 145° (right); pid 5 boxes 92.5° → no option,
    nearest by edit distance is '97' → right, as recorded; pid 6 'The answer is (D)' → 5cm (wrong)."""
    rec = BARD[pid]
    result = compute_score("mathvista_testmini", rec["response"], rec["answer"], _vista_info(pid, rec), mode="official")
    assert result["acc"] == float(rec["true_false"])
    # Train mode wants the recipe's format: none of these has <answer> or an 'Answer:' line, and pid 5's box holds
    # a value that is no option → all wrong, whatever the prose says.
    train = compute_score("mathvista_testmini", rec["response"], rec["answer"], _vista_info(pid, rec))
    assert (train["acc"], train["format"]) == (0.0, 0.0)


def test_mathvista_official_vs_train_differences():
    dup = {"id": "781", "question_type": "multi_choice", "answer_type": "text", "choices": ["9", "12", "18", "18"]}
    # Prose letter: official finds "the answer is D" → option D = '18' = answer (right); train needs tags/box/line.
    prose = "K is the centroid, so CD = 3/2 * DK ... wait, CD = 18. The answer is D."
    assert compute_score("mathvista_testmini", prose, "18", dup, mode="official")["acc"] == 1.0
    assert compute_score("mathvista_testmini", prose, "18", dup)["acc"] == 0.0
    # Levenshtein fallback: 'I don't know' is closer to 'no' (edit distance 10) than to 'yes' (12) → official
    # maps it to 'no' = the answer of pid 24; train gives 0 for a non-answer.
    yes_no = {"id": "24", "question_type": "multi_choice", "answer_type": "text", "choices": ["yes", "no"]}
    idk = "<think>hard to see</think><answer>I don't know</answer>"
    assert mathvista.levenshtein("I don't know", "no") == 10 and mathvista.levenshtein("I don't know", "yes") == 12
    assert compute_score("mathvista_testmini", idk, "no", yes_no, mode="official")["acc"] == 1.0
    assert compute_score("mathvista_testmini", idk, "no", yes_no)["acc"] == 0.0
    # Integer truncation: official int(float('-3.7')) = -3 → right; train compares values → wrong.
    integer = {"id": "45", "question_type": "free_form", "answer_type": "integer"}
    near = "<think>slope</think><answer>Answer: -3.7</answer>"
    assert compute_score("mathvista_testmini", near, "-3", integer, mode="official")["acc"] == 1.0
    assert compute_score("mathvista_testmini", near, "-3", integer)["acc"] == 0.0
    # Units and lists: the GPT extractor drops the unit / writes a Python list; so does our stand-in.
    unit = {"id": "2", "question_type": "free_form", "answer_type": "integer", "unit": "g"}
    assert compute_score("mathvista_testmini", "The cup holds 1000 g.\nAnswer: 1000 g", "1000", unit, mode="official")["acc"] == 1.0
    lst = {"id": "506", "question_type": "free_form", "answer_type": "list"}
    assert compute_score("mathvista_testmini", "<answer>\\boxed{2014, 2016}</answer>", "[2014, 2016]", lst, mode="official")["acc"] == 1.0


# --- MATH-Vision: the official evaluate.py rules ------------------------------------------------------------------


def test_mathvision_official_rules():
    ff = {"id": "2796", "question_type": "free_form", "choices": []}
    # 'is <number>' shortcut, then 2-decimal rounding: 0.41 vs √6/6 = 0.408… → right officially; train has no
    # final answer in <answer>/box/Answer line (and 0.41 is not √6/6 anyway) → wrong.
    near = "Working through the similar triangles, the ratio is 0.41."
    assert compute_score("mathvision_test", near, "$\\frac{\\sqrt{6}}{6}$", ff, mode="official")["acc"] == 1.0
    assert compute_score("mathvision_test", near, "$\\frac{\\sqrt{6}}{6}$", ff)["acc"] == 0.0
    boxed_near = "<think>…</think><answer>\\boxed{0.41}</answer>"
    assert compute_score("mathvision_test", boxed_near, "$\\frac{\\sqrt{6}}{6}$", ff, mode="official")["acc"] == 1.0
    assert compute_score("mathvision_test", boxed_near, "$\\frac{\\sqrt{6}}{6}$", ff)["acc"] == 0.0
    # Multiple boxes: the last one counts in both modes.
    two = "First \\boxed{3} then, correcting, \\boxed{\\frac{7}{3}}"
    assert compute_score("mathvision_test", two, "7/3", {"id": "2846"}, mode="official")["acc"] == 1.0
    # Letter shortcut ' D.' at the end and option-value match (both official rules).
    mc = {"id": "19", "question_type": "multi_choice", "choices": ["$2+4+3$", "$2 \\cdot 4+3$", "$2+4 \\cdot 3$", "$2 \\cdot 4 \\cdot 3$", "$2+4-3$"]}
    assert compute_score("mathvision_test", "Each apple becomes 3 mandarins, so the answer is D.", "D", mc, mode="official")["acc"] == 1.0
    assert compute_score("mathvision_test", "\\boxed{24}", "D", mc, mode="official")["acc"] == 1.0  # = value of option D
    assert compute_score("mathvision_test", "\\boxed{9}", "D", mc, mode="official")["acc"] == 0.0
    # Dirty ground truths are repaired in official mode too (the raw script would fail every model on them).
    assert compute_score("mathvision_test", "\\boxed{\\frac{36}{13}}", "\x0crac{36}{13}", {"id": "2830"}, mode="official")["acc"] == 1.0
    assert compute_score("mathvision_test", "\\boxed{69}", "69{degrees}", {"id": "2947"}, mode="official")["acc"] == 1.0
    # '0.5' is rewritten to \frac{1}{2} by find_math_answer, and 'a/b' to \frac{a}{b}.
    assert mathvision_answer("the answer is 0.5") == "\\frac{1}{2}"
    assert mathvision_answer("\\boxed{7/3}") == "\\frac{7}{3}"


def mathvision_answer(response: str) -> str:
    from reward_fns.verifiers.mathvision import official_model_answer

    return official_model_answer(response)


# --- We-Math, LogicVista, MathVerse, Geometry3K --------------------------------------------------------------------


WEMATH_CHOICES = ["300, 400", "400, 300", "3000, 4000", "4000, 3000", "No correct answer"]


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("OA is 3 km.\n<Answer>: C", "C"),  # the official template: '<Answer>: <<your option>>'
        ("<Thought process>: <<OA = 3>> <Answer>: <<C>>", "C"),  # '<', '>' and ':' are removed
        ("Answer: C. Answer: D", "D"),  # the text after the LAST 'Answer'
        ("Answer: c", None),  # lower case is no letter
        ("answer: C", None),  # 'Answer' is matched case-sensitively
        ("Answer: I think C", None),  # only the first character counts ('I' is outside A-H)
        ("Answer: (C)", None),  # '(' is not removed, so the first character is not a letter
        ("C", "C"),  # no 'Answer' at all: the whole response
        ("<think>…</think><answer>\\boxed{C}</answer>", None),  # this recipe's format: no 'Answer', first char '<'
        ("", None),
    ],
)
def test_wemath_official_is_exactly_the_published_rule(response, letter):
    """``four_dimensional_metrics.py``: ``split('Answer')[-1].strip()``, remove ``[>><<:.]``, strip, first
    character if in ``ABCDEFGH``; right iff it equals the published answer."""
    info = {"id": "2steps_1|2steps_1", "choices": WEMATH_CHOICES}
    result = compute_score("wemath_testmini", response, "C", info, mode="official")
    assert (result["pred"], result["extracted"]) == (letter or "", float(letter is not None))
    assert result["acc"] == float(letter == "C")


def test_wemath_official_differs_from_train_where_the_rule_does():
    info = {"id": "2steps_1|2steps_1", "choices": WEMATH_CHOICES}
    # Option text instead of the letter: train accepts it; the official rule finds no 'Answer' and reads '<'.
    text = "<think>…</think><answer>3000, 4000</answer>"
    assert compute_score("wemath_testmini", text, "C", info)["acc"] == 1.0
    official = compute_score("wemath_testmini", text, "C", info, mode="official")
    assert (official["acc"], official["extracted"]) == (0.0, 0.0)
    # The recipe's boxed letter: right in train, no prediction officially (the official prompt asks for 'Answer').
    boxed = "<think>…</think><answer>\\boxed{C}</answer>"
    assert compute_score("wemath_testmini", boxed, "C", info)["acc"] == 1.0
    assert compute_score("wemath_testmini", boxed, "C", info, mode="official")["acc"] == 0.0


def test_logicvista_official_reads_prose():
    info = {"id": "v1_1"}
    prose = "Both green items share the curved edge, so the answer is A and C."
    assert compute_score("logicvista_test", prose, "A, C", info, mode="official")["acc"] == 1.0
    assert compute_score("logicvista_test", prose, "A, C", info)["acc"] == 0.0  # train: no final answer slot
    assert compute_score("logicvista_test", "So the answer is A.", "A, C", info, mode="official")["acc"] == 0.0


def test_mathverse_official_reads_prose_and_judges_like_train():
    ff = {"id": "431", "question_type": "free-form"}
    prose = "By Pythagoras, h^2 = 12^2 + 9^2 = 225.\nTherefore, the answer is 15."
    assert compute_score("mathverse_testmini", prose, "$h=15$", ff, mode="official")["acc"] == 1.0
    assert compute_score("mathverse_testmini", prose, "$h=15$", ff)["acc"] == 0.0
    mc = {"id": "429", "question_type": "multi-choice", "question": "True or false?\nChoice:\nA. True\nB. False"}
    assert compute_score("mathverse_testmini", "It is the adjacent side.\nThe correct option is B", "False", mc, mode="official")["acc"] == 1.0


def test_geometry3k_official_is_verls_geo3k_rule():
    # verl/EasyR1: mathruler.grade_answer on the last \boxed{} of the whole response; no box → wrong.
    assert compute_score("hiyouga/geometry3k", "So x = \\boxed{3}", "3", mode="official")["acc"] == 1.0
    assert compute_score("hiyouga/geometry3k", "<think>a</think><answer>3</answer>", "3", mode="official")["acc"] == 0.0
    assert compute_score("hiyouga/geometry3k", "<think>a</think><answer>3</answer>", "3")["acc"] == 1.0
    # mathruler wants an integer ground truth matched by an integer (no sympy): \frac{24}{2} is wrong for '12';
    # train (math-verify) evaluates it to 12.
    assert compute_score("hiyouga/geometry3k", "\\boxed{\\frac{24}{2}}", "12", mode="official")["acc"] == 0.0
    assert compute_score("hiyouga/geometry3k", "\\boxed{\\frac{24}{2}}", "12")["acc"] == 1.0
    assert compute_score("hiyouga/geometry3k", "\\boxed{\\sqrt{884}}", "2 \\sqrt { 221 }", mode="official")["acc"] == 1.0
