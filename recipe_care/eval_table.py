"""The evaluation table: per-benchmark accuracy and the macro average over the six benchmarks, from verl's outputs.

    python -m recipe_care.eval_table --generations OUT/generations --metrics OUT/metrics.jsonl \\
        --settings OUT/eval_settings.json --out OUT [--rescore official]
    python -m recipe_care.eval_table --generations care=A/generations grpo=B/generations --out CMP   # side by side

Inputs (``run_scripts/eval_benchmarks.sh`` writes all three and runs this command at the end):

* ``--generations``: the JSON Lines dump verl writes with ``trainer.validation_data_dir`` (``<step>.jsonl``, one line
  per response: ``input``, ``output``, ``gts``, ``score``, ``step`` and every key of the reward dict, among them
  ``acc``). verl's dump has no ``data_source``; the evaluation reward :func:`compute_score` below (the project's
  verifiers plus three string keys, ``eval_data_source``, ``eval_record_id``, ``eval_extra_info``) puts it there.
  A folder means its newest step, or ``--step``.
* ``--metrics``: the ``file`` logger's JSON Lines (``VERL_FILE_LOGGER_PATH``) with
  ``val-core/<data_source>/acc/mean@N``. Alone it gives the accuracies (no counts); with a dump it is a cross-check.
* ``--settings``: the decoding settings (JSON: ``temperature``, ``top_p``, ``n``, ``max_response_length``, ...; the
  sidecar ``eval_settings.json`` of the eval script; found next to the dump when not given). ``--temperature``,
  ``--top-p``, ``--top-k``, ``--n``, ``--max-response-length`` set or override them. Its ``val_files`` give each
  source's expected row count (rows dropped by verl, e.g. overlong prompts, are reported).

Accuracy is the mean of ``acc`` (never ``score``, which may carry a format bonus). ``--rescore official`` recomputes
``acc`` with ``reward_fns.compute_score(..., mode="official")`` from the dumped response, ground truth and record.
Benchmarks: MathVista (testmini), MMMU-Pro (mean of the standard10 and vision settings), MathVerse (testmini),
MATH-Vision (test, else testmini), We-Math (testmini), LogicVista (test); the macro average is their unweighted mean
and is only given when all six are present. Other sources (Geometry3K) are listed apart. Writes
``<out>/<name>.md`` and ``<out>/<name>.csv`` (``name``: ``eval_table``, ``eval_table_official`` with the re-score).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# (benchmark, its data sources). MMMU-Pro: mean of its settings; MATH-Vision: the first split present.
BENCHMARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("MathVista", ("mathvista_testmini",)),
    ("MMMU-Pro", ("mmmu_pro_standard10", "mmmu_pro_vision")),
    ("MathVerse", ("mathverse_testmini",)),
    ("MATH-Vision", ("mathvision_test", "mathvision_testmini")),
    ("We-Math", ("wemath_testmini",)),
    ("LogicVista", ("logicvista_test",)),
)
MEAN_OF_SOURCES = {"MMMU-Pro"}
BENCHMARK_OF = {ds: name for name, sources in BENCHMARKS for ds in sources}

# keys the evaluation reward adds to the reward dict (and so to verl's dump)
TAG_DATA_SOURCE = "eval_data_source"
TAG_RECORD_ID = "eval_record_id"
TAG_EXTRA_INFO = "eval_extra_info"

SETTING_KEYS = ("temperature", "top_p", "top_k", "n", "do_sample", "max_response_length")
REQUIRED_SETTINGS = ("temperature", "top_p", "n", "max_response_length")
SETTINGS_FILE = "eval_settings.json"
METRIC_RE = re.compile(r"^val-core/(?P<ds>.+)/acc/mean@(?P<n>\d+)$")
CROSS_CHECK_TOL = 1e-6


class EvalTableError(ValueError):
    """Bad or inconsistent input; the message names the file/record and the fix."""


# --------------------------------------------------------------------------------------------------------------
# The evaluation reward: the project's verifiers plus the identity of each record, so the dump can be tabled.
# --------------------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays / scalars from parquet
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def compute_score(
    data_source: str,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    mode: str = "train",
    format_weight: float = 0.0,
    **kwargs: Any,
) -> dict:
    """``reward_fns.compute_score`` (same verdict) plus ``eval_data_source``, ``eval_record_id`` and
    ``eval_extra_info`` (JSON of the verifier keys of ``extra_info``), strings verl copies into its validation dump
    and skips in its metric means. Wire it with ``reward.custom_reward_function.path=pkg://recipe_care.eval_table``.
    """
    import reward_fns
    from reward_fns.schema import EXTRA_INFO_DEFAULTS

    result = dict(
        reward_fns.compute_score(
            data_source, solution_str, ground_truth, extra_info, mode=mode, format_weight=format_weight, **kwargs
        )
    )
    info = dict(extra_info or {})
    kept = {key: _jsonable(info[key]) for key in EXTRA_INFO_DEFAULTS if key in info}
    result[TAG_DATA_SOURCE] = str(data_source)
    result[TAG_RECORD_ID] = str(info.get("id", "") or "")
    result[TAG_EXTRA_INFO] = json.dumps(kept, ensure_ascii=False, default=str)
    return result


# --------------------------------------------------------------------------------------------------------------
# Reading verl's outputs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SourceScore:
    data_source: str
    accuracy: float  # fraction in [0, 1]
    correct: float | None = None  # sum of acc (None when the accuracy comes from metrics only)
    n: int | None = None  # responses scored
    expected: int | None = None  # rows of the data file x n samples


@dataclass
class Run:
    label: str
    sources: dict[str, SourceScore]
    settings: dict[str, Any]
    scoring: str
    origin: str
    notes: list[str] = field(default_factory=list)


def _step_files(folder: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for path in folder.glob("*.jsonl"):
        if path.stem.lstrip("-").isdigit():
            out[int(path.stem)] = path
    return out


def resolve_dump(path: Path, step: int | None) -> Path:
    """The dump file: ``path`` itself, or ``<path>/<step>.jsonl`` (the newest step when ``step`` is None)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise EvalTableError(f"generations path {path} does not exist (expected verl's trainer.validation_data_dir)")
    files = _step_files(path)
    if not files:
        raise EvalTableError(
            f"{path} holds no <step>.jsonl file: it is not a verl validation dump (set trainer.validation_data_dir "
            "and check that the validation ran)"
        )
    if step is None:
        return files[max(files)]
    if step not in files:
        raise EvalTableError(f"{path} has no dump for step {step}; steps present: {sorted(files)}")
    return files[step]


def read_dump(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalTableError(f"{path} line {lineno} is not JSON ({err}); the dump is truncated or corrupt") from None
            if not isinstance(row, dict):
                raise EvalTableError(f"{path} line {lineno} is not a JSON object")
            rows.append(row)
    if not rows:
        raise EvalTableError(f"{path} is empty: the validation produced no responses")
    return rows


def _as_acc(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise EvalTableError(f"{where}: 'acc' is {value!r}, not a number; the reward function must return acc 0/1")
    return float(value)


def official_acc(row: Mapping[str, Any], where: str) -> float:
    """Re-score one dumped response with the verifiers' ``official`` mode."""
    import reward_fns

    missing = [k for k in ("output", "gts", TAG_DATA_SOURCE, TAG_EXTRA_INFO) if k not in row]
    if missing:
        raise EvalTableError(
            f"{where} lacks {missing}, needed by --rescore official; the dump must come from the evaluation reward "
            "(reward.custom_reward_function.path=pkg://recipe_care.eval_table, as run_scripts/eval_benchmarks.sh sets)"
        )
    try:
        info = json.loads(row[TAG_EXTRA_INFO]) if row[TAG_EXTRA_INFO] else {}
    except (TypeError, json.JSONDecodeError):
        raise EvalTableError(f"{where}: {TAG_EXTRA_INFO} is not a JSON object ({row[TAG_EXTRA_INFO]!r:.80})") from None
    try:
        result = reward_fns.compute_score(row[TAG_DATA_SOURCE], row["output"], row["gts"], info, mode="official")
    except Exception as err:  # bad record / unknown source: name the record
        raise EvalTableError(f"{where}: official re-score failed: {err}") from err
    return float(result["acc"])


def scores_from_dump(rows: Sequence[Mapping[str, Any]], path: Path, rescore: str | None) -> dict[str, SourceScore]:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"{path} line {i + 1}"
        ds = row.get(TAG_DATA_SOURCE, row.get("data_source"))
        if not isinstance(ds, str) or not ds:
            raise EvalTableError(
                f"{where} has no data source: verl's dump only carries the reward dict's keys. Evaluate with "
                "run_scripts/eval_benchmarks.sh (its reward, pkg://recipe_care.eval_table, adds "
                f"'{TAG_DATA_SOURCE}'), or table the metrics instead: --metrics <VERL_FILE_LOGGER_PATH file>"
            )
        if rescore == "official":
            acc = official_acc(row, where)
        else:
            if "acc" not in row:
                keys = ", ".join(sorted(row))
                raise EvalTableError(
                    f"{where} has no 'acc' (keys: {keys}); the table uses acc, never score: score with the project's "
                    "verifiers (pkg://reward_fns or pkg://recipe_care.eval_table), which return acc"
                )
            acc = _as_acc(row["acc"], where)
        sums[ds] = sums.get(ds, 0.0) + acc
        counts[ds] = counts.get(ds, 0) + 1
    return {ds: SourceScore(ds, sums[ds] / counts[ds], sums[ds], counts[ds]) for ds in sorted(counts)}


def read_metrics(path: Path, step: int | None) -> tuple[int, dict[str, SourceScore], int]:
    """``(step, scores, n)`` from the file logger's JSON Lines: the newest step with ``val-core/*/acc`` metrics."""
    if not path.is_file():
        raise EvalTableError(f"metrics file {path} does not exist (verl's file logger writes VERL_FILE_LOGGER_PATH)")
    by_step: dict[int, dict[str, tuple[float, int]]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entry_step, data = int(entry["step"]), entry["data"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise EvalTableError(
                    f"{path} line {lineno} is not a verl file-logger record {{'step': N, 'data': {{...}}}}"
                ) from None
            for key, value in data.items():
                m = METRIC_RE.match(key)
                if m and isinstance(value, (int, float)):
                    by_step.setdefault(entry_step, {})[m["ds"]] = (float(value), int(m["n"]))
    if not by_step:
        raise EvalTableError(
            f"{path} has no val-core/<data_source>/acc/mean@N metric: no validation was logged, or the reward "
            "returned no 'acc' (verl then logs val-core/<data_source>/reward, which this table does not use)"
        )
    if step is None:
        step = max(by_step)
    elif step not in by_step:
        raise EvalTableError(f"{path} has no validation metrics at step {step}; steps with them: {sorted(by_step)}")
    metrics = by_step[step]
    ns = {n for _, n in metrics.values()}
    return step, {ds: SourceScore(ds, acc) for ds, (acc, _) in sorted(metrics.items())}, max(ns)


def expected_rows(val_files: Iterable[str]) -> dict[str, int]:
    """Rows per data source in the evaluated parquet files (only the ``data_source`` column is read)."""
    import pyarrow.parquet as pq

    out: dict[str, int] = {}
    for name in val_files:
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        column = pq.read_table(path, columns=["data_source"]).column("data_source").to_pylist()
        for ds in column:
            out[ds] = out.get(ds, 0) + 1
    return out


# --------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------


def load_settings(explicit: Path | None, dump_path: Path | None) -> tuple[dict[str, Any], str | None]:
    candidates = []
    if explicit is not None:
        if not explicit.is_file():
            raise EvalTableError(f"settings file {explicit} does not exist")
        candidates.append(explicit)
    elif dump_path is not None:
        folder = dump_path if dump_path.is_dir() else dump_path.parent
        candidates += [folder / SETTINGS_FILE, folder.parent / SETTINGS_FILE]
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise EvalTableError(f"settings file {path} is not JSON: {err}") from None
            if not isinstance(data, dict):
                raise EvalTableError(f"settings file {path} must hold a JSON object")
            return data, str(path)
    return {}, None


def apply_cli_settings(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    out = dict(settings)
    for key in SETTING_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def check_settings(settings: Mapping[str, Any], label: str) -> None:
    missing = [k for k in REQUIRED_SETTINGS if settings.get(k) is None]
    if missing:
        flags = " ".join(f"--{k.replace('_', '-')} X" for k in missing)
        raise EvalTableError(
            f"run {label!r}: decoding settings {missing} are unknown; pass --settings FILE (the eval_settings.json "
            f"run_scripts/eval_benchmarks.sh writes) or {flags}"
        )


# --------------------------------------------------------------------------------------------------------------
# Building runs and the table
# --------------------------------------------------------------------------------------------------------------


def split_label(spec: str) -> tuple[str | None, Path]:
    label, sep, rest = spec.partition("=")
    if sep and label and "/" not in label and rest:
        return label, Path(rest)
    return None, Path(spec)


def _labelled(specs: Sequence[str] | None, what: str) -> dict[str | None, Path]:
    out: dict[str | None, Path] = {}
    for spec in specs or []:
        label, path = split_label(spec)
        if label in out:
            raise EvalTableError(f"{what}: two entries for run {label or '(unlabelled)'}; label them LABEL=PATH")
        out[label] = path
    return out


def _default_label(path: Path) -> str:
    folder = path if path.is_dir() else path.parent
    return folder.parent.name if folder.name in ("generations", "validation") else folder.name


def build_run(
    label: str,
    dump: Path | None,
    metrics: Path | None,
    settings_path: Path | None,
    args: argparse.Namespace,
) -> Run:
    settings, settings_origin = load_settings(settings_path, dump if dump is not None else metrics)
    settings = apply_cli_settings(settings, args)
    origin_parts, notes = [], []
    scores: dict[str, SourceScore]
    if dump is not None:
        dump_file = resolve_dump(dump, args.step)
        rows = read_dump(dump_file)
        scores = scores_from_dump(rows, dump_file, args.rescore)
        origin_parts.append(f"{dump_file} ({len(rows)} responses)")
        if metrics is not None:
            step, metric_scores, _ = read_metrics(metrics, args.step)
            original = scores if args.rescore is None else scores_from_dump(rows, dump_file, None)
            for ds, ms in metric_scores.items():
                if ds in original and abs(original[ds].accuracy - ms.accuracy) > CROSS_CHECK_TOL:
                    raise EvalTableError(
                        f"run {label!r}: {ds} accuracy {original[ds].accuracy:.6f} in {dump_file} but "
                        f"{ms.accuracy:.6f} in {metrics} (step {step}): the two files come from different runs or "
                        "steps; pass the matching pair or --step"
                    )
            only_metrics = sorted(set(metric_scores) - set(original))
            if only_metrics:
                notes.append(f"in the metrics but not in the dump: {', '.join(only_metrics)}")
            origin_parts.append(f"cross-checked with {metrics} (step {step})")
    elif metrics is not None:
        step, scores, n_metric = read_metrics(metrics, args.step)
        if args.rescore:
            raise EvalTableError("--rescore needs the generations dump (--generations): the metrics hold no responses")
        settings.setdefault("n", n_metric)
        origin_parts.append(f"{metrics} (step {step}; accuracies only, no counts)")
    else:
        raise EvalTableError(f"run {label!r} has neither --generations nor --metrics")
    check_settings(settings, label)
    if settings_origin:
        origin_parts.append(f"settings from {settings_origin}")
    expected = expected_rows(settings.get("val_files") or [])
    n_samples = int(settings.get("n") or 1)
    for ds, score in scores.items():
        if ds in expected:
            score.expected = expected[ds] * n_samples
            if score.n is not None and score.n != score.expected:
                notes.append(
                    f"{ds}: {score.n} responses scored, {score.expected} expected from the data file (verl drops "
                    "rows whose prompt exceeds data.max_prompt_length; the accuracy is over the scored responses)"
                )
    scoring = (
        "official re-score (reward_fns mode=official) of the dumped responses"
        if args.rescore == "official"
        else f"acc from the run's verifier (reward_fns mode={settings.get('verifier_mode', 'train')})"
    )
    return Run(label, scores, settings, scoring, "; ".join(origin_parts), notes)


@dataclass
class BenchmarkRow:
    name: str
    accuracy: float | None
    sources: list[str]
    note: str = ""


def benchmark_rows(run: Run) -> tuple[list[BenchmarkRow], float | None, list[str]]:
    rows, missing = [], []
    for name, sources in BENCHMARKS:
        present = [ds for ds in sources if ds in run.sources]
        if not present:
            rows.append(BenchmarkRow(name, None, [], "missing"))
            missing.append(name)
            continue
        if name in MEAN_OF_SOURCES:
            acc = sum(run.sources[ds].accuracy for ds in present) / len(present)
            note = "" if len(present) == len(sources) else f"only {', '.join(present)}"
            rows.append(BenchmarkRow(name, acc, present, note))
        else:
            chosen = present[0]
            note = f"{', '.join(present[1:])} listed apart" if len(present) > 1 else ""
            rows.append(BenchmarkRow(name, run.sources[chosen].accuracy, [chosen], note))
    macro = None if missing else sum(r.accuracy for r in rows) / len(rows)  # type: ignore[misc]
    return rows, macro, missing


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100.0 * value:.2f}"


def _count(score: SourceScore) -> str:
    if score.n is None:
        return ""
    text = f"{score.correct:g}/{score.n}"
    if score.expected is not None and score.expected != score.n:
        text += f" of {score.expected} expected"
    return text


def render_markdown(runs: Sequence[Run]) -> str:
    labels = [r.label for r in runs]
    per_run = [benchmark_rows(r) for r in runs]
    head = "| benchmark | data source(s) | " + " | ".join(labels) + " |"
    sep = "|---|---|" + "---:|" * len(runs)
    lines = ["# Evaluation: accuracy (%) per benchmark", "", head, sep]
    for b_index, (name, sources) in enumerate(BENCHMARKS):
        cells = []
        for rows, _, _ in per_run:
            row = rows[b_index]
            cell = _pct(row.accuracy) if row.accuracy is not None else "—"
            cells.append(cell + (f" ({row.note})" if row.note and row.note != "missing" else ""))
        desc = "mean of " + ", ".join(sources) if name in MEAN_OF_SOURCES else " or ".join(sources)
        lines.append(f"| {name} | {desc} | " + " | ".join(cells) + " |")
    macro_cells = []
    for _, macro, missing in per_run:
        macro_cells.append(f"**{_pct(macro)}**" if macro is not None else f"— (missing: {', '.join(missing)})")
    lines.append(f"| **Macro average** | unweighted mean of the {len(BENCHMARKS)} benchmarks | " + " | ".join(macro_cells) + " |")

    lines += ["", "## Per data source", "", "| data source | benchmark | " + " | ".join(labels) + " |", "|---|---|" + "---:|" * len(runs)]
    order = [ds for _, sources in BENCHMARKS for ds in sources]
    all_sources = sorted({ds for r in runs for ds in r.sources}, key=lambda d: (order.index(d) if d in order else len(order), d))
    for ds in all_sources:
        cells = []
        for run in runs:
            score = run.sources.get(ds)
            if score is None:
                cells.append("—")
            else:
                count = _count(score)
                cells.append(_pct(score.accuracy) + (f" ({count})" if count else ""))
        lines.append(f"| {ds} | {BENCHMARK_OF.get(ds, '(not in the macro average)')} | " + " | ".join(cells) + " |")

    lines += ["", "## Decoding and scoring", "", "| setting | " + " | ".join(labels) + " |", "|---|" + "---|" * len(runs)]
    keys = list(SETTING_KEYS) + sorted(
        {k for r in runs for k in r.settings if k not in SETTING_KEYS and k not in ("val_files",)}
    )
    for key in keys:
        values = [r.settings.get(key) for r in runs]
        if all(v is None for v in values):
            continue
        lines.append(f"| {key} | " + " | ".join("" if v is None else str(v) for v in values) + " |")
    lines.append("| scoring | " + " | ".join(r.scoring for r in runs) + " |")
    lines.append("| read from | " + " | ".join(r.origin for r in runs) + " |")
    notes = [f"- {r.label}: {note}" for r in runs for note in r.notes]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "run", "row", "benchmark", "data_source", "accuracy_pct", "correct", "n", "expected",
    "temperature", "top_p", "top_k", "n_samples", "do_sample", "max_response_length", "scoring", "note",
)


def csv_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        s = run.settings
        common = {
            "run": run.label, "temperature": s.get("temperature"), "top_p": s.get("top_p"), "top_k": s.get("top_k"),
            "n_samples": s.get("n"), "do_sample": s.get("do_sample"),
            "max_response_length": s.get("max_response_length"), "scoring": run.scoring,
        }
        for ds in sorted(run.sources):
            score = run.sources[ds]
            out.append({**common, "row": "data_source", "benchmark": BENCHMARK_OF.get(ds, ""), "data_source": ds,
                        "accuracy_pct": _pct(score.accuracy),
                        "correct": "" if score.correct is None else f"{score.correct:g}",
                        "n": "" if score.n is None else score.n,
                        "expected": "" if score.expected is None else score.expected, "note": ""})
        rows, macro, missing = benchmark_rows(run)
        for row in rows:
            out.append({**common, "row": "benchmark", "benchmark": row.name, "data_source": "+".join(row.sources),
                        "accuracy_pct": _pct(row.accuracy), "correct": "", "n": "", "expected": "", "note": row.note})
        out.append({**common, "row": "macro", "benchmark": "macro average", "data_source": "",
                    "accuracy_pct": _pct(macro), "correct": "", "n": "", "expected": "",
                    "note": f"missing: {', '.join(missing)}" if missing else f"mean of {len(rows)} benchmarks"})
    return out


def write_outputs(runs: Sequence[Run], out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    md_path.write_text(render_markdown(runs), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in csv_rows(runs):
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return md_path, csv_path


def build_runs(args: argparse.Namespace) -> list[Run]:
    gens = _labelled(args.generations, "--generations")
    mets = _labelled(args.metrics, "--metrics")
    sets = _labelled(args.settings, "--settings")
    labels = list(dict.fromkeys([*gens, *mets]))
    if not labels:
        raise EvalTableError("give --generations DIR (verl's validation dump) and/or --metrics FILE")
    if len(labels) > 1 and None in labels:
        raise EvalTableError("with several runs, label every path: --generations care=DIR grpo=DIR")
    if len(labels) > 1 and None in sets:
        raise EvalTableError("with several runs, label every --settings file too: --settings care=FILE grpo=FILE")
    runs = []
    for label in labels:
        dump, metrics = gens.get(label), mets.get(label)
        settings = sets.get(label) if label in sets else sets.get(None)
        name = label or args.label or _default_label(dump if dump is not None else metrics)  # type: ignore[arg-type]
        runs.append(build_run(name, dump, metrics, settings, args))
    unknown = set(sets) - set(labels) - {None}
    if unknown:
        raise EvalTableError(f"--settings for unknown run(s) {sorted(unknown)}; runs: {[r.label for r in runs]}")
    return runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m recipe_care.eval_table",
        description="Per-benchmark accuracy and the macro average from verl's validation outputs (Markdown + CSV).",
    )
    parser.add_argument("--generations", nargs="+", metavar="[LABEL=]PATH",
                        help="verl validation dump: trainer.validation_data_dir folder or one <step>.jsonl")
    parser.add_argument("--metrics", nargs="+", metavar="[LABEL=]FILE",
                        help="verl file-logger JSON Lines (VERL_FILE_LOGGER_PATH) with val-core/*/acc metrics")
    parser.add_argument("--settings", nargs="+", metavar="[LABEL=]FILE",
                        help=f"decoding settings JSON (default: {SETTINGS_FILE} beside the dump)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for <name>.md and <name>.csv")
    parser.add_argument("--name", default=None, help="output file stem (default eval_table[_official])")
    parser.add_argument("--label", default=None, help="column label of a single unlabelled run")
    parser.add_argument("--step", type=int, default=None, help="global step to table (default: the newest)")
    parser.add_argument("--rescore", choices=["official"], default=None,
                        help="recompute acc with reward_fns.compute_score(..., mode='official')")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-p", dest="top_p", type=float, default=None)
    parser.add_argument("--top-k", dest="top_k", type=int, default=None)
    parser.add_argument("--n", type=int, default=None, help="samples per prompt (val_kwargs.n)")
    parser.add_argument("--max-response-length", dest="max_response_length", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = build_runs(args)
        name = args.name or ("eval_table_official" if args.rescore == "official" else "eval_table")
        md_path, csv_path = write_outputs(runs, args.out, name)
    except EvalTableError as err:
        print(f"[eval_table] error: {err}", file=sys.stderr)
        return 2
    print(md_path.read_text(encoding="utf-8"))
    print(f"[eval_table] wrote {md_path} and {csv_path}")
    for run in runs:
        for note in run.notes:
            print(f"[eval_table] note ({run.label}): {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
