"""We-Math ``testmini`` (``We-Math/We-Math``, 1,740 rows = 525 composite problems x their sub-questions).

``option`` is ONE string (``"A. 300, 400;B. 400, 300;…; E. No correct answer"``) with irregular separators
(``;``, ``; ``, ``;    ``, and at least one missing ``;``). It is split at the letter markers ``A.``, ``B.``, …
found in order (each after the start, a ``;`` or whitespace), so a missing separator does not merge two options;
when that differs from a plain ``;`` split the record counts under ``option_separator_repaired``. The text is
``question`` + ``"Choices:"`` + one ``"A. option"`` line per option + the letter hint. Image: ``image_path`` (an HF
Image despite its name; a relative path in the GitHub JSON). ``id`` = ``ID|key`` (``ID`` is the *problem* id shared
by its sub-questions); ``ID``, ``key``, ``question number``, ``knowledge concept`` are kept in ``meta_json`` for the
official 4-D metrics. Ground truth: the answer letter.

    python -m data_prep.wemath --out DIR [--local-path PATH]
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

NAME = "wemath"
HF_ID = "We-Math/We-Math"
SPLIT = "testmini"
DATA_SOURCE = "wemath_testmini"
OFFICIAL_FILES = ("testmini.json", "data/testmini.json")


def parse_option_string(option: str) -> tuple[list[str], bool]:
    """``(option texts in letter order, separators_were_irregular)``; raises ``malformed_options``."""
    starts: list[tuple[int, int]] = []  # (marker start, text start)
    pos = 0
    for letter in LETTERS:
        m = re.compile(rf"(?:^|(?<=[;；\s])){letter}\s*[.．]").search(option, pos)
        if m is None:
            break
        starts.append((m.start(), m.end()))
        pos = m.end()
    if len(starts) < 2:
        raise BadRecord("malformed_options", f"fewer than two 'A.', 'B.' option markers in {option!r:.120}")
    if option[: starts[0][0]].strip(" ;；"):
        raise BadRecord("malformed_options", f"text before option A in {option!r:.120}")
    texts = []
    for i, (_, text_start) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(option)
        texts.append(option[text_start:end].strip().rstrip(";；").strip())
    if any(t == "" for t in texts):
        raise BadRecord("malformed_options", f"an empty option in {option!r:.120}")
    naive = [p for p in re.split(r"\s*[;；]\s*", option.strip()) if p.strip()]
    irregular = len(naive) != len(texts)
    return texts, irregular


def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
    pid = require_str(record, "ID", allow_empty=False)
    key = require_str(record, "key", allow_empty=False)
    question = require_str(record, "question")
    if not question.strip():
        raise BadRecord("empty_question", "question is empty")
    answer = require_answer(record)
    option = require_str(record, "option")
    choices, irregular = parse_option_string(option)
    if irregular:
        ctx.repair("option_separator_repaired", f"{option!r:.100}")
    letter_answer(answer, len(choices))
    shown = [sanitize_media_tokens(c, ctx, f"option {LETTERS[i]}") for i, c in enumerate(choices)]
    text = f"{sanitize_media_tokens(question.strip(), ctx, 'question')}\nChoices:\n{option_lines(shown)}\n{MC_HINT}"
    image = record.get("image_path")
    if image is None:
        image = record.get("image")
    return Converted(
        id=f"{pid}|{key}",
        body=IMAGE_TOKEN + text,
        images=[image],
        ground_truth=answer,
        extra={
            "question_type": "multi_choice",
            "answer_type": "letter",
            "choices": choices,
            "question": question,
        },
        meta=clean_meta(
            record, drop=("question", "option", "answer", "image_path", "image", "knowledge concept description")
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
        source=SourceSpec(HF_ID, None, split, OFFICIAL_FILES),
        convert=convert,
        id_field="ID",
        report_id=lambda r: f"{r.get('ID')}|{r.get('key')}",
    )


SCRIPT = Script(NAME, __doc__, make_spec, choices=(SPLIT,))
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
