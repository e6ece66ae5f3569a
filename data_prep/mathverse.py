"""MathVerse ``testmini`` (``AI4Math/MathVerse``, config/split ``testmini``: 788 problems x 5 versions = 3,940 rows).

Question text: the official CoT query ``query_cot`` (kept for every version, so Vision Only rows, whose
``question`` is empty, still say what to do); ``question`` is used when ``query_cot`` is absent. ``question_type``
``multi-choice`` / ``free-form`` -> ``multi_choice`` / ``free_form``. ``choices``: parsed from the ``Choices:`` /
``Choice:`` block of the question text (``A:40°`` / ``A. True`` / ``A.$y$`` lines; ``[]`` when the choices are only
in the image). Ground truth: ``answer`` as published (dirty MC answers such as ``'(C)'`` or option text are left
to the verifier). ``answer_type``: ``letter`` (MC) / ``expr`` (free-form). Rows of the ``testmini_text_only``
config (``problem_version`` "Text Only", no image) are written with no image and no placeholder (note
``text_only_record``); any other record without an image is a ``missing_image`` skip.

    python -m data_prep.mathverse --out DIR [--local-path PATH]
"""

from __future__ import annotations

import re
import sys
from typing import Any

from data_prep.cli import Script
from data_prep.core import (
    LETTERS,
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

NAME = "mathverse"
HF_ID = "AI4Math/MathVerse"
SPLIT = "testmini"
DATA_SOURCE = "mathverse_testmini"
OFFICIAL_FILES = ("testmini.json", "data/testmini.json", "testmini_text_only.json", "data/testmini_text_only.json")
QUESTION_TYPES = {
    "multi-choice": "multi_choice",
    "free-form": "free_form",
    "multi_choice": "multi_choice",
    "free_form": "free_form",
}
TEXT_ONLY_VERSION = "Text Only"
VISION_ONLY_TEXT = "According to the question shown in the image, answer the question."

_CHOICES_HEADER = re.compile(r"(?m)^[ \t]*Choices?[ \t]*[:：][ \t]*$")
_OPTION_LINE = re.compile(r"^[ \t]*([A-Z])[ \t]*[:.：][ \t]?(.*)$")


def parse_choices(question: str) -> list[str]:
    """Option texts of the last ``Choices:`` block, in letter order; ``[]`` when there is no well-formed block."""
    headers = list(_CHOICES_HEADER.finditer(question))
    if not headers:
        return []
    options: list[str] = []
    for line in question[headers[-1].end() :].splitlines():
        m = _OPTION_LINE.match(line)
        if m and m.group(1) == LETTERS[len(options)]:
            options.append(m.group(2).strip())
        elif options and line.strip():
            options[-1] = f"{options[-1]}\n{line.strip()}"  # continuation of a multi-line option
        elif line.strip():
            return []  # text before the first option: not an option block
    return options if len(options) >= 2 else []


def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
    rid = require_str(record, "sample_index", allow_empty=False)
    answer = require_answer(record)
    raw_type = require_str(record, "question_type")
    if raw_type not in QUESTION_TYPES:
        raise BadRecord("invalid_record", f"question_type {raw_type!r} not in {sorted(QUESTION_TYPES)}")
    qtype = QUESTION_TYPES[raw_type]
    question = record.get("question") or ""
    if not isinstance(question, str):
        raise BadRecord("invalid_record", f"question must be a string, got {type(question).__name__}")
    version = str(record.get("problem_version") or "")

    text = record.get("query_cot")
    if not isinstance(text, str) or not text.strip():
        text = question
    if not text.strip():
        if version != "Vision Only":
            raise BadRecord("empty_question", f"no question text in a {version or 'unknown'!r} record")
        text = VISION_ONLY_TEXT
        ctx.note("image_only_question", version)
    text = sanitize_media_tokens(text.strip(), ctx, "query")

    image = record.get("image")
    if image is None or image == "" or (isinstance(image, dict) and not image.get("bytes") and not image.get("path")):
        if version != TEXT_ONLY_VERSION:
            raise BadRecord("missing_image", f"{version or 'record'} has no image")
        ctx.note("text_only_record", f"sample_index {rid}")
        body, images = text, []
    else:
        body, images = IMAGE_TOKEN + text, [image]

    return Converted(
        id=rid,
        body=body,
        images=images,
        ground_truth=answer,
        extra={
            "question_type": qtype,
            "answer_type": "letter" if qtype == "multi_choice" else "expr",
            "choices": parse_choices(question) if qtype == "multi_choice" else [],
            "question": question,
            "variant": version,
        },
        meta=clean_meta(
            record, drop=("sample_index", "question", "answer", "question_type", "image", "query_cot", "query_wo")
        ),
    )


def make_spec(split: str = SPLIT) -> Spec:
    return Spec(
        name=NAME,
        stem=DATA_SOURCE,
        data_source=DATA_SOURCE,
        split=split,
        variant=split,
        ability="math",
        source=SourceSpec(HF_ID, "testmini", split, OFFICIAL_FILES, dict_id_field="sample_index"),
        convert=convert,
        id_field="sample_index",
    )


SCRIPT = Script(NAME, __doc__, make_spec, choices=(SPLIT,))
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
