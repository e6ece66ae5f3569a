"""Round trip data prep -> verifiers: every row data_prep writes from the fixtures (and a synthetic Geometry3K set),
scored by ``reward_fns.compute_score`` with a response whose answer is that row's ground truth, gets acc 1."""

from __future__ import annotations

import io
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets
from PIL import Image

from data_prep import all as prep_all
from data_prep import geometry3k


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def prepared(fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("roundtrip")
    code = prep_all.main(
        ["--out", str(out), "--local-root", str(fixtures_dir), "--skip-missing", "--max-skip-frac", "0.5", "--quiet"]
    )
    assert code == 0
    feats = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    g3k = datasets.Dataset.from_dict(
        {
            "images": [[{"bytes": _png((i * 60, 0, 0)), "path": None}] for i in range(4)],
            "problem": ["<image>Find x.", "<image>Find the length of AB.", "<image>Find y.", "<image>Find the area."],
            "answer": ["3", "2 \\sqrt { 221 }", "\\frac { 4 } { 3 }", "25.4"],
        },
        features=feats,
    )
    src = tmp_path_factory.mktemp("g3k") / "test.parquet"
    g3k.to_parquet(str(src))
    assert geometry3k.main(["--out", str(out), "--local-path", str(src), "--split", "test", "--quiet"]) == 0
    return sorted(out.glob("*.parquet"))


def _respond(answer: str) -> str:
    return f"<think>I worked it out.</think><answer>{answer}</answer>"


def test_every_written_ground_truth_scores_acc_1(prepared):
    """The response states the published ground truth verbatim. A ground truth carrying transport dirt (a form feed
    for the backslash of ``\\frac``, a unit word in braces) is what no model writes, and the verifiers clean only
    the ground truth side: such a row must instead pass with the verifiers' own cleaned form of that answer, and only
    rows whose answer that cleaning changes may take this path."""
    from reward_fns import compute_score
    from reward_fns.normalize import clean_ground_truth

    assert len(prepared) == 8
    failures, cleaned_path, n = [], [], 0
    for path in prepared:
        for row in datasets.load_dataset("parquet", data_files=str(path), split="train"):
            gt = row["reward_model"]["ground_truth"]
            info = dict(row["extra_info"])
            n += 1
            if compute_score(row["data_source"], _respond(gt), gt, extra_info=info)["acc"] == 1.0:
                continue
            clean = clean_ground_truth(gt)
            result = compute_score(row["data_source"], _respond(clean), gt, extra_info=info)
            if clean != gt and result["acc"] == 1.0:
                cleaned_path.append((row["data_source"], info["id"], gt))
            else:
                failures.append((row["data_source"], info["id"], gt, result.get("pred")))
    assert n == sum(datasets.load_dataset("parquet", data_files=str(p), split="train").num_rows for p in prepared)
    assert n > 100
    assert not failures, "ground truths the verifiers do not accept: " + repr(failures)
    assert len(cleaned_path) <= 5, cleaned_path  # a handful of dirty MATH-Vision answers, not a systematic problem
