"""Reading verl's evaluation outputs into runs: the validation dump, the file logger's metrics, the decoding settings.

* the dump verl writes with ``trainer.validation_data_dir`` (``<step>.jsonl``, one line per response: ``input``,
  ``output``, ``gts``, ``score``, ``step`` and every key of the reward dict, among them ``acc``). verl's dump has no
  ``data_source``; the evaluation reward ``reward_fns.evaluation.compute_score`` adds it (with the record id and its
  verifier fields). A folder means its newest step, or ``step``.
* the ``file`` logger's JSON Lines (``VERL_FILE_LOGGER_PATH``) with ``val-core/<data_source>/acc/mean@N``: alone it
  gives the accuracies (no counts); with a dump it is a cross-check.
* the decoding settings (``eval_settings.json`` beside the dump, ``--settings`` or flags); its ``val_files`` give each
  source's expected row count, so rows verl dropped are reported.

Accuracy is the mean of ``acc`` (never ``score``, which may carry a format bonus); ``rescore="official"`` recomputes
``acc`` with ``reward_fns.compute_score(..., mode="official")``. Under official scoring, a source whose official rule
needs the benchmark's own answer template (We-Math, :mod:`recipe_care.eval.benchmarks`) also gets the number of its
responses in that template and the train rule's accuracy, for the table to judge comparability.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from recipe_care.eval.benchmarks import TEMPLATE_OF
from reward_fns.evaluation import TAG_DATA_SOURCE, TAG_EXTRA_INFO

SETTING_KEYS = ("temperature", "top_p", "top_k", "n", "do_sample", "max_response_length")
REQUIRED_SETTINGS = ("temperature", "top_p", "n", "max_response_length")
SETTINGS_FILE = "eval_settings.json"
METRIC_RE = re.compile(r"^val-core/(?P<ds>.+)/acc/mean@(?P<n>\d+)$")
CROSS_CHECK_TOL = 1e-6
EVAL_REWARD = "reward.custom_reward_function.path=pkg://reward_fns.evaluation"


class EvalTableError(ValueError):
    """Bad or inconsistent input; the message names the file/record and the fix."""


@dataclass
class SourceScore:
    data_source: str
    accuracy: float  # fraction in [0, 1]
    correct: float | None = None  # sum of acc (None when the accuracy comes from metrics only)
    n: int | None = None  # responses scored
    expected: int | None = None  # rows of the data file x n samples
    # official scoring of a template-bound source (We-Math) only; None otherwise
    in_template: int | None = None  # responses in which the official rule found an answer
    train_rule_accuracy: float | None = None  # the same responses under reward_fns mode="train"


@dataclass
class Run:
    label: str
    sources: dict[str, SourceScore]
    settings: dict[str, Any]
    scoring: str
    origin: str
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# the validation dump
# --------------------------------------------------------------------------------------------------------------


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
                raise EvalTableError(
                    f"{path} line {lineno} is not JSON ({err}); the dump is truncated or corrupt"
                ) from None
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


def rescore_row(row: Mapping[str, Any], where: str, mode: str) -> dict:
    """Score one dumped response again with ``reward_fns.compute_score(..., mode=mode)`` (the record's fields come
    from the evaluation reward's ``eval_data_source`` / ``eval_extra_info``)."""
    import reward_fns

    missing = [k for k in ("output", "gts", TAG_DATA_SOURCE, TAG_EXTRA_INFO) if k not in row]
    if missing:
        raise EvalTableError(
            f"{where} lacks {missing}, needed to re-score it (mode={mode}); the dump must come from the evaluation "
            f"reward ({EVAL_REWARD}, as run_scripts/eval_benchmarks.sh sets)"
        )
    try:
        info = json.loads(row[TAG_EXTRA_INFO]) if row[TAG_EXTRA_INFO] else {}
    except (TypeError, json.JSONDecodeError):
        raise EvalTableError(f"{where}: {TAG_EXTRA_INFO} is not a JSON object ({row[TAG_EXTRA_INFO]!r:.80})") from None
    try:
        return reward_fns.compute_score(row[TAG_DATA_SOURCE], row["output"], row["gts"], info, mode=mode)
    except Exception as err:  # bad record / unknown source: name the record
        raise EvalTableError(f"{where}: {mode} re-score failed: {err}") from err


def scores_from_dump(
    rows: Sequence[Mapping[str, Any]], path: Path, rescore: str | None, verifier_mode: str = "train"
) -> dict[str, SourceScore]:
    """Per data source: the mean ``acc`` (re-scored when ``rescore="official"``). Under official scoring (a re-score,
    or a run scored with ``verifier_mode="official"``) a template-bound source also gets ``in_template`` and
    ``train_rule_accuracy``."""
    official = rescore == "official" or (rescore is None and verifier_mode == "official")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    in_template: dict[str, int] = {}
    train_sums: dict[str, float] = {}
    for i, row in enumerate(rows):
        where = f"{path} line {i + 1}"
        ds = row.get(TAG_DATA_SOURCE, row.get("data_source"))
        if not isinstance(ds, str) or not ds:
            raise EvalTableError(
                f"{where} has no data source: verl's dump only carries the reward dict's keys. Evaluate with "
                f"run_scripts/eval_benchmarks.sh (its reward, {EVAL_REWARD}, adds '{TAG_DATA_SOURCE}'), or table "
                "the metrics instead: --metrics <VERL_FILE_LOGGER_PATH file>"
            )
        need_official = rescore == "official" or (official and ds in TEMPLATE_OF)
        official_result = rescore_row(row, where, "official") if need_official else None
        if rescore == "official":
            acc = float(official_result["acc"])  # type: ignore[index]
        else:
            if "acc" not in row:
                keys = ", ".join(sorted(row))
                raise EvalTableError(
                    f"{where} has no 'acc' (keys: {keys}); the table uses acc, never score: score with the project's "
                    "verifiers (pkg://reward_fns or pkg://reward_fns.evaluation), which return acc"
                )
            acc = _as_acc(row["acc"], where)
        sums[ds] = sums.get(ds, 0.0) + acc
        counts[ds] = counts.get(ds, 0) + 1
        if official and ds in TEMPLATE_OF:
            in_template[ds] = in_template.get(ds, 0) + int(official_result["extracted"] == 1.0)  # type: ignore[index]
            train_sums[ds] = train_sums.get(ds, 0.0) + float(rescore_row(row, where, "train")["acc"])
    return {
        ds: SourceScore(
            ds,
            sums[ds] / counts[ds],
            sums[ds],
            counts[ds],
            in_template=in_template.get(ds),
            train_rule_accuracy=train_sums[ds] / counts[ds] if ds in train_sums else None,
        )
        for ds in sorted(counts)
    }


# --------------------------------------------------------------------------------------------------------------
# the file logger's metrics, the data files
# --------------------------------------------------------------------------------------------------------------


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
# decoding settings
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
# runs
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
    """One run from its dump and/or metrics file and its settings (``args``: ``step``, ``rescore`` and the setting
    flags of ``python -m recipe_care.eval_table``)."""
    settings, settings_origin = load_settings(settings_path, dump if dump is not None else metrics)
    settings = apply_cli_settings(settings, args)
    verifier_mode = str(settings.get("verifier_mode", "train"))
    origin_parts, notes = [], []
    scores: dict[str, SourceScore]
    if dump is not None:
        dump_file = resolve_dump(dump, args.step)
        rows = read_dump(dump_file)
        scores = scores_from_dump(rows, dump_file, args.rescore, verifier_mode)
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
        bound = sorted(ds for ds in scores if ds in TEMPLATE_OF)
        if verifier_mode == "official" and bound:
            notes.append(
                f"{', '.join(bound)}: scored by the official rule, which needs the benchmark's own answer template; "
                "without the dump the table cannot check that the responses used it (pass --generations)"
            )
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
        else f"acc from the run's verifier (reward_fns mode={verifier_mode})"
    )
    return Run(label, scores, settings, scoring, "; ".join(origin_parts), notes)


def build_runs(args: argparse.Namespace) -> list[Run]:
    """Every run named by ``--generations`` / ``--metrics`` (``LABEL=PATH`` for several), with its settings."""
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
