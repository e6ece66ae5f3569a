"""We-Math ``testmini`` (``We-Math/We-Math``, 1,740 rows = 525 composite problems x their sub-questions).

``option`` is ONE string (``"A. 300, 400;B. 400, 300;…; E. No correct answer"``) with irregular separators
(``;``, ``; ``, ``;    ``, and at least one missing ``;``), and a few option texts hold ``;X.`` artefacts of the
source (``…to get Shape ;C.; B. …``, ``∠AB;C.``, ``point ;O.``). It is split at the letter markers ``A.``, ``B.``, …
in order, choosing among candidate markers the sequence that gives every option a text and whose separators look
most like separators (:func:`parse_option_string`): a missing separator does not merge two options and an
artefact stays text (note ``option_marker_in_text``); a marker with no ``;`` before it counts under
``option_separator_repaired``. The text is ``question`` + ``"Choices:"`` + one ``"A. option"`` line per option +
the letter hint. Image: ``image_path`` (an HF Image despite its name; a relative path in the GitHub JSON). ``id`` =
``ID|key`` (``ID`` is the *problem* id shared by its sub-questions); ``ID``, ``key``, ``question number``,
``knowledge concept`` are kept in ``meta_json`` for the official 4-D metrics. Ground truth: the answer letter.

    python -m data_prep.wemath --out DIR [--local-path PATH]
"""

from __future__ import annotations

import functools
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


# A candidate option marker: a capital letter and a period, at the start or after a ';' or whitespace.
_MARKER = re.compile(r"(?:^|(?<=[;；\s]))([A-Z])\s*[.．]")
# A ';X.' left inside an option's text after parsing (a separator artefact of the source, e.g. "∠AB;C.").
MARKER_IN_TEXT = re.compile(r"[;；]\s*[A-Z]\s*[.．]")


def _marker_weight(option: str, start: int) -> int:
    """How much the text before a candidate marker looks like a real separator (higher = more)."""
    before = option[:start]
    if not before.strip(" \t;；"):
        return 0  # the first marker
    if re.search(r"[;；][ \t]+$", before):
        return 4  # "...; B."
    if before.endswith((";", "；")):
        prev = before[-2] if len(before) > 1 else ""
        if prev.isspace():
            return 1  # "... ;C." ("Shape ;C.", "point ;O.": the artefact's form; real once, after a missing ';')
        return 2 if prev.isupper() else 3  # "∠AB;C." (a name cut by the artefact) vs "400;B."
    return 1  # whitespace only: "45° B. 60°" (a missing separator)


def parse_option_string(option: str) -> tuple[list[str], bool]:
    """``(option texts in letter order, separators_were_irregular)``; raises ``malformed_options``.

    Step 1: every ``X.`` at the start or after ``;`` / whitespace is a candidate marker. Step 2: the markers are the
    sequence A, B, C, ... of candidates (A at the start) that gives the most options, each with a non-empty text,
    and among those the one whose separators look most like separators (:func:`_marker_weight`). So a ``;X.``
    artefact inside an option (``…to get Shape ;C.; B. …``, ``∠AB;C.``, ``point ;O.``) stays text, and a missing
    ``;`` (``A. 45° B. 60°``) does not merge two options. ``irregular``: some marker has no ``;`` before it.

    >>> parse_option_string("A. 1;B. ∠AB;C. is 40°; C. 45°; D. No correct answer")
    (['1', '∠AB;C. is 40°', '45°', 'No correct answer'], False)
    """
    candidates: dict[str, list[tuple[int, int, int]]] = {}  # letter -> [(marker start, text start, weight)]
    for m in _MARKER.finditer(option):
        candidates.setdefault(m.group(1), []).append((m.start(), m.end(), _marker_weight(option, m.start())))

    def text(start: int, end: int | None = None) -> str:
        return option[start:end].strip().rstrip(";；").strip()

    @functools.cache
    def best(i: int, text_start: int) -> tuple[int, int, tuple[int, ...]]:
        """Best (options, weight, marker starts) for the options after letter i-1, whose text starts at text_start."""
        result = (1, 0, ()) if text(text_start) else (-1, 0, ())  # stop here: the last option runs to the end
        for start, next_text, weight in candidates.get(LETTERS[i], []) if i < len(LETTERS) else []:
            if start < text_start or not text(text_start, start):
                continue
            n, w, starts = best(i + 1, next_text)
            if n > 0:
                result = max(result, (n + 1, w + weight, (start, *starts)))
        return result

    first = candidates.get("A", [])
    if not first or option[: first[0][0]].strip(" ;；"):
        raise BadRecord("malformed_options", f"no 'A.' option marker at the start of {option!r:.120}")
    n, _, starts = best(1, first[0][1])
    if n < 2:
        raise BadRecord("malformed_options", f"fewer than two non-empty options in {option!r:.120}")
    bounds = [first[0][0], *starts, len(option)]
    ends = {s: e for ms in candidates.values() for s, e, _ in ms}
    texts = [text(ends[bounds[k]], bounds[k + 1]) for k in range(n)]
    irregular = any(not re.search(r"[;；]\s*$", option[:s]) for s in starts)
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
    for i, choice in enumerate(choices):
        if MARKER_IN_TEXT.search(choice):
            ctx.note("option_marker_in_text", f"option {LETTERS[i]}: {choice!r:.60}")
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
