"""Rendering runs as the evaluation table: per-benchmark accuracy, the macro average, per-source counts, the decoding.

Step 1 (:func:`summarize`): each benchmark's number from its data sources (MMMU-Pro: the mean of its settings;
MATH-Vision: the first split present); the macro average is the unweighted mean of the six, given only when all six
are present and comparable. Step 2: an official score of a template-bound benchmark (We-Math) whose responses are
mostly not in its answer template is *not comparable* (:func:`recipe_care.eval.benchmarks.official_comparable`):
its row shows the train rule's accuracy beside the official one, and the macro average that uses the train rule is
a separate, labelled row. Step 3: Markdown (:func:`render_markdown`) and CSV (:func:`csv_rows`), written by
:func:`write_outputs` as ``<out>/<name>.md`` and ``<out>/<name>.csv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from recipe_care.eval.benchmarks import BENCHMARK_OF, BENCHMARKS, SOURCE_ORDER, TEMPLATE_OF, official_comparable
from recipe_care.eval.read import SETTING_KEYS, Run, SourceScore


@dataclass
class BenchmarkRow:
    name: str
    accuracy: float | None  # None: missing, or not comparable
    sources: list[str]
    note: str = ""
    comparable: bool = True
    official_accuracy: float | None = None  # not comparable: the official rule's accuracy, shown beside
    train_rule_accuracy: float | None = None  # not comparable: the train rule's accuracy, used instead


@dataclass
class Summary:
    rows: list[BenchmarkRow]
    macro: float | None  # None when a benchmark is missing or not comparable
    missing: list[str]
    not_comparable: list[str]
    macro_train_rule: float | None  # all present, some not comparable: the macro with their train-rule accuracy


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _template_check(scores: Sequence[SourceScore]) -> tuple[bool, str]:
    """(comparable, what was found) for the chosen sources of one benchmark."""
    bound = [s for s in scores if s.in_template is not None and s.n]
    if not bound or all(official_comparable(s.in_template, s.n) for s in bound):  # type: ignore[arg-type]
        return True, ""
    found = "; ".join(f"{s.in_template}/{s.n} responses in {TEMPLATE_OF[s.data_source]}" for s in bound)
    return False, found


def summarize(run: Run) -> Summary:
    rows, missing, not_comparable = [], [], []
    for bench in BENCHMARKS:
        present = [ds for ds in bench.sources if ds in run.sources]
        if not present:
            rows.append(BenchmarkRow(bench.name, None, [], "missing"))
            missing.append(bench.name)
            continue
        if bench.mean_of_sources:
            chosen, note = present, ("" if len(present) == len(bench.sources) else f"only {', '.join(present)}")
        else:
            chosen = present[:1]
            note = f"{', '.join(present[1:])} listed apart" if len(present) > 1 else ""
        scores = [run.sources[ds] for ds in chosen]
        accuracy = _mean([s.accuracy for s in scores])
        comparable, found = _template_check(scores)
        if comparable:
            rows.append(BenchmarkRow(bench.name, accuracy, chosen, note))
            continue
        train = _mean([s.train_rule_accuracy for s in scores])  # type: ignore[misc]
        not_comparable.append(bench.name)
        rows.append(BenchmarkRow(
            bench.name, None, chosen,
            f"not comparable: {found}; official rule {_pct(accuracy)}, train rule {_pct(train)}",
            comparable=False, official_accuracy=accuracy, train_rule_accuracy=train,
        ))
    macro = None if missing or not_comparable else _mean([r.accuracy for r in rows])  # type: ignore[misc]
    macro_train_rule = None
    if not missing and not_comparable:
        used = [r.accuracy if r.comparable else r.train_rule_accuracy for r in rows]
        macro_train_rule = _mean(used)  # type: ignore[arg-type]
    return Summary(rows, macro, missing, not_comparable, macro_train_rule)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100.0 * value:.2f}"


def _count(score: SourceScore) -> str:
    if score.n is None:
        return ""
    text = f"{score.correct:g}/{score.n}"
    if score.expected is not None and score.expected != score.n:
        text += f" of {score.expected} expected"
    if score.in_template is not None:
        text += f"; {score.in_template}/{score.n} in the answer template"
    return text


def _benchmark_cell(row: BenchmarkRow) -> str:
    if not row.comparable:
        return (f"not comparable (official rule {_pct(row.official_accuracy)}); "
                f"train rule: {_pct(row.train_rule_accuracy)}")
    cell = _pct(row.accuracy) if row.accuracy is not None else "—"
    return cell + (f" ({row.note})" if row.note and row.note != "missing" else "")


def _macro_cell(summary: Summary) -> str:
    if summary.macro is not None:
        return f"**{_pct(summary.macro)}**"
    if summary.missing:
        return f"— (missing: {', '.join(summary.missing)})"
    return f"— (not comparable: {', '.join(summary.not_comparable)})"


def _comparability_note(row: BenchmarkRow) -> str:
    return (
        f"{row.name}: {row.note.removeprefix('not comparable: ')}. Its official rule reads only answers in that "
        "template (the benchmark's own prompt asks for it; this recipe's prompt asks for `<think>…</think>"
        "<answer>…</answer>`), so the official number scores the format, not the answers, and is not comparable "
        f"with published {row.name} numbers. The benchmark row shows the train rule (the option letter or text in "
        "`<answer>`) instead, and the macro average with it is labelled (docs/run_scripts.md#evaluation)."
    )


def render_markdown(runs: Sequence[Run]) -> str:
    labels = [r.label for r in runs]
    summaries = [summarize(r) for r in runs]
    head = "| benchmark | data source(s) | " + " | ".join(labels) + " |"
    sep = "|---|---|" + "---:|" * len(runs)
    lines = ["# Evaluation: accuracy (%) per benchmark", "", head, sep]
    for index, bench in enumerate(BENCHMARKS):
        cells = [_benchmark_cell(s.rows[index]) for s in summaries]
        lines.append(f"| {bench.name} | {bench.describe_sources()} | " + " | ".join(cells) + " |")
    lines.append(f"| **Macro average** | unweighted mean of the {len(BENCHMARKS)} benchmarks | "
                 + " | ".join(_macro_cell(s) for s in summaries) + " |")
    if any(s.macro_train_rule is not None for s in summaries):
        names = sorted({name for s in summaries for name in s.not_comparable})
        cells = [f"**{_pct(s.macro_train_rule)}**" if s.macro_train_rule is not None else "— (= macro average)"
                 for s in summaries]
        lines.append(f"| **Macro average, {', '.join(names)} by the train rule** | the official rule elsewhere | "
                     + " | ".join(cells) + " |")

    lines += ["", "## Per data source", "", "| data source | benchmark | " + " | ".join(labels) + " |",
              "|---|---|" + "---:|" * len(runs)]
    all_sources = sorted({ds for r in runs for ds in r.sources},
                         key=lambda d: (SOURCE_ORDER.index(d) if d in SOURCE_ORDER else len(SOURCE_ORDER), d))
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

    lines += ["", "## Decoding and scoring", "", "| setting | " + " | ".join(labels) + " |",
              "|---|" + "---|" * len(runs)]
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
    notes += [f"- {r.label}: {_comparability_note(row)}"
              for r, s in zip(runs, summaries) for row in s.rows if not row.comparable]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "run", "row", "benchmark", "data_source", "accuracy_pct", "correct", "n", "expected", "in_template",
    "train_rule_pct", "temperature", "top_p", "top_k", "n_samples", "do_sample", "max_response_length", "scoring",
    "note",
)


def csv_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per data source, per benchmark and for the macro average (plus ``macro_train_rule`` when a benchmark
    is not comparable), each with the run's decoding settings."""
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
                        "expected": "" if score.expected is None else score.expected,
                        "in_template": "" if score.in_template is None else score.in_template,
                        "train_rule_pct": _pct(score.train_rule_accuracy), "note": ""})
        summary = summarize(run)
        for row in summary.rows:
            out.append({**common, "row": "benchmark", "benchmark": row.name, "data_source": "+".join(row.sources),
                        "accuracy_pct": _pct(row.accuracy), "train_rule_pct": _pct(row.train_rule_accuracy),
                        "note": row.note})
        if summary.missing:
            note = f"missing: {', '.join(summary.missing)}"
        elif summary.not_comparable:
            note = f"not comparable: {', '.join(summary.not_comparable)} (see macro_train_rule)"
        else:
            note = f"mean of {len(summary.rows)} benchmarks"
        out.append({**common, "row": "macro", "benchmark": "macro average", "accuracy_pct": _pct(summary.macro),
                    "note": note})
        if summary.macro_train_rule is not None:
            out.append({**common, "row": "macro_train_rule", "benchmark": "macro average",
                        "accuracy_pct": _pct(summary.macro_train_rule),
                        "note": f"{', '.join(summary.not_comparable)} by the train rule, the official rule elsewhere"})
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
