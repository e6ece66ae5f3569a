"""Geometry3K (``hiyouga/geometry3k``): CARE's training set (train, 2,101) and in-training validation (test, 601).

Source schema: ``images`` (list of Image), ``problem`` (text with a literal ``<image>`` per image, e.g.
``"<image>Find x."``), ``answer`` (a value such as ``"3"`` or ``"2 \\sqrt { 221 }"``); newer card revisions add
``id``, ``choices``, ``ground_truth`` (kept in ``meta_json``).

Rows: ``data_source = "hiyouga/geometry3k"``, ground truth = ``answer``, ``question_type = free_form``,
``answer_type = expr``, the problem's own ``<image>`` placeholders kept in place.

    python -m data_prep.geometry3k --out DIR [--split train,test] [--local-path PATH]
"""

from __future__ import annotations

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
)
from data_prep.prompt import IMAGE_TOKEN
from data_prep.sources import SourceSpec

NAME = "geometry3k"
HF_ID = "hiyouga/geometry3k"
DATA_SOURCE = "hiyouga/geometry3k"
SPLITS = ("train", "validation", "test")


def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
    problem = require_str(record, "problem")
    answer = require_answer(record)
    images = record.get("images")
    if images is None:
        raise BadRecord("missing_image", "field 'images' is missing or null")
    if not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise BadRecord("missing_image", "field 'images' is an empty list")
    for tok in ("<video>", "<audio>"):
        if tok in problem:
            ctx.repair("stray_media_token", f"{tok} in problem")
            problem = problem.replace(tok, "[" + tok[1:-1] + "]")
    n = problem.count(IMAGE_TOKEN)
    if n == 0:
        problem = IMAGE_TOKEN * len(images) + problem
        ctx.repair("prepended_image_placeholder", f"{len(images)} image(s), no <image> in problem")
    elif n != len(images):
        raise BadRecord("placeholder_mismatch", f"problem has {n} '<image>' for {len(images)} image(s)")
    question = problem.replace(IMAGE_TOKEN, "").strip()
    if not question:
        raise BadRecord("empty_question", "problem has no text besides the image placeholder(s)")
    rid = record.get("id")
    return Converted(
        id=str(rid) if rid is not None else "",
        body=problem,
        images=list(images),
        ground_truth=answer,
        extra={
            "question_type": "free_form",
            "answer_type": "expr",
            "choices": [],
            "question": question,
        },
        meta=clean_meta(record, drop=("images", "problem", "answer")),
    )


def make_spec(split: str) -> Spec:
    return Spec(
        name=NAME,
        stem=f"{NAME}_{split}",
        data_source=DATA_SOURCE,
        split=split,
        variant=split,
        ability="math",
        source=SourceSpec(HF_ID, None, split),
        convert=convert,
    )


SCRIPT = Script(
    NAME,
    __doc__,
    make_spec,
    choices=SPLITS,
    default=("train", "test"),
    option="--split",
    option_help="comma-separated splits (default train,test: training set + CARE's in-training validation)",
)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
