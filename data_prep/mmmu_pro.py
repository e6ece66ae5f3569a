"""MMMU-Pro (``MMMU/MMMU_Pro``, split ``test``, 1,730 records per setting): ``--setting standard10`` and/or ``vision``.

standard10 (config ``standard (10 options)``): the text is ``question`` + one ``"A. option"`` line per option (the
official layout) + a letter hint. ``options`` is a Python list literal string (``ast.literal_eval``); a single
nested list ``[[...]]`` is flattened (rule ``nested_options_flattened``). Every ``<image k>`` token in the question
and the options is replaced, in reading order, by one ``<image>`` and ``image_k`` is appended to the image list (a
token used twice passes its image twice, like the official code). Present images that no token references are put
in front (``prepended_image_placeholder``). A token whose ``image_k`` is null is a ``missing_image`` skip.

vision (config ``vision``): one screenshot holding question and options; the text is the official vision
instruction ("Write out the multiple-choice question in the image and then solve it.") + the letter hint.
``options`` (absent in the earliest card revision) only sets ``choices`` / the letter range.

Ground truth: the answer letter. ``answer_type = letter``; ``choices`` = option texts as published.

    python -m data_prep.mmmu_pro --out DIR [--setting standard10|vision|standard10,vision] [--local-path PATH]
"""

from __future__ import annotations

import ast
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

NAME = "mmmu_pro"
HF_ID = "MMMU/MMMU_Pro"
SPLIT = "test"
SETTINGS = {
    # setting: (HF config, data_source)
    "standard10": ("standard (10 options)", "mmmu_pro_standard10"),
    "vision": ("vision", "mmmu_pro_vision"),
}
MAX_IMAGES = 7
VISION_TEXT = "Write out the multiple-choice question in the image and then solve it."
IMAGE_REF = re.compile(r"<image\s*(\d+)>")


def parse_options(value: Any, ctx: Ctx, *, required: bool = True) -> list[str]:
    """Option texts from the published ``options`` (list literal string or list)."""
    if value is None:
        if required:
            raise BadRecord("malformed_options", "options are missing")
        return []
    opts = value
    if isinstance(value, str):
        try:
            opts = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise BadRecord(
                "malformed_options", f"options {value[:80]!r} is not a Python list literal: {exc}"
            ) from None
    if not isinstance(opts, (list, tuple)):
        raise BadRecord("malformed_options", f"options is a {type(opts).__name__}, not a list")
    if len(opts) == 1 and isinstance(opts[0], (list, tuple)):
        ctx.repair("nested_options_flattened", f"[[{len(opts[0])} options]]")
        opts = opts[0]
    if any(isinstance(o, (list, tuple, dict)) or o is None for o in opts):
        raise BadRecord("malformed_options", f"options contain non-text entries: {opts!r:.120}")
    opts = [str(o) for o in opts]
    if len(opts) < 2 or len(opts) > len(LETTERS):
        raise BadRecord("malformed_options", f"{len(opts)} options (need 2..{len(LETTERS)})")
    return opts


def _standard_text_and_images(record: dict[str, Any], options: list[str], ctx: Ctx) -> tuple[str, list[Any]]:
    question = sanitize_media_tokens(require_str(record, "question"), ctx, "question")
    shown = [sanitize_media_tokens(o, ctx, f"option {LETTERS[i]}") for i, o in enumerate(options)]
    text = f"{question.strip()}\n{option_lines(shown)}\n{MC_HINT}"
    images: list[Any] = []
    seen: set[int] = set()

    def substitute(m: re.Match) -> str:
        k = int(m.group(1))
        if not 1 <= k <= MAX_IMAGES:
            raise BadRecord(
                "missing_image", f"{m.group(0)} refers to image_{k}; only image_1..image_{MAX_IMAGES} exist"
            )
        img = record.get(f"image_{k}")
        if img is None or img == "":
            raise BadRecord("missing_image", f"{m.group(0)} is referenced but image_{k} is null")
        if k in seen:
            ctx.note("duplicate_image_reference", f"image_{k}")
        seen.add(k)
        images.append(img)
        return IMAGE_TOKEN

    text = IMAGE_REF.sub(substitute, text)
    unreferenced = [k for k in range(1, MAX_IMAGES + 1) if k not in seen and record.get(f"image_{k}") not in (None, "")]
    if unreferenced:
        ctx.repair("prepended_image_placeholder", "image_" + ",".join(map(str, unreferenced)) + " not referenced")
        text = IMAGE_TOKEN * len(unreferenced) + text
        images = [record[f"image_{k}"] for k in unreferenced] + images
    if not images:
        raise BadRecord("missing_image", "no image_1..image_7 and no <image k> token")
    return text, images


def make_convert(setting: str):
    def convert(record: dict[str, Any], ctx: Ctx) -> Converted:
        rid = require_str(record, "id", allow_empty=False)
        answer = require_answer(record)
        if setting == "standard10":
            options = parse_options(record.get("options"), ctx)
            letter_answer(answer, len(options))
            body, images = _standard_text_and_images(record, options, ctx)
            question = record["question"]
        else:
            options = parse_options(record.get("options"), ctx, required=False)
            letter_answer(answer, len(options) if options else 10)
            image = record.get("image")
            if image is None or image == "":
                raise BadRecord("missing_image", "the vision screenshot 'image' is null")
            body, images = f"{IMAGE_TOKEN}{VISION_TEXT}\n{MC_HINT}", [image]
            question = ""
        drop = ("id", "question", "options", "answer", "image", *(f"image_{k}" for k in range(1, MAX_IMAGES + 1)))
        return Converted(
            id=rid,
            body=body,
            images=images,
            ground_truth=answer,
            extra={
                "question_type": "multi_choice",
                "answer_type": "letter",
                "choices": options,
                "question": question,
            },
            meta=clean_meta(record, drop=drop),
        )

    return convert


def make_spec(setting: str) -> Spec:
    config, data_source = SETTINGS[setting]
    return Spec(
        name=NAME,
        stem=data_source,
        data_source=data_source,
        split=SPLIT,
        variant=setting,
        ability="multidisciplinary",
        source=SourceSpec(HF_ID, config, SPLIT),
        convert=make_convert(setting),
    )


SCRIPT = Script(
    NAME,
    __doc__,
    make_spec,
    choices=tuple(SETTINGS),
    default=("standard10",),
    option="--setting",
    option_help="standard10 (config 'standard (10 options)'), vision, or both comma-separated (default standard10)",
    choices_are_configs=True,
)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
