"""A synthetic, verifiable visual task for the CPU learning run: "What colour is the shape?" (4 options).

Each item is a small RGB canvas (a lightly tinted background) with one shape (circle, square or triangle) at a random
position and size, filled with one of four colours (red, green, blue, yellow; each channel jittered). The answers
are balanced (every block of 4 consecutive items holds each answer once), and the text of a block is one of three
phrasings of the same question (:data:`QUESTIONS`, cycled block by block; the option list ``A. red`` … ``D. yellow``
never changes), so:

* the answer depends only on the image: the four items of a block share their text and hold each answer once, so a
  policy that ignores the image, whatever it does with the text, scores exactly 0.25 on every whole block, i.e.
  **chance = 0.25** (:func:`chance_level`);
* the image-blanked control (``blank=True``: every image the same grey canvas) makes that concrete: the items of a
  block are then identical prompts, byte for byte, with four different answers;
* consecutive blocks have prompts of different lengths. That is deliberate: verl 0.9.1 cannot train on a step whose
  rows all have the same length (``left_right_2_no_padding`` then builds Qwen2.5-VL's ``(4, L)`` position ids as a
  nested tensor ragged in the wrong dimension and the micro-batching fails), and with one fixed prompt and a
  well-formatted policy every row of a step would.

Everything is deterministic from ``seed``: item ``i`` of a split is drawn from ``numpy.random.default_rng((seed,
split_code, i, attempt))``. Validation items are drawn first; a training item whose image (PNG bytes) equals a
validation image is redrawn (``attempt + 1``), so the two splits are disjoint and no validation item is seen in
training.

Rows follow ``data_prep``'s schema exactly (:data:`data_prep.schema.ARROW_SCHEMA`): the prompt is built with
:func:`data_prep.prompt.build_messages` (the question, then the project's single ``<think>…</think><answer>…</answer>``
instruction), the ground truth is the option letter, and ``data_source`` is :data:`DATA_SOURCE`, scored by
``reward_fns`` like every benchmark (``reward_fns/verifiers/synthetic_shapes.py``).

CLI: ``python -m recipe_care.learn_demo.shapes_task --out DIR [--seed 0] [--train 512] [--val 128] [--blank]`` writes
``DIR/train.parquet`` and ``DIR/val.parquet`` (skipped when both exist for the same settings) and prints ``DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_SOURCE = "synthetic_shapes"
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 30),
}
OPTIONS: tuple[str, ...] = tuple(COLOURS)  # letter order: A red, B green, C blue, D yellow
LETTERS = "ABCD"
SHAPES = ("circle", "square", "triangle")
IMAGE_SIZE = 112  # px; with the tiny processor (14 px patches, 2x2 merge, max_pixels 16*28*28) 16 image tokens
#: Three phrasings of the question, of different token lengths; block ``b`` (items ``4b … 4b+3``) uses
#: ``QUESTIONS[b % 3]``, so two consecutive blocks (one training step of 8 prompts) never share a prompt length.
QUESTIONS: tuple[str, ...] = (
    "What colour is the shape in the image?",
    "What colour is the shape?",
    "Look at the picture carefully. Which of the four colours does the shape drawn in it have?",
)
SPLIT_CODES = {"train": 0, "val": 1}
MARKER = ".synthetic_shapes.json"
DATA_VERSION = 5


def chance_level() -> float:
    """Accuracy of any policy that ignores the image on balanced 4-way items."""
    return 1.0 / len(OPTIONS)


def question_for(index: int) -> str:
    """The phrasing of item ``index``: one per block of 4 items, cycled (independent of the answers).

    >>> [question_for(i) == QUESTIONS[0] for i in range(5)]
    [True, True, True, True, False]
    """
    return QUESTIONS[(index // len(OPTIONS)) % len(QUESTIONS)]


def question_body(question: str) -> str:
    """The user text before the instruction: image placeholder, question, options, letter hint (data_prep style)."""
    from data_prep.core import option_lines
    from data_prep.prompt import IMAGE_TOKEN, MC_HINT

    return f"{IMAGE_TOKEN}{question}\nChoices:\n{option_lines(OPTIONS)}\n{MC_HINT}"


@dataclass(frozen=True)
class Item:
    split: str
    index: int
    colour: str
    shape: str
    png: bytes = field(repr=False)

    @property
    def answer(self) -> str:
        return LETTERS[OPTIONS.index(self.colour)]

    @property
    def question(self) -> str:
        return question_for(self.index)


def _rgb(rng: np.random.Generator, base: tuple[int, int, int], jitter: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)


def render(rng: np.random.Generator, colour: str, *, size: int = IMAGE_SIZE) -> tuple[str, bytes]:
    """Draw one item's canvas; returns (shape, PNG bytes)."""
    from PIL import Image, ImageDraw

    background = _rgb(rng, (225, 225, 225), 25)
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    side = int(rng.integers(size * 3 // 4, size * 15 // 16 + 1))
    x0 = int(rng.integers(0, size - side + 1))
    y0 = int(rng.integers(0, size - side + 1))
    box = (x0, y0, x0 + side - 1, y0 + side - 1)
    fill = _rgb(rng, COLOURS[colour], 30)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0 + side / 2, y0), (x0, y0 + side - 1), (x0 + side - 1, y0 + side - 1)], fill=fill)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return shape, buf.getvalue()


def blank_png(size: int = IMAGE_SIZE) -> bytes:
    """The image of the blanked control: one flat grey canvas (the same for every item)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def _block_colours(seed: int, split: str, block: int) -> list[str]:
    """Balanced answers: each block of 4 items is a seeded permutation of the 4 colours."""
    rng = np.random.default_rng((seed, SPLIT_CODES[split], block, 1_000_003))
    return [OPTIONS[i] for i in rng.permutation(len(OPTIONS))]


def make_items(seed: int, split: str, n: int, *, exclude: set[bytes] | frozenset = frozenset()) -> list[Item]:
    """``n`` items of ``split`` (deterministic from ``seed``); items whose PNG is in ``exclude`` are redrawn."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    items = []
    colours: list[str] = []
    for i in range(n):
        if i % len(OPTIONS) == 0:
            colours = _block_colours(seed, split, i // len(OPTIONS))
        colour = colours[i % len(OPTIONS)]
        for attempt in range(100):
            rng = np.random.default_rng((seed, SPLIT_CODES[split], i, attempt))
            shape, png = render(rng, colour)
            if png not in exclude:
                break
        else:  # pragma: no cover (a collision 100 times in a row cannot happen with these ranges)
            raise RuntimeError(f"could not draw {split} item {i} outside the excluded images")
        items.append(Item(split, i, colour, shape, png))
    return items


def make_splits(seed: int, n_train: int, n_val: int) -> tuple[list[Item], list[Item]]:
    """Disjoint train and validation items: validation first, training items never reuse a validation image."""
    val = make_items(seed, "val", n_val)
    train = make_items(seed, "train", n_train, exclude={it.png for it in val})
    return train, val


def to_row(item: Item, seed: int, *, blank: bool = False) -> dict:
    """One verl row in data_prep's schema."""
    from data_prep.prompt import build_messages
    from data_prep.schema import make_extra_info

    png = blank_png() if blank else item.png
    return {
        "data_source": DATA_SOURCE,
        "prompt": build_messages(question_body(item.question)),
        "images": [{"bytes": png, "path": None}],
        "ability": "multiple_choice",
        "reward_model": {"style": "rule", "ground_truth": item.answer},
        "extra_info": make_extra_info(
            meta={"colour": item.colour, "shape": item.shape, "seed": seed, "blank": blank},
            id=f"shapes-{seed}-{item.split}-{item.index}",
            question_type="multi_choice",
            answer_type="letter",
            choices=list(OPTIONS),
            question=item.question,
            benchmark="synthetic_shapes",
            variant="blank" if blank else "colour",
            split=item.split,
            index=item.index,
        ),
    }


def write_rows(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from data_prep.schema import ARROW_SCHEMA

    tmp = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), tmp)
    tmp.replace(path)


def write_task(out_dir, *, seed: int = 0, n_train: int = 512, n_val: int = 128, blank: bool = False) -> Path:
    """Write ``train.parquet`` and ``val.parquet``; reuse them when the folder holds the same settings."""
    out = Path(out_dir)
    settings = {"version": DATA_VERSION, "seed": seed, "n_train": n_train, "n_val": n_val, "blank": blank}
    marker = out / MARKER
    if marker.is_file() and (out / "train.parquet").is_file() and (out / "val.parquet").is_file():
        try:
            if json.loads(marker.read_text()) == settings:
                return out
        except ValueError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    train, val = make_splits(seed, n_train, n_val)
    for name, items in (("train", train), ("val", val)):
        write_rows([to_row(it, seed, blank=blank) for it in items], out / f"{name}.parquet")
    marker.write_text(json.dumps(settings))
    return out


def digest(items: list[Item]) -> str:
    """A short hash of the items' images and answers (for determinism checks)."""
    h = hashlib.sha256()
    for it in items:
        h.update(it.png)
        h.update(it.answer.encode())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=512, help="training items")
    parser.add_argument("--val", type=int, default=128, help="validation items")
    parser.add_argument("--blank", action="store_true", help="image-blanked control: every image the same grey")
    args = parser.parse_args(argv)
    print(write_task(args.out, seed=args.seed, n_train=args.train, n_val=args.val, blank=args.blank))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
