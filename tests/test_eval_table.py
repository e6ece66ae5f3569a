"""The evaluation table (``python -m recipe_care.eval_table``) on a small dump written by verl's own code.

The benchmark rows come from the fixture records through the real converters (``data_prep.all``); each row gets a
right or a wrong response on a fixed pattern, is scored by the evaluation reward (``reward_fns.evaluation.
compute_score``), and verl 0.9.1 writes what its validation writes: the generations dump
(``RayPPOTrainer._write_generations``, the ``trainer.validation_data_dir`` writer) and the ``val-core`` metrics
(``RayPPOTrainer._val_metrics_update`` logged by verl's ``FileLogger``). Expected accuracies are computed here from the
pattern, not from the table code.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recipe_care import eval_table
from reward_fns import evaluation as eval_reward

REPO = Path(__file__).resolve().parents[1]
SIX = ("mathvista_testmini", "mmmu_pro_standard10", "mmmu_pro_vision", "mathverse_testmini", "mathvision_test",
       "wemath_testmini", "logicvista_test")
SETTINGS = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "n": 1, "do_sample": False, "max_response_length": 2048,
            "max_prompt_length": 16384, "model_path": "Qwen/Qwen2.5-VL-7B-Instruct", "verifier_mode": "train"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, fixtures_dir) -> Path:
    from data_prep.all import main as prep

    out = tmp_path_factory.mktemp("bench")
    rc = prep(["--out", str(out), "--local-root", str(fixtures_dir), "--only", ",".join(SIX), "--max-skip-frac", "0.5",
               "--quiet"])
    assert rc == 0, f"data_prep.all on the fixtures failed ({rc})"
    return out


@pytest.fixture(scope="module")
def records(data_dir) -> list[dict]:
    rows = []
    for stem in SIX:
        rows += pq.read_table(data_dir / f"{stem}.parquet").drop(["images"]).to_pylist()
    return rows


def correct_pattern(i: int) -> bool:
    return i % 3 != 1  # two of three right


def response(row: dict, right: bool) -> str:
    answer = row["reward_model"]["ground_truth"] if right else "zzz"
    return f"<think>some reasoning</think><answer>{answer}</answer>"


@pytest.fixture(scope="module")
def verl_writers():
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.utils.tracking import FileLogger

    return RayPPOTrainer, FileLogger


def write_run(folder: Path, rows: list[dict], writers, *, reward=eval_reward.compute_score, format_weight=0.0,
              pattern=correct_pattern, step=0, settings=SETTINGS, data_dir: Path | None = None,
              respond=None) -> dict:
    """What verl's _validate does after generation: reward dicts -> dump + val-core metrics (file logger)."""
    trainer_cls, file_logger = writers
    outputs, scores, infos = [], [], {}
    for i, row in enumerate(rows):
        text = (respond or response)(row, pattern(i))
        result = reward(row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"],
                        format_weight=format_weight)
        outputs.append(text)
        scores.append(result["score"])
        for key, value in result.items():
            infos.setdefault(key, []).append(value)
    extra = {"reward": list(scores), **infos}  # verl: reward_extra_infos_dict["reward"] = scores, then the dict keys
    inputs = [f"user\n{row['extra_info']['question']}\nassistant\n" for row in rows]
    gts = [row["reward_model"]["ground_truth"] for row in rows]
    trainer_cls._write_generations(inputs, outputs, gts, scores, extra, str(folder / "generations"), step)
    metrics = trainer_cls._val_metrics_update(
        None, [row["data_source"] for row in rows], [str(uuid.uuid4()) for _ in rows], extra, []
    )
    import os

    os.environ["VERL_FILE_LOGGER_PATH"] = str(folder / "metrics.jsonl")
    try:
        logger = file_logger("p", "e")
        logger.log(metrics, step)
        logger.finish()
    finally:
        del os.environ["VERL_FILE_LOGGER_PATH"]
    if settings is not None:
        payload = dict(settings)
        if data_dir is not None:
            payload["val_files"] = [str(data_dir / f"{stem}.parquet") for stem in SIX]
        (folder / "eval_settings.json").write_text(json.dumps(payload))
    return metrics


def expected_by_source(rows: list[dict], pattern=correct_pattern) -> dict[str, float]:
    hits: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        hits.setdefault(row["data_source"], []).append(1 if pattern(i) else 0)
    return {ds: sum(v) / len(v) for ds, v in hits.items()}


def expected_macro(by_source: dict[str, float]) -> float:
    bench = [
        by_source["mathvista_testmini"],
        (by_source["mmmu_pro_standard10"] + by_source["mmmu_pro_vision"]) / 2,
        by_source["mathverse_testmini"],
        by_source["mathvision_test"],
        by_source["wemath_testmini"],
        by_source["logicvista_test"],
    ]
    return sum(bench) / 6


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def run_table(*argv: str) -> int:
    return eval_table.main(list(argv))


def test_eval_reward_keeps_the_verdict_and_tags_the_record(records):
    import reward_fns

    keys = None
    for row in records:
        text = response(row, True)
        args = (row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"])
        plain, tagged = reward_fns.compute_score(*args), eval_reward.compute_score(*args)
        assert {k: tagged[k] for k in plain} == plain
        assert tagged["eval_data_source"] == row["data_source"]
        assert tagged["eval_record_id"] == row["extra_info"]["id"]
        assert json.loads(tagged["eval_extra_info"])["choices"] == list(row["extra_info"]["choices"])
        keys = keys or set(tagged)
        assert set(tagged) == keys, "verl needs the same reward keys for every sample"


def test_table_from_verl_dump_and_metrics(tmp_path, records, data_dir, verl_writers):
    run = tmp_path / "eval_model"
    metrics = write_run(run, records, verl_writers, format_weight=0.1, data_dir=data_dir)
    by_source = expected_by_source(records)
    # verl's own core metric agrees with the pattern (so the fixture is what we think it is)
    for ds, acc in by_source.items():
        assert metrics[f"val-core/{ds}/acc/mean@1"] == pytest.approx(acc)

    rc = run_table("--generations", str(run / "generations"), "--metrics", str(run / "metrics.jsonl"),
                   "--out", str(tmp_path / "out"))
    assert rc == 0
    rows = read_csv(tmp_path / "out" / "eval_table.csv")
    per_source = {r["data_source"]: r for r in rows if r["row"] == "data_source"}
    assert set(per_source) == set(SIX)
    for ds, acc in by_source.items():
        assert float(per_source[ds]["accuracy_pct"]) == pytest.approx(100 * acc, abs=0.005)
        n = sum(1 for r in records if r["data_source"] == ds)
        assert int(per_source[ds]["n"]) == n and int(per_source[ds]["expected"]) == n
        assert float(per_source[ds]["correct"]) == pytest.approx(acc * n)
    bench = {r["benchmark"]: r for r in rows if r["row"] == "benchmark"}
    mmmu = (by_source["mmmu_pro_standard10"] + by_source["mmmu_pro_vision"]) / 2
    assert float(bench["MMMU-Pro"]["accuracy_pct"]) == pytest.approx(100 * mmmu, abs=0.005)
    assert bench["MATH-Vision"]["data_source"] == "mathvision_test"
    (macro,) = [r for r in rows if r["row"] == "macro"]
    assert float(macro["accuracy_pct"]) == pytest.approx(100 * expected_macro(by_source), abs=0.005)
    # decoding settings recorded on every row, from the sidecar
    assert {(r["temperature"], r["top_p"], r["n_samples"], r["max_response_length"]) for r in rows} == {
        ("0.0", "1.0", "1", "2048")
    }
    md = (tmp_path / "out" / "eval_table.md").read_text()
    assert f"**{100 * expected_macro(by_source):.2f}**" in md
    assert "| temperature | 0.0 |" in md and "| max_response_length | 2048 |" in md
    assert "mean of mmmu_pro_standard10, mmmu_pro_vision" in md
    assert "cross-checked with" in md


def test_accuracy_comes_from_acc_not_score(tmp_path, records, verl_writers):
    run = tmp_path / "r"
    write_run(run, records, verl_writers, format_weight=0.5)  # every response is well formatted: score > acc
    dump = [json.loads(line) for line in (run / "generations" / "0.jsonl").read_text().splitlines()]
    assert any(row["score"] != row["acc"] for row in dump)
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 0
    rows = {r["data_source"]: r for r in read_csv(tmp_path / "o" / "eval_table.csv") if r["row"] == "data_source"}
    for ds, acc in expected_by_source(records).items():
        assert float(rows[ds]["accuracy_pct"]) == pytest.approx(100 * acc, abs=0.005)


def test_rescore_official_matches_direct_official_scoring(tmp_path, records, verl_writers):
    import reward_fns

    run = tmp_path / "r"
    write_run(run, records, verl_writers, pattern=lambda i: True)
    official: dict[str, list[float]] = {}
    for row in records:  # independent path: the parquet record, not the dumped eval_extra_info
        res = reward_fns.compute_score(row["data_source"], response(row, True), row["reward_model"]["ground_truth"],
                                       row["extra_info"], mode="official")
        official.setdefault(row["data_source"], []).append(res["acc"])
    assert any(sum(v) < len(v) for v in official.values()), "fixture no longer separates official from train scoring"
    assert run_table("--generations", str(run / "generations"), "--rescore", "official",
                     "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table_official.csv")
    per_source = {r["data_source"]: r for r in rows if r["row"] == "data_source"}
    for ds, accs in official.items():
        assert float(per_source[ds]["accuracy_pct"]) == pytest.approx(100 * sum(accs) / len(accs), abs=0.005)
    assert all("official re-score" in r["scoring"] for r in rows)
    # without --rescore every right answer counts (train mode)
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 0
    train_rows = [r for r in read_csv(tmp_path / "o" / "eval_table.csv") if r["row"] == "data_source"]
    assert all(float(r["accuracy_pct"]) == 100.0 for r in train_rows)


def test_metrics_only_table(tmp_path, records, verl_writers):
    run = tmp_path / "r"
    write_run(run, records, verl_writers)
    assert run_table("--metrics", str(run / "metrics.jsonl"), "--settings", str(run / "eval_settings.json"),
                     "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table.csv")
    (macro,) = [r for r in rows if r["row"] == "macro"]
    assert float(macro["accuracy_pct"]) == pytest.approx(100 * expected_macro(expected_by_source(records)), abs=0.005)
    assert all(r["n"] == "" for r in rows if r["row"] == "data_source")  # metrics carry no counts


def test_missing_benchmark_has_no_macro_and_dropped_rows_are_reported(tmp_path, records, data_dir, verl_writers):
    kept = [r for r in records if r["data_source"] != "logicvista_test"]
    kept = [r for i, r in enumerate(kept) if not (r["data_source"] == "wemath_testmini" and i % 2)]  # verl dropped some
    run = tmp_path / "r"
    write_run(run, kept, verl_writers, data_dir=data_dir)
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table.csv")
    (macro,) = [r for r in rows if r["row"] == "macro"]
    assert macro["accuracy_pct"] == "" and "LogicVista" in macro["note"]
    wemath = next(r for r in rows if r["data_source"] == "wemath_testmini")
    assert int(wemath["n"]) < int(wemath["expected"])
    md = (tmp_path / "o" / "eval_table.md").read_text()
    assert "missing: LogicVista" in md and "wemath_testmini:" in md and "expected" in md


def test_two_runs_side_by_side(tmp_path, records, verl_writers):
    write_run(tmp_path / "care", records, verl_writers, pattern=lambda i: i % 2 == 0)
    write_run(tmp_path / "grpo", records, verl_writers, pattern=lambda i: i % 4 == 0)
    assert run_table("--generations", f"care={tmp_path / 'care' / 'generations'}",
                     f"grpo={tmp_path / 'grpo' / 'generations'}", "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table.csv")
    macro = {r["run"]: float(r["accuracy_pct"]) for r in rows if r["row"] == "macro"}
    assert macro["care"] == pytest.approx(100 * expected_macro(expected_by_source(records, lambda i: i % 2 == 0)), abs=0.005)
    assert macro["grpo"] == pytest.approx(100 * expected_macro(expected_by_source(records, lambda i: i % 4 == 0)), abs=0.005)
    header = (tmp_path / "o" / "eval_table.md").read_text().splitlines()[2]
    assert header == "| benchmark | data source(s) | care | grpo |"


def test_newest_step_is_tabled_unless_step_given(tmp_path, records, verl_writers):
    run = tmp_path / "r"
    write_run(run, records, verl_writers, pattern=lambda i: True, step=5)
    write_run(run, records, verl_writers, pattern=lambda i: False, step=10, settings=SETTINGS)
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 0
    (macro,) = [r for r in read_csv(tmp_path / "o" / "eval_table.csv") if r["row"] == "macro"]
    assert float(macro["accuracy_pct"]) == 0.0
    assert run_table("--generations", str(run / "generations"), "--step", "5", "--out", str(tmp_path / "o")) == 0
    (macro,) = [r for r in read_csv(tmp_path / "o" / "eval_table.csv") if r["row"] == "macro"]
    assert float(macro["accuracy_pct"]) == 100.0


# --- bad input: a clear error naming the file/record and the fix ------------------------------------------------


def test_plain_verl_dump_without_data_source_is_refused(tmp_path, records, verl_writers, capsys):
    import reward_fns

    run = tmp_path / "r"
    write_run(run, records, verl_writers, reward=reward_fns.compute_score)  # stock reward: no eval_data_source
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "0.jsonl line 1 has no data source" in err and "pkg://reward_fns.evaluation" in err and "--metrics" in err
    # ...while its metrics file still tables
    assert run_table("--metrics", str(run / "metrics.jsonl"), "--out", str(tmp_path / "o")) == 0


def test_row_without_acc_is_refused(tmp_path, capsys):
    gen = tmp_path / "generations"
    gen.mkdir()
    (gen / "0.jsonl").write_text(json.dumps({"input": "q", "output": "a", "gts": "1", "score": 1.0, "step": 0,
                                             "eval_data_source": "mathvista_testmini"}) + "\n")
    (tmp_path / "eval_settings.json").write_text(json.dumps(SETTINGS))
    assert run_table("--generations", str(gen), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "line 1 has no 'acc'" in err and "never score" in err


def test_unknown_decoding_settings_are_refused_then_given_by_flags(tmp_path, records, verl_writers, capsys):
    run = tmp_path / "r"
    write_run(run, records, verl_writers, settings=None)
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "decoding settings" in err and "--temperature X" in err and "--max-response-length X" in err
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o"), "--temperature", "0",
                     "--top-p", "1", "--n", "1", "--max-response-length", "1024") == 0
    rows = read_csv(tmp_path / "o" / "eval_table.csv")
    assert {r["max_response_length"] for r in rows} == {"1024"}


def test_metrics_from_another_run_are_refused(tmp_path, records, verl_writers, capsys):
    write_run(tmp_path / "a", records, verl_writers, pattern=lambda i: True)
    write_run(tmp_path / "b", records, verl_writers, pattern=lambda i: False)
    assert run_table("--generations", str(tmp_path / "a" / "generations"), "--metrics",
                     str(tmp_path / "b" / "metrics.jsonl"), "--out", str(tmp_path / "o")) == 2
    assert "different runs or steps" in capsys.readouterr().err


def test_corrupt_dump_line_is_named(tmp_path, capsys):
    gen = tmp_path / "generations"
    gen.mkdir()
    (gen / "3.jsonl").write_text('{"acc": 1.0, "eval_data_source": "logicvista_test"}\n{"acc": \n')
    assert run_table("--generations", str(gen), "--out", str(tmp_path / "o"), "--temperature", "0", "--top-p", "1",
                     "--n", "1", "--max-response-length", "8") == 2
    assert "3.jsonl line 2 is not JSON" in capsys.readouterr().err


def test_folder_without_dump_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_table("--generations", str(tmp_path / "empty"), "--out", str(tmp_path / "o")) == 2
    assert "not a verl validation dump" in capsys.readouterr().err


# --- We-Math under the official re-score: its official rule reads only answers in We-Math's own template ----------


def wemath_template(row: dict, right: bool) -> str:
    """A response in We-Math's official answer template (what its own prompt asks for)."""
    answer = row["reward_model"]["ground_truth"] if right else "E"
    if not right and answer == row["reward_model"]["ground_truth"]:
        answer = "D"
    return f"<Thought process>: <<some reasoning>> <Answer>: <<{answer}>>"


def official_by_source(rows: list[dict], respond, pattern, mode: str = "official") -> dict[str, float]:
    """Direct scoring of the parquet records (independent of the table's dump reading)."""
    import reward_fns

    hits: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        result = reward_fns.compute_score(row["data_source"], respond(row, pattern(i)),
                                          row["reward_model"]["ground_truth"], row["extra_info"], mode=mode)
        hits.setdefault(row["data_source"], []).append(result["acc"])
    return {ds: sum(v) / len(v) for ds, v in hits.items()}


def test_official_wemath_in_our_format_is_not_comparable_and_shows_the_train_rule(tmp_path, records, verl_writers):
    run = tmp_path / "r"
    write_run(run, records, verl_writers)  # every response in the recipe's <think>/<answer> format
    train = expected_by_source(records)  # the train rule reads the <answer>: the pattern's accuracy
    official = official_by_source(records, response, correct_pattern)
    assert official["wemath_testmini"] == 0.0 < train["wemath_testmini"]  # the silent zero this guards against
    assert run_table("--generations", str(run / "generations"), "--rescore", "official",
                     "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table_official.csv")
    n_wemath = sum(1 for r in records if r["data_source"] == "wemath_testmini")
    source = next(r for r in rows if r["row"] == "data_source" and r["data_source"] == "wemath_testmini")
    assert (source["accuracy_pct"], source["in_template"]) == ("0.00", "0")  # the official number is kept, with why
    assert float(source["train_rule_pct"]) == pytest.approx(100 * train["wemath_testmini"], abs=0.005)
    bench = next(r for r in rows if r["row"] == "benchmark" and r["benchmark"] == "We-Math")
    assert bench["accuracy_pct"] == "" and f"0/{n_wemath} responses in We-Math's answer template" in bench["note"]
    assert float(bench["train_rule_pct"]) == pytest.approx(100 * train["wemath_testmini"], abs=0.005)
    (macro,) = [r for r in rows if r["row"] == "macro"]
    assert macro["accuracy_pct"] == "" and "not comparable: We-Math" in macro["note"]
    (mixed,) = [r for r in rows if r["row"] == "macro_train_rule"]
    expected = expected_macro({**official, "wemath_testmini": train["wemath_testmini"]})
    assert float(mixed["accuracy_pct"]) == pytest.approx(100 * expected, abs=0.005)
    # the other five keep their official numbers
    others = {r["benchmark"]: r for r in rows if r["row"] == "benchmark" and r["benchmark"] != "We-Math"}
    assert float(others["LogicVista"]["accuracy_pct"]) == pytest.approx(100 * official["logicvista_test"], abs=0.005)
    assert all(r["train_rule_pct"] == "" for r in others.values())
    md = (tmp_path / "o" / "eval_table_official.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| We-Math |"))
    assert "not comparable (official rule 0.00)" in line and f"train rule: {100 * train['wemath_testmini']:.2f}" in line
    macro_line = "| **Macro average, We-Math by the train rule** | the official rule elsewhere |"
    assert f"{macro_line} **{100 * expected:.2f}** |" in md
    assert "- r: We-Math:" in md and "not comparable with published We-Math numbers" in md
    # the train-rule table of the same dump has no such mark
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 0
    assert "not comparable" not in (tmp_path / "o" / "eval_table.md").read_text()


def test_official_wemath_in_its_own_template_is_comparable(tmp_path, records, verl_writers):
    def respond(row, right):
        return (wemath_template if row["data_source"] == "wemath_testmini" else response)(row, right)

    run = tmp_path / "r"
    write_run(run, records, verl_writers, respond=respond)
    official = official_by_source(records, respond, correct_pattern)
    assert official["wemath_testmini"] == pytest.approx(expected_by_source(records)["wemath_testmini"])
    assert run_table("--generations", str(run / "generations"), "--rescore", "official",
                     "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table_official.csv")
    bench = next(r for r in rows if r["row"] == "benchmark" and r["benchmark"] == "We-Math")
    assert float(bench["accuracy_pct"]) == pytest.approx(100 * official["wemath_testmini"], abs=0.005)
    assert bench["note"] == "" and bench["train_rule_pct"] == ""
    (macro,) = [r for r in rows if r["row"] == "macro"]
    assert float(macro["accuracy_pct"]) == pytest.approx(100 * expected_macro(official), abs=0.005)
    assert not [r for r in rows if r["row"] == "macro_train_rule"]


def test_official_wemath_with_a_minority_in_its_template_is_not_comparable(tmp_path, records, verl_writers):
    wemath = [i for i, r in enumerate(records) if r["data_source"] == "wemath_testmini"]
    templated = {id(records[i]) for i in wemath[: (len(wemath) - 1) // 2]}  # just under half

    def respond(row, right):
        return (wemath_template if id(row) in templated else response)(row, right)

    run = tmp_path / "r"
    write_run(run, records, verl_writers, respond=respond, settings={**SETTINGS, "verifier_mode": "official"},
              reward=lambda *a, **k: eval_reward.compute_score(*a, mode="official", **k))
    # the run itself scored with mode=official (VERIFIER_MODE=official): no re-score needed for the mark
    assert run_table("--generations", str(run / "generations"), "--out", str(tmp_path / "o")) == 0
    rows = read_csv(tmp_path / "o" / "eval_table.csv")
    source = next(r for r in rows if r["row"] == "data_source" and r["data_source"] == "wemath_testmini")
    assert int(source["in_template"]) == len(templated) < len(wemath) / 2
    official = official_by_source(records, respond, correct_pattern)
    assert official["wemath_testmini"] > 0  # the templated right answers count officially
    assert float(source["accuracy_pct"]) == pytest.approx(100 * official["wemath_testmini"], abs=0.005)
    bench = next(r for r in rows if r["row"] == "benchmark" and r["benchmark"] == "We-Math")
    assert bench["accuracy_pct"] == "" and f"{len(templated)}/{len(wemath)} responses" in bench["note"]
    train = official_by_source(records, respond, correct_pattern, mode="train")  # the train rule, as it reads them
    assert float(bench["train_rule_pct"]) == pytest.approx(100 * train["wemath_testmini"], abs=0.005)


def test_doctests():
    import doctest

    from recipe_care.eval import benchmarks

    for module in (eval_reward, benchmarks):
        assert doctest.testmod(module).failed == 0, module.__name__
