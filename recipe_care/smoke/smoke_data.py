"""A few training/validation rows for the CPU smoke run, cut from the project's ``data_prep`` output.

``run_scripts/cpu_smoke.sh`` first converts a benchmark fixture with the real converter
(``python -m data_prep.<name> --local-path <fixtures>/<name> --out DIR``), then calls this module, which takes rows
of that parquet **unchanged** in verl's RL-dataset schema (``data_source``, ``prompt``, ``images``, ``ability``,
``reward_model``, ``extra_info``) except for two things that keep a CPU run short:

* only rows whose prompt text is at most ``--max-prompt-chars`` long (the tiny test tokenizer is trained on a small
  corpus, so real text costs many tokens, and verl refuses image prompts longer than ``data.max_prompt_length``);
* images shrunk to at most ``--image-size`` px on the long side (PNG), so resizing and the vision tower stay cheap.

With ``--text-only`` the ``images`` column is dropped and the ``<image>`` placeholders are removed from the prompts
(rows for the text-only tiny Qwen2).

CLI: ``python -m recipe_care.smoke.smoke_data --prepared FILE.parquet --out DIR [--text-only]`` writes
``train.parquet`` (the first ``--train-rows`` rows) and ``val.parquet`` (the next ``--val-rows``) and prints ``DIR``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

IMAGE_PLACEHOLDER = "<image>"


def _shrink_png(data: bytes, size: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    return buf.getvalue()


def _prompt_text(prompt) -> str:
    return "".join(str(m["content"]) for m in prompt if isinstance(m.get("content"), str))


def select_rows(prepared, n: int, *, max_prompt_chars: int, image_size: int, text_only: bool) -> list[dict]:
    """The first ``n`` rows of a ``data_prep`` parquet whose prompt fits, made small (see the module docstring)."""
    import pandas as pd

    rows = []
    for row in pd.read_parquet(prepared).to_dict("records"):
        prompt = [dict(m) for m in row["prompt"]]
        if len(_prompt_text(prompt)) > max_prompt_chars:
            continue
        images = list(row.get("images") if row.get("images") is not None else [])
        if text_only:
            for message in prompt:
                message["content"] = message["content"].replace(IMAGE_PLACEHOLDER, "").strip()
            row.pop("images", None)
        else:
            if not images:
                continue
            row["images"] = [{"bytes": _shrink_png(img["bytes"], image_size), "path": None} for img in images]
        row["prompt"] = prompt
        rows.append(row)
        if len(rows) == n:
            return rows
    raise ValueError(f"{prepared}: only {len(rows)} rows with prompts of at most {max_prompt_chars} chars, need {n}")


def write_smoke_data(
    prepared,
    out_dir,
    *,
    train_rows: int = 4,
    val_rows: int = 4,
    text_only: bool = False,
    image_size: int = 56,
    max_prompt_chars: int = 700,
) -> Path:
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = select_rows(
        prepared, train_rows + val_rows, max_prompt_chars=max_prompt_chars, image_size=image_size, text_only=text_only
    )
    for name, part in (("train", rows[:train_rows]), ("val", rows[train_rows:])):
        tmp = out / f"{name}.parquet.partial"
        pd.DataFrame(part).to_parquet(tmp)
        tmp.replace(out / f"{name}.parquet")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", required=True, help="a parquet written by a data_prep converter")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-rows", type=int, default=4)
    parser.add_argument("--val-rows", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--max-prompt-chars", type=int, default=700)
    parser.add_argument("--text-only", action="store_true")
    args = parser.parse_args(argv)
    out = write_smoke_data(
        args.prepared,
        args.out,
        train_rows=args.train_rows,
        val_rows=args.val_rows,
        text_only=args.text_only,
        image_size=args.image_size,
        max_prompt_chars=args.max_prompt_chars,
    )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
