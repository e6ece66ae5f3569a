"""Real downloads as users have them, built small in tmp_path (no network: the Hub is an unreachable local port).

* a MathVerse / We-Math download (annotation JSON + image zip + parquet side by side) is read from the parquet of the
  wanted config and split, with its embedded images (the JSON's image paths point into the unpacked zip);
* We-Math option strings with ``;X.`` artefacts inside option texts keep their options;
* a dataset already in the Hugging Face cache is read by id without network; with neither network nor cache the run
  ends in seconds with one clear error, and a network failure in the middle of a stream ends with the same error;
* ``data_prep.all`` reads one MMMU-Pro download folder for both settings.
"""

import doctest
import io
import json
import time
import zipfile
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import all as prep_all
from data_prep import mathverse, mathvista, sources, wemath
from data_prep.wemath import parse_option_string

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once


def _png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _report(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}.report.json").read_text())


# --------------------------------------------------------------------------------------------- published layouts

MATHVERSE_CARD = """---
license: mit
configs:
- config_name: testmini
  data_files:
  - split: testmini
    path: "testmini.parquet"
- config_name: testmini_text_only
  data_files:
  - split: testmini_text_only
    path: "testmini_text_only.parquet"
---
# MathVerse
"""

WEMATH_CARD = """---
license: cc-by-nc-4.0
configs:
- config_name: default
  data_files:
  - split: testmini
    path: data/testmini-*
---
# We-Math
"""


def mathverse_download(folder: Path, *, card: bool = True, annotations: bool = True) -> list[str]:
    """The layout of the Hub repository AI4Math/MathVerse: card, testmini(.json|.parquet), testmini_text_only(...),
    images.zip. Returns the sample_index values of the `testmini` config."""
    folder.mkdir(parents=True)
    png = _png()

    def table(ids, version, image):
        return datasets.Dataset.from_dict(
            {
                "sample_index": ids,
                "problem_index": ids,
                "problem_version": [version] * len(ids),
                "question": [f"Find x in figure {i}." for i in ids],
                "image": [image] * len(ids),
                "answer": ["14"] * len(ids),
                "question_type": ["free-form"] * len(ids),
                "query_cot": [f"Please reason first. Find x in figure {i}." for i in ids],
            },
            features=datasets.Features(
                {
                    "sample_index": datasets.Value("string"),
                    "problem_index": datasets.Value("string"),
                    "problem_version": datasets.Value("string"),
                    "question": datasets.Value("string"),
                    "image": datasets.Image() if image else datasets.Value("string"),
                    "answer": datasets.Value("string"),
                    "question_type": datasets.Value("string"),
                    "query_cot": datasets.Value("string"),
                }
            ),
        )

    table(["1", "2"], "Text Dominant", {"bytes": png, "path": "image_1.png"}).to_parquet(folder / "testmini.parquet")
    table(["7", "8", "9"], "Text Only", "").to_parquet(folder / "testmini_text_only.parquet")
    if card:
        (folder / "README.md").write_text(MATHVERSE_CARD)
    if annotations:  # the JSON twins name images inside images.zip, which a plain download leaves packed
        records = [{"sample_index": i, "problem_index": i, "problem_version": "Text Dominant", "question": "Q",
                    "image": f"images_version_1-4/image_{i}.png", "answer": "14", "question_type": "free-form",
                    "query_cot": "Q"} for i in ("1", "2")]  # fmt: skip
        (folder / "testmini.json").write_text(json.dumps(records))
        (folder / "testmini_text_only.json").write_text("[]")
        with zipfile.ZipFile(folder / "images.zip", "w") as zf:
            zf.writestr("images_version_1-4/image_1.png", png)
    return ["1", "2"]


@pytest.mark.parametrize("card", [True, False], ids=["with-card", "without-card"])
def test_mathverse_download_reads_the_testmini_parquet_only(tmp_path, card):
    """4,728 rows (testmini + the 788 text-only rows), or every record `missing_image` from the JSON: not any more."""
    src = tmp_path / "MathVerse"
    ids = mathverse_download(src, card=card)
    out = tmp_path / "out"
    assert mathverse.main(["--out", str(out), "--local-path", str(src), "--quiet"]) == 0
    rows = _rows(out / "mathverse_testmini.parquet")
    assert [r["extra_info"]["id"] for r in rows] == ids
    assert all(r["images"] == [{"bytes": _png(), "path": None}] for r in rows)  # the embedded image, untouched
    report = _report(out, "mathverse_testmini")
    assert report["source"]["kind"] == "parquet"
    assert report["source"]["files"] == [str(src.resolve() / "testmini.parquet")]
    assert report["skipped"] == 0 and "text_only_record" not in report["notes"]


def test_parquet_file_names_select_the_split_not_a_prefix(tmp_path):
    """Without a card, `testmini_text_only.parquet` is not a `testmini` file; HF shard names still are."""
    src = tmp_path / "MathVerse"
    mathverse_download(src, card=False, annotations=False)
    files = sorted(src.glob("*.parquet"))
    spec = mathverse.make_spec()
    assert sources._select_parquet(files, src, spec.source) == [src / "testmini.parquet"]
    shard = src / "data" / "testmini-00000-of-00001-adbfe22dcd3558e6.parquet"
    assert sources._in_split(shard, src, "testmini") and not sources._in_split(shard, src, "test")


def test_a_card_file_missing_from_the_download_is_named(tmp_path, capsys):
    src = tmp_path / "MathVerse"
    mathverse_download(src, annotations=False)
    (src / "testmini.parquet").unlink()  # an interrupted download
    assert mathverse.main(["--out", str(tmp_path / "out"), "--local-path", str(src), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lists 'testmini.parquet' for config 'testmini' / split 'testmini'" in err and "incomplete download" in err


def wemath_download(folder: Path) -> None:
    """The layout of the Hub repository We-Math/We-Math: card, data/testmini-*.parquet, testmini.json, testmini.zip."""
    (folder / "data").mkdir(parents=True)
    png = _png((20, 160, 40))
    datasets.Dataset.from_dict(
        {
            "ID": ["2steps_1", "2steps_1"],
            "key": ["2steps_1", "2steps_multi"],
            "question": ["Which shape do you get?", "How long is AB?"],
            "option": [
                "A. Rotate Shape A to get Shape ;C.; B. Flip Shape A to get Shape ;D.; C. No correct answer",
                "A. 300;B. 400; C. No correct answer",
            ],
            "answer": ["B", "A"],
            "image_path": [{"bytes": png, "path": "1-1.png"}, {"bytes": png, "path": "1-multi.png"}],
        },
        features=datasets.Features(
            {
                "ID": datasets.Value("string"),
                "key": datasets.Value("string"),
                "question": datasets.Value("string"),
                "option": datasets.Value("string"),
                "answer": datasets.Value("string"),
                "image_path": datasets.Image(),
            }
        ),
    ).to_parquet(folder / "data" / "testmini-00000-of-00001-adbfe22dcd3558e6.parquet")
    (folder / "README.md").write_text(WEMATH_CARD)
    record = {"ID": "2steps_1", "key": "2steps_1", "question": "Q", "option": "A. 1;B. 2", "answer": "A",
              "image_path": "2steps/image/1-1.png"}  # fmt: skip
    (folder / "testmini.json").write_text(json.dumps([record]))
    with zipfile.ZipFile(folder / "testmini.zip", "w") as zf:
        zf.writestr("2steps/image/1-1.png", png)


def test_wemath_download_reads_the_parquet_with_embedded_images(tmp_path):
    src = tmp_path / "We-Math"
    wemath_download(src)
    out = tmp_path / "out"
    assert wemath.main(["--out", str(out), "--local-path", str(src), "--quiet"]) == 0
    rows = _rows(out / "wemath_testmini.parquet")
    assert [r["extra_info"]["id"] for r in rows] == ["2steps_1|2steps_1", "2steps_1|2steps_multi"]
    assert all(r["images"][0]["bytes"] == _png((20, 160, 40)) for r in rows)
    assert rows[0]["extra_info"]["choices"] == [
        "Rotate Shape A to get Shape ;C.",
        "Flip Shape A to get Shape ;D.",
        "No correct answer",
    ]
    report = _report(out, "wemath_testmini")
    assert report["source"]["kind"] == "parquet" and report["skipped"] == 0
    assert report["notes"] == {"option_marker_in_text": 2} and report["repaired_by_rule"] == {}


# ------------------------------------------------------------------------------------------- We-Math option text


@pytest.mark.parametrize(
    "option, expected",
    [
        (  # an artefact of a later letter inside option A, right before the real separator
            "A. Rotate Shape A to get Shape ;C.; B. Translate it; C. Cannot be determined; D. No correct answer",
            ["Rotate Shape A to get Shape ;C.", "Translate it", "Cannot be determined", "No correct answer"],
        ),
        (  # an artefact of the NEXT letter inside option B, ending the option
            "A. ∠ABD;B. ∠AB;C.;C. ∠BCD; D. No correct answer",
            ["∠ABD", "∠AB;C.", "∠BCD", "No correct answer"],
        ),
        (  # ... and inside the text, with more text after it
            "A. ∠ABD; B. ∠AB;C. is the largest; C. ∠BCD; D. No correct answer",
            ["∠ABD", "∠AB;C. is the largest", "∠BCD", "No correct answer"],
        ),
        (  # an artefact of the option's own letter after its real marker
            "A. 1;B. 2;C. ∠AB;C. is 30°;D. No correct answer",
            ["1", "2", "∠AB;C. is 30°", "No correct answer"],
        ),
        (  # letters that are no option at all
            "A. the point ;O.; B. the point ;P.; C. No correct answer",
            ["the point ;O.", "the point ;P.", "No correct answer"],
        ),
    ],
)
def test_wemath_separator_artefacts_stay_inside_the_option_text(option, expected):
    assert parse_option_string(option) == (expected, False)  # and no separator "repair" either


@pytest.mark.parametrize(
    "option, expected, irregular",
    [
        ("A. A;B. B;C. C;D. D; E. No correct answer", ["A", "B", "C", "D", "No correct answer"], False),
        ("A. 45° B. 60° ;C. 120°; D. No correct answer", ["45°", "60°", "120°", "No correct answer"], True),
    ],
)
def test_wemath_letters_as_texts_and_missing_separators(option, expected, irregular):
    assert parse_option_string(option) == (expected, irregular)


def test_wemath_doctest():
    assert doctest.testmod(wemath).failed == 0


# ------------------------------------------------------------------------------------------------- Hub and cache


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """The Hub at a refused local port, empty caches in tmp_path, offline mode off (the libraries read their
    settings at import, so the module attributes are patched, as HF_ENDPOINT / HF_HOME would set them)."""
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources, "_UNREACHABLE", {})
    return tmp_path / "hub"


def put_in_hub_cache(hub: Path, repo: str, download: Path) -> None:
    """Lay `download` out as the Hugging Face cache does (blobs + snapshot symlinks + refs/main), the layout
    `hf download` and `datasets.load_dataset` leave behind."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hub / ("datasets--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(sha)
    for i, f in enumerate(sorted(p for p in download.rglob("*") if p.is_file())):
        blob = repo_dir / "blobs" / f"blob{i}"
        blob.write_bytes(f.read_bytes())
        link = repo_dir / "snapshots" / sha / f.relative_to(download)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(f.relative_to(download).parts) + 1)) / "blobs" / blob.name)


@pytest.mark.parametrize("why", ["unreachable", "HF_HUB_OFFLINE"])
def test_a_dataset_in_the_hf_cache_is_read_by_id_without_network(tmp_path, no_network, monkeypatch, why):
    ids = mathverse_download(tmp_path / "download")
    put_in_hub_cache(no_network, "AI4Math/MathVerse", tmp_path / "download")
    if why == "HF_HUB_OFFLINE":
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out"
    assert mathverse.main(["--out", str(out), "--quiet"]) == 0
    assert [r["extra_info"]["id"] for r in _rows(out / "mathverse_testmini.parquet")] == ids
    source = _report(out, "mathverse_testmini")["source"]
    assert source["kind"] == "hub_cache" and source["id"] == "AI4Math/MathVerse"
    assert [Path(f).name for f in source["files"]] == ["testmini.parquet"]


def test_no_network_and_no_cache_fails_in_seconds_with_a_clear_error(tmp_path, no_network, monkeypatch, capsys):
    probes = []

    class CountingApi(sources.HfApi):
        def dataset_info(self, repo_id, **kwargs):
            probes.append(repo_id)
            return super().dataset_info(repo_id, **kwargs)

    monkeypatch.setattr(sources, "HfApi", CountingApi)
    t0 = time.monotonic()
    code = mathvista.main(["--out", str(tmp_path / "out"), "--quiet"])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 5, f"{elapsed:.1f} s to give up (retries?)"  # datasets' own path retried for ~25 s
    assert "cannot read 'AI4Math/MathVista' (config None, split 'testmini') from the Hugging Face Hub" in err
    assert "unreachable" in err and "no copy in the Hugging Face cache" in err and "\nFix: " in err
    assert "Traceback" not in err
    # data_prep.all does not wait for the Hub again for every output: one unanswered question is enough.
    assert prep_all.main(["--out", str(tmp_path / "out"), "--only", "wemath_testmini,logicvista_test", "--quiet"]) == 2
    assert probes == ["AI4Math/MathVista"]
    assert capsys.readouterr().err.count("unreachable") == 2


class _Stream:
    """What `datasets.load_dataset(..., streaming=True)` returns, losing the network after `n_ok` records."""

    info = None

    def __init__(self, records, n_ok):
        self.records, self.n_ok = records, n_ok

    def decode(self, flag):
        assert flag is False

        def gen():
            yield from self.records[: self.n_ok]
            raise ConnectionError("Server Disconnected")  # what datasets raises once its read retries are spent

        return gen()


def test_network_lost_mid_stream_ends_with_the_offline_error(tmp_path, no_network, monkeypatch, capsys):
    src = tmp_path / "We-Math"
    wemath_download(src)
    records = pq.read_table(next((src / "data").glob("*.parquet"))).to_pylist() * 3
    monkeypatch.setattr(sources, "probe_hub", lambda repo, spec: ("f" * 40, ""))  # the Hub answers at the start ...
    monkeypatch.setattr(sources.datasets, "load_dataset", lambda *a, **k: _Stream(records, 4))  # ... then is lost
    out = tmp_path / "out"
    assert wemath.main(["--out", str(out), "--quiet"]) == 2
    mid_stream = capsys.readouterr().err
    assert not list(out.glob("wemath_testmini.parquet*"))  # no partial file left behind
    assert "Traceback" not in mid_stream and "reading stopped after 4 records" in mid_stream

    monkeypatch.setattr(sources, "probe_hub", lambda repo, spec: (None, "HF_HUB_OFFLINE is set"))
    assert wemath.main(["--out", str(out), "--quiet"]) == 2
    at_start = capsys.readouterr().err

    def head_and_fix(err):
        lines = err[err.index("error: ") :].strip().split("\n")
        assert len(lines) == 2, lines
        return lines[0].split(" from the Hugging Face Hub: ")[0], lines[1]

    assert head_and_fix(mid_stream) == head_and_fix(at_start)
    expected = "error: wemath_testmini: cannot read 'We-Math/We-Math' (config None, split 'testmini')"
    assert head_and_fix(at_start)[0] == expected


# ------------------------------------------------------------------------------------------------- data_prep.all


MMMU_CARD = """---
license: apache-2.0
configs:
- config_name: standard (10 options)
  data_files:
  - split: test
    path: standard (10 options)/test-*
- config_name: vision
  data_files:
  - split: test
    path: vision/test-*
---
"""


def test_all_reads_one_mmmu_pro_download_for_both_settings(tmp_path, capsys):
    png = _png((0, 0, 200))
    root = tmp_path / "data"
    snap = root / "MMMU_Pro"
    (snap / "standard (10 options)").mkdir(parents=True)
    (snap / "vision").mkdir()
    (snap / "README.md").write_text(MMMU_CARD)
    image = datasets.Image()
    datasets.Dataset.from_dict(
        {
            "id": ["s1", "s2"],
            "question": ["What is <image 1>?", "And <image 1>?"],
            "options": ["['x', 'y', 'z']", "['x', 'y']"],
            "image_1": [{"bytes": png, "path": None}] * 2,
            "answer": ["C", "A"],
        },
        features=datasets.Features(
            {k: datasets.Value("string") for k in ("id", "question", "options", "answer")} | {"image_1": image}
        ),
    ).to_parquet(snap / "standard (10 options)" / "test-00000-of-00001.parquet")
    datasets.Dataset.from_dict(
        {"id": ["v1"], "image": [{"bytes": png, "path": None}], "options": ["['x', 'y']"], "answer": ["B"]},
        features=datasets.Features(
            {k: datasets.Value("string") for k in ("id", "options", "answer")} | {"image": image}
        ),
    ).to_parquet(snap / "vision" / "test-00000-of-00001.parquet")
    out = tmp_path / "out"
    argv = ["--out", str(out), "--local-root", str(root), "--only", "mmmu_pro_standard10,mmmu_pro_vision", "--quiet"]
    assert prep_all.main(argv) == 0
    assert len(_rows(out / "mmmu_pro_standard10.parquet")) == 2
    assert len(_rows(out / "mmmu_pro_vision.parquet")) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert {s: summary[s]["status"] for s in summary} == {"mmmu_pro_standard10": "ok", "mmmu_pro_vision": "ok"}

    # A folder that holds one table (records.jsonl) serves the script's default setting only, and says so.
    one = tmp_path / "one" / "mmmu_pro"
    one.mkdir(parents=True)
    (one / "records.jsonl").write_text("")
    job = prep_all.JOBS["mmmu_pro_vision"]
    assert job.find_local(tmp_path / "one")[0] is None
    assert "holds one table, read as mmmu_pro_standard10 only" in job.find_local(tmp_path / "one")[1][0]
    assert prep_all.JOBS["mmmu_pro_standard10"].find_local(tmp_path / "one")[0] == one
