"""MATH-Vision (``MathLLMs/MathVision``): ``--split test`` (3,040) or ``testmini`` (304).

Every record has exactly one (composite) image even when its question names ``<image1>``, ``<image2>``, ... So all
``<imageN>`` tokens are removed from the question and one ``<image>`` is put in front. A literal two-character
``\\n`` (92 test questions end with ``\\n<image1>``) becomes a newline unless it starts a LaTeX command (``\\neq``,
``\\nu``, ...): rule ``literal_backslash_n``. Multiple choice (``options`` non-empty, always 5): ``"Choices:"`` +
one ``"A. option"`` line per option + the letter hint; an option that is only image tokens or its own letter
(the options are drawn in the figure) is shown as "(see the figure)". Ground truth: ``answer`` as published, dirty forms included (``'11 '``,
``'$\\boxed{\\frac{16}{7}}$'``, ``'\\x0crac{36}{13}'``): the verifier cleans them. Image: ``decoded_image`` (HF) or
the ``image`` path (local JSON). ``answer_type``: ``letter`` (MC) / ``expr`` (free-form).

    python -m data_prep.mathvision --out DIR [--split test|testmini|test,testmini] [--local-path PATH]
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
    letter_answer,
    option_lines,
    require_answer,
    require_str,
    sanitize_media_tokens,
)
from data_prep.prompt import IMAGE_TOKEN, MC_HINT
from data_prep.sources import SourceSpec

NAME = "mathvision"
HF_ID = "MathLLMs/MathVision"
SPLITS = ("test", "testmini")
IMAGE_REF = re.compile(r"<image\s*\d+>")
IMAGE_REF_WITH_SPACE = re.compile(r"[ \t]*<image\s*\d+>")  # "the ant <image1> walks" -> "the ant walks"
# "\n" followed by a lower-case letter may be a LaTeX command (\neq, \nu, \nabla, \newline ...): left alone.
LITERAL_NEWLINE = re.compile(r"\\n(?![a-z])")
FIGURE_OPTION = "(see the figure)"


def clean_question(question: str, ctx: Ctx) -> str:
    fixed = LITERAL_NEWLINE.sub("\n", question)
    if fixed != question:
        ctx.repair("literal_backslash_n", f"{len(LITERAL_NEWLINE.findall(question))} x '\\n'")
    text = IMAGE_REF_WITH_SPACE.sub("", fixed)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return sanitize_media_tokens(text.strip(), ctx, "question")


def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
    rid = require_str(record, "id", allow_empty=False)
    question = require_str(record, "question")
    answer = require_answer(record)
    options = record.get("options")
    if options is None:
        options = []
    if not isinstance(options, (list, tuple)) or any(not isinstance(o, str) for o in options):
        raise BadRecord("malformed_options", f"options must be a list of strings, got {options!r:.120}")
    options = list(options)
    if len(options) == 1:
        raise BadRecord("malformed_options", "a single option")

    text = clean_question(question, ctx)
    if not text:
        ctx.note("image_only_question", f"id {rid}")
    if options:
        letter_answer(answer, len(options))
        shown = []
        for i, opt in enumerate(options):
            o = IMAGE_REF.sub("", opt).strip()
            # Options drawn in the figure are published as image tokens or as their own letter ("A", "B", ...).
            figure_only = not o or o == LETTERS[i]
            shown.append(FIGURE_OPTION if figure_only else sanitize_media_tokens(o, ctx, f"option {LETTERS[i]}"))
        text = f"{text}\nChoices:\n{option_lines(shown)}\n{MC_HINT}".strip()

    image = record.get("decoded_image")
    if image is None:
        image = record.get("image")
    return Converted(
        id=rid,
        body=IMAGE_TOKEN + text,
        images=[image],
        ground_truth=answer,
        extra={
            "question_type": "multi_choice" if options else "free_form",
            "answer_type": "letter" if options else "expr",
            "choices": options,
            "question": question,
        },
        meta=clean_meta(record, drop=("id", "question", "options", "answer", "decoded_image", "image")),
    )


def make_spec(split: str) -> Spec:
    return Spec(
        name=NAME,
        stem=f"{NAME}_{split}",
        data_source=f"{NAME}_{split}",
        split=split,
        variant=split,
        ability="math",
        source=SourceSpec(HF_ID, None, split, (f"{split}.jsonl", f"data/{split}.jsonl")),
        convert=convert,
    )


SCRIPT = Script(
    NAME,
    __doc__,
    make_spec,
    choices=SPLITS,
    default=("test",),
    option="--split",
    option_help="test (3,040), testmini (304), or both comma-separated (default test)",
)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
