"""A few training/validation rows in verl's RL-dataset schema, made from the shared benchmark fixtures.

Used by ``run_scripts/cpu_smoke.sh`` while the project's ``data_prep`` converters are not available. Each row is
one real fixture record (question, options, ground truth, image) in the columns ``RLHFDataset`` reads:

* ``data_source`` (the benchmark name), ``ability``,
* ``prompt``: ``[{"role": "user", "content": "<image>" + question + options + instruction}]``,
* ``images``: ``[{"bytes": PNG, "path": None}]``, downscaled to at most ``--image-size`` px so prompts stay short,
* ``reward_model``: ``{"style": "rule", "ground_truth": answer}``, ``extra_info``: ``{"index", "split", "id"}``.

The question text is cut to ``--max-question-chars`` characters: the tiny test tokenizer is trained on a small
corpus, so real text costs many tokens, and verl refuses image prompts longer than ``data.max_prompt_length``.
Inline image markers of the source (``<image1>``…) are removed; every row carries exactly one image.

CLI: ``python -m recipe_care.testing.smoke_data --fixtures DIR/mathvision --out DIR [--text-only]`` writes
``train.parquet`` and ``val.parquet`` into ``--out`` and prints the folder.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

INSTRUCTION = (
    " Think step by step inside <think></think>, then give the final answer inside <answer></answer>."
)
_INLINE_IMAGE = re.compile(r"<image\s*\d*>")


def _png_bytes(path: Path, size: int) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    return buf.getvalue()


def _question_text(record: dict, max_chars: int) -> str:
    question = _INLINE_IMAGE.sub("", str(record.get("question", ""))).strip()
    question = re.sub(r"\s+", " ", question)[:max_chars]
    options = record.get("options") or []
    if options:
        letters = "ABCDEFGHIJ"
        question += " Options: " + " ".join(f"({letters[i]}) {o}" for i, o in enumerate(options[:5]))
    return question


def load_rows(fixtures: Path, n: int, *, text_only: bool, image_size: int, max_question_chars: int, split: str,
              skip: int = 0) -> list[dict]:
    """Read ``records.jsonl`` under ``fixtures`` and build ``n`` rows (records with an image file only, unless
    ``text_only``), starting after the first ``skip`` usable records."""
    fixtures = Path(fixtures)
    benchmark = fixtures.name
    rows: list[dict] = []
    usable = 0
    with open(fixtures / "records.jsonl", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            image_rel = record.get("image")
            image_path = fixtures / image_rel if image_rel else None
            if not text_only and (image_path is None or not image_path.is_file()):
                continue
            usable += 1
            if usable <= skip:
                continue
            text = _question_text(record, max_question_chars) + INSTRUCTION
            row = {
                "data_source": benchmark,
                "ability": "math",
                "prompt": [{"role": "user", "content": text if text_only else "<image>" + text}],
                "reward_model": {"style": "rule", "ground_truth": str(record.get("answer", ""))},
                "extra_info": {"index": len(rows), "split": split, "id": str(record.get("id", len(rows)))},
            }
            if not text_only:
                row["images"] = [{"bytes": _png_bytes(image_path, image_size), "path": None}]
            rows.append(row)
            if len(rows) == n:
                return rows
    raise ValueError(f"{fixtures}: only {len(rows)} usable records after skipping {skip}, need {n}")


def write_smoke_data(fixtures, out_dir, *, train_rows: int = 4, val_rows: int = 4, text_only: bool = False,
                     image_size: int = 56, max_question_chars: int = 120) -> Path:
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(text_only=text_only, image_size=image_size, max_question_chars=max_question_chars)
    train = load_rows(fixtures, train_rows, split="train", **kw)
    val = load_rows(fixtures, val_rows, split="test", skip=train_rows, **kw)
    pd.DataFrame(train).to_parquet(out / "train.parquet")
    pd.DataFrame(val).to_parquet(out / "val.parquet")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", required=True, help="a benchmark fixture folder holding records.jsonl")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-rows", type=int, default=4)
    parser.add_argument("--val-rows", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--max-question-chars", type=int, default=120)
    parser.add_argument("--text-only", action="store_true")
    args = parser.parse_args(argv)
    print(
        write_smoke_data(
            args.fixtures,
            args.out,
            train_rows=args.train_rows,
            val_rows=args.val_rows,
            text_only=args.text_only,
            image_size=args.image_size,
            max_question_chars=args.max_question_chars,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
