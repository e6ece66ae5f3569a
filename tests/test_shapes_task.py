"""The synthetic learning task, its verifier and the curves writer (fast; no verl run)."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from recipe_care.learn_demo import learn_curves, shapes_task
from reward_fns import compute_score


def test_items_are_deterministic_balanced_and_the_splits_disjoint():
    train, val = shapes_task.make_splits(3, 64, 32)
    again_train, again_val = shapes_task.make_splits(3, 64, 32)
    assert shapes_task.digest(train) == shapes_task.digest(again_train)
    assert shapes_task.digest(val) == shapes_task.digest(again_val)
    assert shapes_task.digest(shapes_task.make_splits(4, 64, 32)[0]) != shapes_task.digest(train)
    assert not {it.png for it in train} & {it.png for it in val}
    # every block of 4 consecutive items (hence every batch of 8 prompts) holds each answer once per block
    for items in (train, val):
        for start in range(0, len(items), 4):
            assert sorted(it.answer for it in items[start : start + 4]) == list("ABCD")


def test_a_training_item_equal_to_a_validation_image_is_redrawn():
    val = shapes_task.make_items(0, "val", 8)
    first = shapes_task.make_items(0, "train", 8)
    redrawn = shapes_task.make_items(0, "train", 8, exclude={first[2].png, first[5].png})
    assert redrawn[2].png != first[2].png and redrawn[5].png != first[5].png
    assert [it.answer for it in redrawn] == [it.answer for it in first]
    assert [it.png for i, it in enumerate(redrawn) if i not in (2, 5)] == [
        it.png for i, it in enumerate(first) if i not in (2, 5)
    ]
    assert len(val) == 8


def test_the_answer_is_in_the_image_only():
    train, _ = shapes_task.make_splits(0, 16, 0)
    rows = [shapes_task.to_row(it, 0) for it in train]
    # the 4 items of a block share their text and hold each answer once: a policy that ignores the image is at
    # chance on every whole block; consecutive blocks differ in their text (see the next test)
    for start in range(0, len(rows), 4):
        block = rows[start : start + 4]
        assert len({json.dumps(r["prompt"]) for r in block}) == 1
        assert sorted(r["reward_model"]["ground_truth"] for r in block) == list("ABCD")
    assert len({json.dumps(r["prompt"]) for r in rows}) == len(shapes_task.QUESTIONS)
    assert shapes_task.chance_level() == 0.25
    # the colour of the drawn shape is the answer's option (the pixel farthest from the grey background)
    for it in train:
        img = Image.open(io.BytesIO(it.png)).convert("RGB")
        assert img.size == (shapes_task.IMAGE_SIZE, shapes_task.IMAGE_SIZE)
        pixel = max(img.getdata(), key=lambda p: max(p) - min(p))
        colours = shapes_task.COLOURS
        nearest = min(colours, key=lambda c: sum((a - b) ** 2 for a, b in zip(colours[c], pixel)))
        assert nearest == it.colour
    blank = [shapes_task.to_row(it, 0, blank=True) for it in train]
    for start in range(0, len(blank), 4):
        assert len({(json.dumps(r["prompt"]), r["images"][0]["bytes"]) for r in blank[start : start + 4]}) == 1


def test_a_training_step_never_has_one_prompt_length(tmp_path):
    """Two consecutive blocks (one step of 8 prompts) tokenise to different lengths with the learning policy's
    tokenizer: verl 0.9.1 fails on a step whose rows all have one length (shapes_task docstring)."""
    from transformers import AutoProcessor

    from recipe_care.learn_demo import learn_policy

    processor = AutoProcessor.from_pretrained(learn_policy.build_base(tmp_path / "base", seed=0))
    items = shapes_task.make_items(0, "train", 4 * len(shapes_task.QUESTIONS) + 4)
    lengths = learn_policy.encode_prompts(processor, items)["attention_mask"].sum(1).tolist()
    blocks = [lengths[i : i + 4] for i in range(0, len(lengths), 4)]
    assert all(len(set(b)) == 1 for b in blocks), blocks
    assert all(a[0] != b[0] for a, b in zip(blocks, blocks[1:])), blocks


def test_rows_have_data_prep_schema_and_instruction(tmp_path):
    from data_prep.prompt import INSTRUCTION
    from data_prep.schema import ARROW_SCHEMA

    out = shapes_task.write_task(tmp_path / "d", seed=1, n_train=8, n_val=4)
    table = pq.read_table(out / "train.parquet")
    assert table.schema.equals(ARROW_SCHEMA, check_metadata=False)
    row = table.to_pylist()[0]
    assert row["data_source"] == shapes_task.DATA_SOURCE
    content = row["prompt"][0]["content"]
    assert content.startswith("<image>") and content.count("<image>") == 1 and content.endswith(INSTRUCTION)
    assert row["extra_info"]["choices"] == list(shapes_task.OPTIONS)
    assert row["reward_model"]["ground_truth"] in "ABCD"
    assert pq.read_table(out / "val.parquet").num_rows == 4
    mtime = (out / "train.parquet").stat().st_mtime_ns
    shapes_task.write_task(out, seed=1, n_train=8, n_val=4)  # same settings: reused
    assert (out / "train.parquet").stat().st_mtime_ns == mtime


def test_verifier_scores_letters_and_option_texts_like_the_benchmarks():
    info = shapes_task.to_row(shapes_task.make_items(0, "val", 1)[0], 0)["extra_info"]
    gt = "C"

    def score(text):
        return compute_score(shapes_task.DATA_SOURCE, text, gt, info)

    assert score("<think>I look at the image.</think><answer>C</answer>") == {
        "score": 1.0, "acc": 1.0, "format": 1.0, "extracted": 1.0, "pred": "C"
    }
    assert score("<think>x</think><answer>blue</answer>")["acc"] == 1.0  # the option text of C
    assert score("<think>x</think><answer>B</answer>")["acc"] == 0.0
    assert score("<think>x</think><answer>E</answer>")["acc"] == 0.0
    assert score("<answer>C</answer>")["format"] == 0.0
    with pytest.raises(ValueError, match="synthetic_shapes"):
        compute_score(shapes_task.DATA_SOURCE, "<answer>A</answer>", "F", info)


def test_curves_one_row_per_validation_with_window_means(tmp_path):
    lines = [
        {"step": 0, "data": {"val-core/synthetic_shapes/acc/mean@1": 0.25,
                             "val-aux/synthetic_shapes/format/mean@1": 1}},
        {"step": 1, "data": {"critic/score/mean": 0.2, "care/acc_mean": 0.2, "rgr/triggered": 3, "timing_s/step": 2.0}},
        {"step": 2, "data": {"critic/score/mean": 0.4, "care/acc_mean": 0.4, "rgr/triggered": 1, "timing_s/step": 4.0,
                             "rgr/passed": 1, "val-core/synthetic_shapes/acc/mean@1": 0.5,
                             "val-aux/synthetic_shapes/format/mean@1": 0.9, "signal/fail_adv_share": 0.6}},
    ]
    metrics = tmp_path / "care-seed0" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = learn_curves.curve_rows(learn_curves.read_metrics(metrics))
    assert [r["step"] for r in rows] == [0, 2]
    assert rows[0]["train_reward"] is None and rows[0]["val_acc"] == 0.25
    assert rows[1]["train_reward"] == pytest.approx(0.3) and rows[1]["care/acc_mean"] == pytest.approx(0.3)
    assert rows[1]["val_format"] == 0.9 and rows[1]["seconds_per_step"] == pytest.approx(3.0)
    learn_curves.write_csv(rows, metrics.parent / "curves.csv")
    header = (metrics.parent / "curves.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "train_reward", "val_acc", "val_format"]
    assert {"care/acc_mean", "rgr/triggered", "signal/fail_adv_share"} <= set(header)
    (metrics.parent / "run.json").write_text(json.dumps({"estimator": "care", "seed": 0, "chance": 0.25}))
    table = learn_curves.summarize(tmp_path)
    assert "| care-seed0 | care | 0 | 0.25 | 0.50 | 0.50 |" in table
    assert "| 0.25 |" in table.splitlines()[-1]  # RGR pass rate: 1 passed of 4 triggered
    assert (tmp_path / "curves.png").stat().st_size > 1000
