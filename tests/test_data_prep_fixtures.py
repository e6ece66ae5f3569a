"""data_prep on the real benchmark fixtures (offline): every script runs, every row is a valid verl row, every file
loads in verl's RLHFDataset with a locally built Qwen2.5-VL processor, and the validation files concatenate.
(The verifier round trip is in ``test_data_prep_roundtrip.py``.)"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import datasets
import pyarrow.parquet as pq
from PIL import Image

from data_prep import geometry3k, logicvista, mathverse, mathvision, mathvista, mmmu_pro, wemath
from data_prep.prompt import INSTRUCTION
from data_prep.schema import EXTRA_INFO_DEFAULTS, FEATURES
from reward_fns.schema import DATA_SOURCES
from conftest import run_group

REPO = Path(__file__).resolve().parents[1]

# output stem -> (script module, fixture folder, extra CLI args, record id function)
RUNS = {
    "mathvista_testmini": (mathvista, "mathvista", [], lambda r: str(r["pid"])),
    "mmmu_pro_standard10": (mmmu_pro, "mmmu_pro_standard10", ["--setting", "standard10"], lambda r: r["id"]),
    "mmmu_pro_vision": (mmmu_pro, "mmmu_pro_vision", ["--setting", "vision"], lambda r: r["id"]),
    "mathverse_testmini": (mathverse, "mathverse", [], lambda r: r["sample_index"]),
    "mathvision_test": (mathvision, "mathvision", ["--split", "test"], lambda r: r["id"]),
    "wemath_testmini": (wemath, "wemath", [], lambda r: f"{r['ID']}|{r['key']}"),
    "logicvista_test": (logicvista, "logicvista", [], lambda r: r["id"]),
}
MMMU_REF = re.compile(r"<image\s*(\d+)>")


def _records(fixtures_dir: Path, folder: str) -> list[dict]:
    with (fixtures_dir / folder / "records.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _png(color, size=(48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def expected_skips(stem: str, records: list[dict]) -> dict[str, str]:
    """id -> skip reason, derived from the published records by the documented rules."""
    out = {}
    for r in records:
        if stem == "mmmu_pro_standard10":
            refs = MMMU_REF.findall(r["question"] + r["options"])
            if any(r.get(f"image_{k}") is None for k in refs):
                out[r["id"]] = "missing_image"
        elif stem == "mmmu_pro_vision" and r.get("image") is None:
            out[r["id"]] = "missing_image"
        elif stem == "logicvista_test" and not r["answer"].strip():
            out[r["id"]] = "empty_answer"
    return out


def synthetic_geometry3k(root: Path) -> Path:
    """A tiny save_to_disk DatasetDict in the hiyouga/geometry3k schema (no fixture records exist)."""
    feats = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    train = {
        "images": [[{"bytes": _png((200, 10, 10)), "path": None}], [{"bytes": _png((10, 200, 10)), "path": None}]],
        "problem": ["<image>Find x.", "<image>Find the area of the shaded region. Round to the nearest tenth."],
        "answer": ["3", "2 \\sqrt { 221 }"],
    }
    test = {
        "images": [[{"bytes": _png((10, 10, 200)), "path": None}]],
        "problem": ["<image>Find y so that the quadrilateral is a parallelogram."],
        "answer": ["\\frac{4}{3}"],
    }
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train, features=feats),
            "test": datasets.Dataset.from_dict(test, features=feats),
        }
    )
    path = root / "geometry3k_saved"
    dd.save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def prepared(fixtures_dir, tmp_path_factory):
    """Run every script's main() on its fixtures; returns {stem: (exit code, out dir)} + geometry3k."""
    out = tmp_path_factory.mktemp("data_prep_out")
    results = {}
    for stem, (module, folder, extra, _) in RUNS.items():
        argv = [
            "--out",
            str(out),
            "--local-path",
            str(fixtures_dir / folder),
            "--max-skip-frac",
            "0.5",
            "--quiet",
            "--rows-per-group",
            "4",
            *extra,
        ]
        results[stem] = module.main(argv)
    g3k = synthetic_geometry3k(tmp_path_factory.mktemp("g3k_src"))
    results["geometry3k"] = geometry3k.main(["--out", str(out), "--local-path", str(g3k), "--quiet"])
    return out, results


def _load(path: Path) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_files=str(path), split="train")


def _report(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}.report.json").read_text())


# ------------------------------------------------------------------------------------------------ runs and reports


def test_every_script_runs_on_its_fixtures_and_reports(prepared, fixtures_dir):
    out, results = prepared
    assert results == {**{s: 0 for s in RUNS}, "geometry3k": 0}
    for stem, (_, folder, _, rid) in RUNS.items():
        records = _records(fixtures_dir, folder)
        rep = _report(out, stem)
        assert rep["records_read"] == len(records)
        assert rep["rows_written"] + rep["skipped"] == rep["records_read"]
        assert pq.ParquetFile(out / f"{stem}.parquet").metadata.num_rows == rep["rows_written"]
        # Skips are exactly the records the documented rules reject, each listed with its reason.
        want = expected_skips(stem, records)
        assert {r["id"]: r["reason"] for r in rep["skipped_records"]} == want
        assert sum(rep["skipped_by_reason"].values()) == len(want)
        assert rep["ok"] is True and rep["data_source"] == stem
        assert not (out / f"{stem}.parquet.partial").exists()
    for split, n in (("train", 2), ("test", 1)):
        rep = _report(out, f"geometry3k_{split}")
        assert (rep["rows_written"], rep["skipped"]) == (n, 0)


def test_streaming_writes_one_row_group_per_buffer(prepared):
    out, _ = prepared
    for stem in RUNS:
        rep = _report(out, stem)
        meta = pq.ParquetFile(out / f"{stem}.parquet").metadata
        assert meta.num_row_groups == rep["row_groups"] == -(-rep["rows_written"] // 4)
        assert all(meta.row_group(i).num_rows <= 4 for i in range(meta.num_row_groups))


def test_default_max_skip_frac_fails_the_run_but_keeps_the_report(fixtures_dir, tmp_path):
    code = mmmu_pro.main(
        [
            "--out",
            str(tmp_path),
            "--local-path",
            str(fixtures_dir / "mmmu_pro_standard10"),
            "--setting",
            "standard10",
            "--quiet",
        ]
    )
    assert code == 1
    rep = _report(tmp_path, "mmmu_pro_standard10")
    assert rep["ok"] is False and rep["max_skip_frac"] == 0.05 and rep["skip_frac"] > 0.05
    assert rep["skipped_by_reason"]["missing_image"] == len(rep["skipped_records"]) > 0


# ---------------------------------------------------------------------------------------------------- row schema


def _all_outputs(out: Path) -> list[Path]:
    files = sorted(out.glob("*.parquet"))
    assert len(files) == len(RUNS) + 2
    return files


def test_every_row_is_a_valid_verl_row(prepared, fixtures_dir):
    out, _ = prepared
    published = {}
    for stem, (_, folder, _, rid) in RUNS.items():
        published[stem] = {rid(r): r for r in _records(fixtures_dir, folder)}
    for path in _all_outputs(out):
        stem = path.name[: -len(".parquet")]
        ds = _load(path)
        assert ds.features == FEATURES
        ids = set()
        for row in ds:
            assert row["data_source"] in DATA_SOURCES
            assert row["data_source"] == ("hiyouga/geometry3k" if stem.startswith("geometry3k") else stem)
            (msg,) = row["prompt"]
            assert msg["role"] == "user"
            content = msg["content"]
            assert content.count("<image>") == len(row["images"])
            assert "<video>" not in content and "<audio>" not in content
            assert not re.search(r"<image\s*\d+>", content), "benchmark image tokens must be rewritten"
            assert content.endswith(INSTRUCTION) and content.count(INSTRUCTION) == 1
            for img in row["images"]:
                assert img.format in ("PNG", "JPEG")
                img.load()
            ei = row["extra_info"]
            assert set(ei) == set(EXTRA_INFO_DEFAULTS)
            assert all(v is not None for v in ei.values())
            assert ei["question_type"] in ("multi_choice", "free_form")
            assert isinstance(ei["precision"], int) and isinstance(ei["choices"], list)
            assert isinstance(json.loads(ei["meta_json"]), dict)
            assert ei["id"] not in ids
            ids.add(ei["id"])
            gt = row["reward_model"]
            assert gt["style"] == "rule" and gt["ground_truth"].strip()
            if stem in published:
                # ground truth = the benchmark's published answer, verbatim
                assert gt["ground_truth"] == published[stem][ei["id"]]["answer"]


def test_no_all_null_columns_and_identical_schemas(prepared):
    out, _ = prepared
    schemas = set()
    for path in _all_outputs(out):
        table = pq.read_table(path)
        schemas.add(table.schema.to_string(show_schema_metadata=True))
        extra = table.column("extra_info").combine_chunks()
        for i, field in enumerate(extra.type):
            assert extra.field(i).null_count == 0, f"{path.name}: extra_info.{field.name} has nulls"
        for name in ("data_source", "prompt", "images", "ability", "reward_model"):
            assert table.column(name).null_count == 0
    assert len(schemas) == 1


def test_all_validation_files_concatenate(prepared):
    out, _ = prepared
    val = [p for p in _all_outputs(out) if p.name != "geometry3k_train.parquet"]
    parts = [_load(p) for p in val]
    merged = datasets.concatenate_datasets(parts)
    assert len(merged) == sum(len(p) for p in parts)
    assert set(merged["data_source"]) == {*RUNS, "hiyouga/geometry3k"}


# ------------------------------------------------------------------------------------------ per-benchmark content


def test_mathvista_rows(prepared, fixtures_dir):
    out, _ = prepared
    recs = {r["pid"]: r for r in _records(fixtures_dir, "mathvista")}
    for row in _load(out / "mathvista_testmini.parquet"):
        r = recs[row["extra_info"]["id"]]
        assert row["prompt"][0]["content"].startswith("<image>" + r["query"])
        assert row["extra_info"]["choices"] == (r["choices"] or [])
        assert row["extra_info"]["precision"] == (-1 if r["precision"] is None else int(r["precision"]))
        assert row["extra_info"]["unit"] == (r["unit"] or "")
        assert row["extra_info"]["answer_type"] == r["answer_type"]


def test_mathvista_query_is_rebuilt_exactly_when_absent(fixtures_dir):
    from data_prep.mathvista import build_query, parse_precision

    for r in _records(fixtures_dir, "mathvista"):
        rebuilt = build_query(
            r["question"],
            r["question_type"],
            r["answer_type"],
            parse_precision(r["precision"]),
            r["unit"] or "",
            r["choices"] or [],
        )
        assert rebuilt == r["query"], r["pid"]


def test_mathvision_rows_have_one_image_and_no_image_tokens(prepared, fixtures_dir):
    out, _ = prepared
    recs = {r["id"]: r for r in _records(fixtures_dir, "mathvision")}
    rows = {row["extra_info"]["id"]: row for row in _load(out / "mathvision_test.parquet")}
    assert set(rows) == set(recs)
    for rid, row in rows.items():
        content = row["prompt"][0]["content"]
        assert len(row["images"]) == 1 and content.startswith("<image>")
        assert "<image" not in content[len("<image>") :]
        assert row["extra_info"]["question_type"] == ("multi_choice" if recs[rid]["options"] else "free_form")
    assert "\\n" not in rows["2828"]["prompt"][0]["content"]  # literal backslash-n repaired
    assert "the ant walks from home along" in rows["33"]["prompt"][0]["content"]
    assert _report(out, "mathvision_test")["repaired_by_rule"]["literal_backslash_n"] == sum(
        1 for r in recs.values() if re.search(r"\\n(?![a-z])", r["question"])
    )


def test_mathverse_rows(prepared, fixtures_dir):
    out, _ = prepared
    rows = {row["extra_info"]["id"]: row for row in _load(out / "mathverse_testmini.parquet")}
    recs = {r["sample_index"]: r for r in _records(fixtures_dir, "mathverse")}
    for rid, row in rows.items():
        r = recs[rid]
        assert len(row["images"]) == (0 if r["problem_version"] == "Text Only" else 1)
        assert row["extra_info"]["variant"] == r["problem_version"]
        assert row["extra_info"]["question_type"] == r["question_type"].replace("-", "_")
    assert rows["1"]["extra_info"]["choices"] == ["40°", "60°", "120°", "140°"]
    assert rows["339"]["extra_info"]["choices"][0] == "090^\\circ T"
    assert rows["622"]["extra_info"]["choices"][1] == ""  # an empty option keeps its letter
    assert len(rows["524"]["extra_info"]["choices"]) == 6
    assert rows["3425"]["prompt"][0]["content"].startswith("<image>According to the question shown in the image")
    assert _report(out, "mathverse_testmini")["notes"]["text_only_record"] == 19


def test_wemath_and_logicvista_rows(prepared):
    out, _ = prepared
    we = {row["extra_info"]["id"]: row for row in _load(out / "wemath_testmini.parquet")}
    assert we["2steps_22|2steps_1"]["extra_info"]["choices"] == ["E", "I", "C", "No correct answer"]
    assert we["3steps_38|3steps_1"]["extra_info"]["choices"] == ["45°", "60°", "120°", "No correct answer"]
    assert json.loads(we["2steps_1|2steps_multi"]["extra_info"]["meta_json"])["key"] == "2steps_multi"
    assert _report(out, "wemath_testmini")["repaired_by_rule"] == {"option_separator_repaired": 1}
    lv = {row["extra_info"]["id"]: row for row in _load(out / "logicvista_test.parquet")}
    assert lv["v1_1"]["extra_info"]["answer_type"] == "letter_set"
    assert lv["v1_20"]["extra_info"]["answer_type"] == "integer"
    assert lv["v1_0"]["extra_info"]["answer_type"] == "letter"


def test_mmmu_pro_image_order_duplicates_and_options(fixtures_dir, tmp_path):
    """Fill the images the repo lacks with distinct colours, then check token-order images on every record."""
    src = tmp_path / "mmmu"
    (src / "images").mkdir(parents=True)
    records = _records(fixtures_dir, "mmmu_pro_standard10")
    colours = {}
    with (src / "records.jsonl").open("w", encoding="utf-8") as fh:
        for n, r in enumerate(records):
            for k in range(1, 8):
                refs = MMMU_REF.findall(r["question"] + r["options"])
                if r.get(f"image_{k}") is not None or str(k) in refs:
                    colour = (n * 12 % 256, k * 30, 255 - k * 20)
                    name = f"images/{r['id']}_{k}.png"
                    (src / name).write_bytes(_png(colour))
                    r[f"image_{k}"] = name
                    colours[(r["id"], k)] = colour
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    assert mmmu_pro.main(["--out", str(tmp_path / "out"), "--local-path", str(src), "--quiet"]) == 0
    rows = {row["extra_info"]["id"]: row for row in _load(tmp_path / "out" / "mmmu_pro_standard10.parquet")}
    assert len(rows) == len(records)
    for r in records:
        row = rows[r["id"]]
        refs = [int(k) for k in MMMU_REF.findall(r["question"] + r["options"])]  # reading order, repeats kept
        got = [img.convert("RGB").getpixel((0, 0)) for img in row["images"]]
        assert got == [colours[(r["id"], k)] for k in refs], r["id"]
    assert [c for c in rows["test_Music_251"]["extra_info"]["choices"]] == [
        "<image 4>",
        "<image 2>",
        "<image 5>",
        "<image 3>",
    ]
    assert rows["validation_Accounting_29"]["extra_info"]["choices"] == ["A", "B", "Not enough information"]
    assert len(rows["test_Computer_Science_61"]["extra_info"]["choices"]) == 12
    assert "L. 8 is the root" in rows["test_Computer_Science_61"]["prompt"][0]["content"]
    assert len(rows["test_Geography_252"]["images"]) > 7  # 7 images, referenced repeatedly in options
    rep = _report(tmp_path / "out", "mmmu_pro_standard10")
    assert rep["repaired_by_rule"] == {"nested_options_flattened": 1}
    assert rep["notes"]["duplicate_image_reference"] > 0


# ------------------------------------------------------------------------------------------------------ CLI (-m)


def test_python_dash_m_entry_points(fixtures_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = run_group(  # noqa: PLW1510 (return code asserted below)
        [
            sys.executable,
            "-m",
            "data_prep.all",
            "--out",
            str(tmp_path),
            "--local-root",
            str(fixtures_dir),
            "--skip-missing",
            "--max-skip-frac",
            "0.5",
            "--quiet",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {k for k, v in summary.items() if v["status"] == "ok"} == set(RUNS)
    assert {k for k, v in summary.items() if v["status"] == "missing"} == {
        "geometry3k_train",
        "geometry3k_test",
        "mathvision_testmini",
    }
    # Without hub access and without --local-path: a clear error, exit 2.
    run = run_group(  # noqa: PLW1510 (return code asserted below)
        [sys.executable, "-m", "data_prep.logicvista", "--out", str(tmp_path / "hub"), "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "lscpku/LogicVista" in run.stderr and "--local-path" in run.stderr


# --------------------------------------------------------------------------------------------- verl RLHFDataset


@pytest.fixture(scope="session")
def tiny_vl(tmp_path_factory):
    from transformers import AutoProcessor, AutoTokenizer

    from recipe_care.smoke.tiny_models import build_tiny_qwen25vl

    folder = build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny_qwen25vl") / "model")
    return AutoTokenizer.from_pretrained(folder), AutoProcessor.from_pretrained(folder)


def test_every_file_loads_in_verl_rlhf_dataset(prepared, tiny_vl, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tokenizer, processor = tiny_vl
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    out, _ = prepared
    files = _all_outputs(out)
    # One dataset over all files, as verl builds its validation set: the length filter runs the chat template and the
    # Qwen2.5-VL processor on every row; a row that fails there is dropped, so the length must be unchanged.
    cfg = OmegaConf.create(
        {
            "max_prompt_length": 8192,
            "filter_overlong_prompts": True,
            # 0 → datasets filters in this process; a worker pool would fork the pytest process, whose other
            # threads (tokenizers, the verifiers' watchdog) can hold locks the child then waits on forever
            "filter_overlong_prompts_workers": 0,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    ds = RLHFDataset([str(f) for f in files], tokenizer, cfg, processor)
    expected = [row for f in files for row in _load(f)]
    assert len(ds) == len(expected)
    for i, want in enumerate(expected):
        item = ds[i]
        parts = [p for m in item["raw_prompt"] for p in (m["content"] if isinstance(m["content"], list) else [])]
        n_images = sum(1 for p in parts if p["type"] == "image")
        assert n_images == len(want["images"]) == want["prompt"][0]["content"].count("<image>")
        assert item["index"] == want["extra_info"]["index"]
        assert item["data_source"] == want["data_source"]
    # Each file on its own as well (no filter: the per-file load path).
    cfg1 = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path / "cache1")})
    for f in files:
        one = RLHFDataset(str(f), tokenizer, cfg1, processor)
        assert len(one) == pq.ParquetFile(f).metadata.num_rows
        one[len(one) - 1]
