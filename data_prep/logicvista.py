"""LogicVista ``test`` (``lscpku/LogicVista``, 448 records).

The options are only described in the question text or drawn in the image ("Select from A-D"), so the text is
the question as is and ``choices = []``. Ground truth: ``answer`` as published (``"C"``, ``"A, C"``, ``"3"``).
``answer_type``: ``letter_set`` (several letters), ``letter`` (one), ``integer`` (digits), else ``text``. Image:
``image`` (HF Image, or a path) or the GitHub JSON's ``imagename`` (a file under ``images/``). The one record with
an empty answer (and question) is an ``empty_answer`` skip. GitHub's ``dataset.json`` is keyed by id (``v1_0``):
that key becomes ``id``.

    python -m data_prep.logicvista --out DIR [--local-path PATH]
"""

from __future__ import annotations

import re
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

NAME = "logicvista"
HF_ID = "lscpku/LogicVista"
SPLIT = "test"
DATA_SOURCE = "logicvista_test"
OFFICIAL_FILES = ("dataset.json", "data/dataset.json")


def answer_type(answer: str) -> str:
    a = answer.strip()
    if re.fullmatch(r"[A-Z](\s*,\s*[A-Z])+", a):
        return "letter_set"
    if re.fullmatch(r"[A-Z]", a):
        return "letter"
    if re.fullmatch(r"\d+", a):
        return "integer"
    return "text"


def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
    answer = require_answer(record)
    question = require_str(record, "question")
    if not question.strip():
        raise BadRecord("empty_question", "question is empty")
    image = record.get("image")
    if image is None or image == "":
        image = record.get("imagename")
    rid = record.get("id")
    if rid is None or rid == "":
        name = record.get("imagename")
        if not isinstance(name, str) or not name:
            raise BadRecord("invalid_record", "no 'id' and no 'imagename' to name the record")
        rid = name.rsplit(".", 1)[0]
    return Converted(
        id=str(rid),
        body=IMAGE_TOKEN + sanitize_media_tokens(question.strip(), ctx, "question"),
        images=[image],
        ground_truth=answer,
        extra={
            "question_type": "multi_choice",
            "answer_type": answer_type(answer),
            "choices": [],
            "question": question,
        },
        meta=clean_meta(record, drop=("id", "question", "answer", "image", "reasoning")),
    )


def make_spec(split: str = SPLIT) -> Spec:
    return Spec(
        name=NAME,
        stem=DATA_SOURCE,
        data_source=DATA_SOURCE,
        split=split,
        variant=split,
        ability="logic",
        source=SourceSpec(HF_ID, None, split, OFFICIAL_FILES, dict_id_field="id"),
        convert=convert,
    )


SCRIPT = Script(NAME, __doc__, make_spec, choices=(SPLIT,))
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
