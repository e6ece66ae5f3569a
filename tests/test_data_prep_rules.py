"""data_prep rules on small synthetic inputs: option/choice parsers, image handling, the canonical extra_info, bad
records (skipped by reason, listed, threshold exit code), repairs, and the local source layouts (saved dataset,
parquet snapshot, JSON + images)."""

from __future__ import annotations

import io
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets
import pyarrow.parquet as pq
from PIL import Image

from data_prep import geometry3k, logicvista, mathvision, mmmu_pro, wemath
from data_prep.core import BadRecord, Ctx
from data_prep.images import ImageError, to_image_struct
from data_prep.mathverse import parse_choices
from data_prep.mathvision import clean_question
from data_prep.mathvista import parse_precision
from data_prep.mmmu_pro import parse_options
from data_prep.schema import EXTRA_INFO_DEFAULTS, make_extra_info
from data_prep.wemath import parse_option_string


def _img(fmt="PNG", size=(40, 30), color=(10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, color)
    if fmt == "GIF":
        im = im.convert("P")
    im.save(buf, format=fmt)
    return buf.getvalue()


def _report(out, stem):
    return json.loads((out / f"{stem}.report.json").read_text())


# ------------------------------------------------------------------------------------------------------ parsers


@pytest.mark.parametrize(
    "option, expected, irregular",
    [
        (
            "A. 300, 400;B. 400, 300;C. 3000, 4000;D. 4000, 3000; E. No correct answer",
            ["300, 400", "400, 300", "3000, 4000", "4000, 3000", "No correct answer"],
            False,
        ),
        ("A. E;B. I;C. C; D. No correct answer", ["E", "I", "C", "No correct answer"], False),
        ("A. F;    B. D;    C. B;    D. I; E. No correct answer", ["F", "D", "B", "I", "No correct answer"], False),
        ("A. 45° B. 60° ;C. 120°; D. No correct answer", ["45°", "60°", "120°", "No correct answer"], True),
        (
            "A. 3, 5, 4; B. 3, 50, 40; C. 300, 50, 40; D. 30, 50, 40.; E. No correct answer",
            ["3, 5, 4", "3, 50, 40", "300, 50, 40", "30, 50, 40.", "No correct answer"],
            False,
        ),
    ],
)
def test_wemath_option_string(option, expected, irregular):
    assert parse_option_string(option) == (expected, irregular)


@pytest.mark.parametrize("option", ["", "no markers at all", "A. only one", "intro A. x; B. y", "A. ;B. y"])
def test_wemath_malformed_option_string(option):
    with pytest.raises(BadRecord) as exc:
        parse_option_string(option)
    assert exc.value.reason == "malformed_options"


def test_mathverse_choices():
    q = "Find it.\nChoices:\nA:40°\nB:60°\nC:120°"
    assert parse_choices(q) == ["40°", "60°", "120°"]
    assert parse_choices("True or false?\nChoice:\nA. True\nB. False") == ["True", "False"]
    assert parse_choices("x\nChoices:\nA.$y$ up\nB.$y$ down") == ["$y$ up", "$y$ down"]
    assert parse_choices("x\nChoices:\nA:first line\ncontinued\nB:second") == ["first line\ncontinued", "second"]
    assert parse_choices("Find L.") == []
    assert parse_choices("Choices:\nB:starts at B\nC:x") == []  # not lettered from A: no reliable choices


def test_mathvision_question_cleaning():
    ctx = Ctx()
    text = clean_question("Find $x \\neq y$ and $\\nu$.\\n(i) first\\n<image1>", ctx)
    assert text == "Find $x \\neq y$ and $\\nu$.\n(i) first"
    assert [r for r, _ in ctx.repairs] == ["literal_backslash_n"]
    ctx = Ctx()
    assert clean_question("<image1>\nA cube <image2> here.\n<image3>", ctx) == "A cube here."
    assert ctx.repairs == []


def test_mmmu_options():
    ctx = Ctx()
    assert parse_options("[['A', 'B', 'Not enough information']]", ctx) == ["A", "B", "Not enough information"]
    assert [r for r, _ in ctx.repairs] == ["nested_options_flattened"]
    assert parse_options("['Yes', \"Can't tell\", 'No']", Ctx()) == ["Yes", "Can't tell", "No"]
    assert parse_options(["x", "y"], Ctx()) == ["x", "y"]
    for bad in ("['unterminated", "{'a': 1}", "['only one']", "[['a'], ['b']]", None):
        with pytest.raises(BadRecord) as exc:
            parse_options(bad, Ctx())
        assert exc.value.reason == "malformed_options"


def test_mathvista_precision():
    assert parse_precision(1.0) == 1 and parse_precision(2) == 2
    assert parse_precision(None) == -1 and parse_precision(float("nan")) == -1
    with pytest.raises(BadRecord):
        parse_precision(1.5)


# ------------------------------------------------------------------------------------------------------- images


def test_png_and_jpeg_pass_through_byte_identical():
    for fmt in ("PNG", "JPEG"):
        data = _img(fmt)
        struct, reencoded = to_image_struct({"bytes": data, "path": "x"})
        assert struct == {"bytes": data, "path": None} and not reencoded


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats_are_reencoded_as_png(fmt):
    struct, reencoded = to_image_struct(_img(fmt))
    assert reencoded
    with Image.open(io.BytesIO(struct["bytes"])) as im:
        assert im.format == "PNG" and im.size == (40, 30)


def test_bad_images_raise_with_a_reason(tmp_path):
    good = _img("PNG")
    cases = {
        "undecodable_image": [good[: len(good) // 2], b"not an image"],
        "missing_image": [None, b"", {"bytes": None, "path": None}, "", "nope.png"],
        "extreme_aspect_ratio": [_img("PNG", size=(1000, 4))],
    }
    for reason, values in cases.items():
        for v in values:
            with pytest.raises(ImageError) as exc:
                to_image_struct(v, [tmp_path])
            assert exc.value.reason == reason, v
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(good)
    assert to_image_struct("a.png", [tmp_path])[0]["bytes"] == good  # <root>/images/<path> is tried


# --------------------------------------------------------------------------------------------------- extra_info


def test_extra_info_is_canonical():
    ei = make_extra_info(id="7", precision=2.0, unit=None, choices=("a", "b"), meta={"k": [1]})
    assert set(ei) == set(EXTRA_INFO_DEFAULTS)
    assert ei["precision"] == 2 and ei["unit"] == "" and ei["choices"] == ["a", "b"]
    assert json.loads(ei["meta_json"]) == {"k": [1]}
    assert all(v is not None for v in make_extra_info().values())
    with pytest.raises(KeyError):
        make_extra_info(options=["a"])
    with pytest.raises(TypeError):
        make_extra_info(choices="A. x; B. y")
    with pytest.raises(ValueError):
        make_extra_info(precision=1.5)


# ------------------------------------------------------------------------------------------------- bad records


def _logicvista_folder(tmp_path, records):
    src = tmp_path / "lv"
    (src / "images").mkdir(parents=True)
    with (src / "records.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write("{broken json\n")
    return src


def test_bad_records_are_skipped_counted_listed_and_fail_the_threshold(tmp_path):
    good = [
        {"id": f"g{i}", "imagename": f"g{i}.png", "question": "Which? Select from A-D", "answer": "B"} for i in range(6)
    ]
    bad = [
        {"id": "no_file", "imagename": "absent.png", "question": "q", "answer": "A"},
        {"id": "corrupt", "imagename": "corrupt.png", "question": "q", "answer": "A"},
        {"id": "empty", "imagename": "g0.png", "question": "q", "answer": "  "},
        {"id": "no_question", "imagename": "g0.png", "question": "", "answer": "C"},
        {"id": "stray", "imagename": "g0.png", "question": "Compare <image> and <video>.", "answer": "D"},
    ]
    src = _logicvista_folder(tmp_path, good + bad)
    for i in range(6):
        (src / "images" / f"g{i}.png").write_bytes(_img("PNG", color=(i * 40, 0, 0)))
    (src / "images" / "corrupt.png").write_bytes(_img("PNG")[:60])

    out = tmp_path / "out"
    assert logicvista.main(["--out", str(out), "--local-path", str(src), "--quiet"]) == 1  # 5/12 > 0.05
    rep = _report(out, "logicvista_test")
    assert rep["ok"] is False and rep["records_read"] == 12
    assert rep["skipped_by_reason"] == {
        "empty_answer": 1,
        "empty_question": 1,
        "invalid_record": 1,
        "missing_image": 1,
        "undecodable_image": 1,
    }
    listed = {r["id"]: r["reason"] for r in rep["skipped_records"]}
    assert listed == {
        "no_file": "missing_image",
        "corrupt": "undecodable_image",
        "empty": "empty_answer",
        "no_question": "empty_question",
        "": "invalid_record",
    }
    assert all(r["detail"] for r in rep["skipped_records"])
    assert "line 12" in next(r for r in rep["skipped_records"] if r["reason"] == "invalid_record")["detail"]
    # Stray media tokens are repaired, never written raw.
    assert rep["repaired_by_rule"] == {"stray_media_token": 2}
    rows = datasets.load_dataset("parquet", data_files=str(out / "logicvista_test.parquet"), split="train")
    assert max(rows["extra_info"], key=lambda e: e["id"])["id"] == "stray"
    stray = next(r for r in rows if r["extra_info"]["id"] == "stray")["prompt"][0]["content"]
    assert stray.startswith("<image>Compare [image] and [video].") and stray.count("<image>") == 1
    assert len(rows) == 7

    assert logicvista.main(["--out", str(out), "--local-path", str(src), "--quiet", "--max-skip-frac", "0.5"]) == 0
    assert _report(out, "logicvista_test")["ok"] is True


def test_wemath_bad_options_and_answer_out_of_range(tmp_path):
    src = tmp_path / "we"
    (src / "images").mkdir(parents=True)
    (src / "images" / "a.png").write_bytes(_img())
    base = {"ID": "2steps_1", "split": "testmini", "question": "Pick", "image_path": "a.png", "question number": 1}
    recs = [
        {**base, "key": "ok", "option": "A. 1;B. 2", "answer": "B"},
        {**base, "key": "out_of_range", "option": "A. 1;B. 2", "answer": "E"},
        {**base, "key": "no_markers", "option": "1, 2, 3", "answer": "A"},
    ]
    (src / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert wemath.main(["--out", str(tmp_path / "o"), "--local-path", str(src), "--quiet"]) == 1
    rep = _report(tmp_path / "o", "wemath_testmini")
    assert rep["skipped_by_reason"] == {"malformed_options": 2} and rep["rows_written"] == 1
    assert {r["id"] for r in rep["skipped_records"]} == {"2steps_1|out_of_range", "2steps_1|no_markers"}


# --------------------------------------------------------------------------------------------------- Geometry3K


def test_geometry3k_single_parquet_repairs_and_placeholder_mismatch(tmp_path):
    feats = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    png = _img("PNG")
    data = {
        "images": [
            [{"bytes": png, "path": None}],
            [{"bytes": _img("GIF"), "path": None}],
            [{"bytes": png, "path": None}],
            [{"bytes": png, "path": None}, {"bytes": png, "path": None}],
            [],
            [{"bytes": png, "path": None}],
        ],
        "problem": [
            "<image>Find x.",
            "<image>Find y.",
            "Find z (no placeholder).",
            "<image>Two images, one token.",
            "<image>No image.",
            "<image>Empty answer.",
        ],
        "answer": ["3", "4", "5", "6", "7", ""],
    }
    path = tmp_path / "test-00000-of-00001.parquet"
    datasets.Dataset.from_dict(data, features=feats).to_parquet(str(path))
    out = tmp_path / "out"
    code = geometry3k.main(
        ["--out", str(out), "--local-path", str(path), "--split", "test", "--quiet", "--max-skip-frac", "0.5"]
    )
    assert code == 0
    rep = _report(out, "geometry3k_test")
    assert rep["skipped_by_reason"] == {"empty_answer": 1, "missing_image": 1, "placeholder_mismatch": 1}
    assert rep["repaired_by_rule"] == {"image_reencoded_png": 1, "prepended_image_placeholder": 1}
    rows = datasets.load_dataset("parquet", data_files=str(out / "geometry3k_test.parquet"), split="train")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["3", "4", "5"]
    assert rows[2]["prompt"][0]["content"].startswith("<image>Find z")
    assert rows[0]["extra_info"]["question"] == "Find x." and rows[0]["extra_info"]["id"] == "test-0"
    assert all(img.format == "PNG" for r in rows for img in r["images"])
    with pytest.raises(SystemExit):  # one file cannot hold two splits
        geometry3k.main(["--out", str(out), "--local-path", str(path), "--split", "train,test"])


# ---------------------------------------------------------------------------------------- HF-schema local copies


def test_hf_snapshot_parquet_layout_picks_config_and_split(tmp_path):
    """MATH-Vision / MMMU-Pro HF snapshots: images as Image structs pass through byte-identical."""
    jpg = _img("JPEG")
    mv_feats = datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.List(datasets.Value("string")),
            "image": datasets.Value("string"),
            "decoded_image": datasets.Image(),
            "answer": datasets.Value("string"),
            "solution": datasets.Value("string"),
            "level": datasets.Value("int64"),
            "subject": datasets.Value("string"),
        }
    )

    def mv(ids):
        return datasets.Dataset.from_dict(
            {
                "id": ids,
                "question": [f"Q{i} <image1>" for i in ids],
                "options": [[] for _ in ids],
                "image": [f"images/{i}.jpg" for i in ids],
                "decoded_image": [{"bytes": jpg, "path": None} for _ in ids],
                "answer": ["1" for _ in ids],
                "solution": [None for _ in ids],
                "level": [1 for _ in ids],
                "subject": ["s" for _ in ids],
            },
            features=mv_feats,
        )

    snap = tmp_path / "MathVision" / "data"
    snap.mkdir(parents=True)
    mv(["1", "2", "3"]).to_parquet(str(snap / "test-00000-of-00001.parquet"))
    mv(["9"]).to_parquet(str(snap / "testmini-00000-of-00001.parquet"))
    out = tmp_path / "out"
    assert (
        mathvision.main(
            ["--out", str(out), "--local-path", str(tmp_path / "MathVision"), "--split", "test,testmini", "--quiet"]
        )
        == 0
    )
    test_rows = datasets.load_dataset("parquet", data_files=str(out / "mathvision_test.parquet"), split="train")
    mini_rows = datasets.load_dataset("parquet", data_files=str(out / "mathvision_testmini.parquet"), split="train")
    assert [r["extra_info"]["id"] for r in test_rows] == ["1", "2", "3"]
    assert [r["extra_info"]["id"] for r in mini_rows] == ["9"]
    raw = pq.read_table(out / "mathvision_test.parquet").column("images").to_pylist()
    assert all(imgs[0]["bytes"] == jpg for imgs in raw)

    std_feats = datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.Value("string"),
            **{f"image_{k}": datasets.Image() for k in range(1, 8)},
            "answer": datasets.Value("string"),
            "subject": datasets.Value("string"),
        }
    )
    vis_feats = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "options": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    png = _img("PNG")
    root = tmp_path / "MMMU_Pro"
    (root / "standard (10 options)").mkdir(parents=True)
    (root / "vision").mkdir()
    datasets.Dataset.from_dict(
        {
            "id": ["s1"],
            "question": ["See <image 2> then <image 1>."],
            "options": ["['x', 'y', 'z']"],
            "image_1": [{"bytes": png, "path": None}],
            "image_2": [{"bytes": jpg, "path": None}],
            **{f"image_{k}": [None] for k in range(3, 8)},
            "answer": ["C"],
            "subject": ["Art"],
        },
        features=std_feats,
    ).to_parquet(str(root / "standard (10 options)" / "test-00000-of-00001.parquet"))
    datasets.Dataset.from_dict(
        {
            "id": ["v1", "v2"],
            "image": [{"bytes": png, "path": None}] * 2,
            "options": ["['x', 'y']", "['x', 'y']"],
            "answer": ["B", "A"],
        },
        features=vis_feats,
    ).to_parquet(str(root / "vision" / "test-00000-of-00001.parquet"))
    assert (
        mmmu_pro.main(["--out", str(out), "--local-path", str(root), "--setting", "standard10,vision", "--quiet"]) == 0
    )
    (std,) = pq.read_table(out / "mmmu_pro_standard10.parquet").to_pylist()
    assert [im["bytes"] for im in std["images"]] == [jpg, png]  # reading order of <image k>
    assert std["prompt"][0]["content"].startswith("See <image> then <image>.\nA. x\nB. y\nC. z\n")
    assert pq.ParquetFile(out / "mmmu_pro_vision.parquet").metadata.num_rows == 2


def test_limit_and_official_json_keyed_by_id(tmp_path):
    """LogicVista's GitHub dataset.json is a dict keyed by id; --limit stops early."""
    data = tmp_path / "LogicVista" / "data"
    (data / "images").mkdir(parents=True)
    records = {}
    for i in range(5):
        (data / "images" / f"v1_{i}.png").write_bytes(_img(color=(i, i, i)))
        records[f"v1_{i}"] = {"imagename": f"v1_{i}.png", "question": f"Q{i}? Select from A-D", "answer": "A, C"}
    (data / "dataset.json").write_text(json.dumps(records))
    out = tmp_path / "out"
    assert (
        logicvista.main(["--out", str(out), "--local-path", str(tmp_path / "LogicVista"), "--limit", "3", "--quiet"])
        == 0
    )
    rows = datasets.load_dataset("parquet", data_files=str(out / "logicvista_test.parquet"), split="train")
    assert [r["extra_info"]["id"] for r in rows] == ["v1_0", "v1_1", "v1_2"]
    assert {r["extra_info"]["answer_type"] for r in rows} == {"letter_set"}
    assert _report(out, "logicvista_test")["source"]["kind"] == "json"


def test_hub_code_path_streams_with_undecoded_images(tmp_path):
    """``--hf-id`` takes anything ``datasets.load_dataset`` takes; a local snapshot folder exercises the exact
    streaming path used for the Hub (IterableDataset, ``decode(False)``) offline."""
    png = _img("PNG")
    feats = datasets.Features(
        {
            "ID": datasets.Value("string"),
            "key": datasets.Value("string"),
            "question": datasets.Value("string"),
            "option": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "image_path": datasets.Image(),
        }
    )
    snap = tmp_path / "We-Math"
    (snap / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(
        {
            "ID": ["2steps_1", "2steps_1"],
            "key": ["2steps_1", "2steps_multi"],
            "question": ["Q1", "Q2"],
            "option": ["A. 1;B. 2", "A. 3; B. 4; C. 5"],
            "answer": ["A", "C"],
            "image_path": [{"bytes": png, "path": "1-1.png"}, {"bytes": png, "path": "1-multi.png"}],
        },
        features=feats,
    ).to_parquet(str(snap / "data" / "testmini-00000-of-00001.parquet"))
    out = tmp_path / "out"
    assert wemath.main(["--out", str(out), "--hf-id", str(snap), "--quiet"]) == 0
    rep = _report(out, "wemath_testmini")
    assert rep["source"]["kind"] == "hub" and rep["source"]["streaming"] is True
    rows = pq.read_table(out / "wemath_testmini.parquet").to_pylist()
    assert [r["extra_info"]["id"] for r in rows] == ["2steps_1|2steps_1", "2steps_1|2steps_multi"]
    assert all(r["images"] == [{"bytes": png, "path": None}] for r in rows)
    assert rows[1]["extra_info"]["choices"] == ["3", "4", "5"]


def test_image_root_option(tmp_path):
    src = tmp_path / "lv"
    src.mkdir()
    elsewhere = tmp_path / "pictures"
    elsewhere.mkdir()
    (elsewhere / "v1_0.png").write_bytes(_img())
    (src / "records.jsonl").write_text(
        json.dumps({"id": "v1_0", "imagename": "v1_0.png", "question": "Q? A-D", "answer": "B"}) + "\n"
    )
    out = tmp_path / "out"
    assert logicvista.main(["--out", str(out), "--local-path", str(src), "--quiet"]) == 1  # image not found
    assert _report(out, "logicvista_test")["skipped_by_reason"] == {"missing_image": 1}
    assert (
        logicvista.main(["--out", str(out), "--local-path", str(src), "--image-root", str(elsewhere), "--quiet"]) == 0
    )
