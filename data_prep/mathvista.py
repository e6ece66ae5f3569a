"""MathVista ``testmini`` (``AI4Math/MathVista``, 1,000 records; ``test`` has no public answers).

Question text: the official ``query`` (hint + question + unit + ``Choices: (A) …``); the GitHub JSON has no
``query`` column (it lives in ``data/query.json``), so when it is absent the query is rebuilt with the official
``build_query`` rules (:func:`build_query`, checked against the real queries in the tests). Image: ``decoded_image``
(HF) or the ``image`` path (local JSON). Ground truth: ``answer`` as published (for multiple choice the option
**text**). ``precision`` (float64 on HF, int on GitHub) -> int, -1 when absent; ``unit`` None -> "".

    python -m data_prep.mathvista --out DIR [--local-path PATH]
"""

from __future__ import annotations

import math
import sys
from typing import Any

from data_prep.cli import Script
from data_prep.core import (
    BadRecord,
    Converted,
    Ctx,
    Spec,
    clean_meta,
    require_answer,
    require_str,
    sanitize_media_tokens,
)
from data_prep.prompt import IMAGE_TOKEN
from data_prep.sources import SourceSpec

NAME = "mathvista"
HF_ID = "AI4Math/MathVista"
SPLIT = "testmini"
DATA_SOURCE = "mathvista_testmini"
OFFICIAL_FILES = ("testmini.json", "data/testmini.json")

QUESTION_TYPES = ("multi_choice", "free_form")
ANSWER_TYPES = ("text", "integer", "float", "list")

_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
    "e.g., 1, 2, 3, at the end.",
    ("float", 1): "Hint: Please answer the question requiring a floating-point number with one decimal place and "
    "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    ("float", 2): "Hint: Please answer the question requiring a floating-point number with two decimal places and "
    "provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def parse_precision(value: Any) -> int:
    """-1 when absent; 1.0 (HF float64) and 1 (GitHub int) -> 1."""
    if value is None or value == "":
        return -1
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise BadRecord("invalid_record", f"precision {value!r} is not a number") from None
    if math.isnan(f):
        return -1
    if not f.is_integer():
        raise BadRecord("invalid_record", f"precision {value!r} is not an integer")
    return int(f)


def build_query(
    question: str, question_type: str, answer_type: str, precision: int, unit: str, choices: list[str]
) -> str:
    """The official MathVista zero-shot query (``evaluation/build_query.py``, shot_type "solution")."""
    if question_type == "multi_choice":
        hint = _HINTS["multi_choice"]
    elif answer_type == "float":
        hint = _HINTS.get(("float", precision), "")
    else:
        hint = _HINTS.get(answer_type, "")
    question_text = f"Question: {question}"
    if unit:
        question_text += f" (Unit: {unit})"
    choices_text = ""
    if choices:
        choices_text = "\n".join(["Choices:"] + [f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(choices)])
    return "\n".join(e for e in (hint, question_text, choices_text) if e != "").strip()


def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
    pid = record.get("pid", record.get("question_id"))
    if pid is None:
        raise BadRecord("invalid_record", "no 'pid' (or 'question_id')")
    question = require_str(record, "question")
    answer = require_answer(record)
    qtype = require_str(record, "question_type")
    atype = require_str(record, "answer_type")
    if qtype not in QUESTION_TYPES:
        raise BadRecord("invalid_record", f"question_type {qtype!r} not in {QUESTION_TYPES}")
    if atype not in ANSWER_TYPES:
        raise BadRecord("invalid_record", f"answer_type {atype!r} not in {ANSWER_TYPES}")
    choices = record.get("choices") or []
    if not isinstance(choices, (list, tuple)) or any(not isinstance(c, str) for c in choices):
        raise BadRecord("malformed_options", f"choices must be a list of strings, got {choices!r}")
    choices = list(choices)
    if qtype == "multi_choice":
        if len(choices) < 2:
            raise BadRecord("malformed_options", f"multi_choice with {len(choices)} choice(s)")
        if answer not in choices:
            raise BadRecord("malformed_options", f"answer {answer!r} is not one of the choices {choices!r}")
    unit = record.get("unit") or ""
    if not isinstance(unit, str):
        raise BadRecord("invalid_record", f"unit must be a string, got {unit!r}")
    precision = parse_precision(record.get("precision"))

    query = record.get("query")
    if not isinstance(query, str) or not query.strip():
        query = build_query(question, qtype, atype, precision, unit, choices)
    if not question.strip():
        raise BadRecord("empty_question", "question is empty")
    query = sanitize_media_tokens(query, ctx, "query")

    image = record.get("decoded_image")
    if image is None:
        image = record.get("image")
    meta = clean_meta(
        record,
        drop=(
            "question",
            "answer",
            "choices",
            "unit",
            "precision",
            "question_type",
            "answer_type",
            "query",
            "decoded_image",
            "pid",
            "question_id",
        ),
    )
    return Converted(
        id=str(pid),
        body=IMAGE_TOKEN + query,
        images=[image],
        ground_truth=answer,
        extra={
            "question_type": qtype,
            "answer_type": atype,
            "choices": choices,
            "precision": precision,
            "unit": unit,
            "question": question,
        },
        meta=meta,
    )


def make_spec(split: str = SPLIT) -> Spec:
    return Spec(
        name=NAME,
        stem=DATA_SOURCE,
        data_source=DATA_SOURCE,
        split=split,
        variant=split,
        ability="math",
        source=SourceSpec(HF_ID, None, split, OFFICIAL_FILES, dict_id_field="pid"),
        convert=convert,
        id_field="pid",
    )


SCRIPT = Script(NAME, __doc__, make_spec, choices=(SPLIT,))
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
