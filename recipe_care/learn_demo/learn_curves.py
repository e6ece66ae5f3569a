"""Curves, summary table and picture of the CPU learning run (``run_scripts/cpu_learn.sh``).

``python -m recipe_care.learn_demo.learn_curves run --metrics RUN/metrics.jsonl --out RUN/curves.csv``
    reads verl's file-logger lines (``{"step": N, "data": {...}}``) and writes one row per validation: ``step``,
    ``train_reward`` (mean ``critic/score/mean`` of the training steps since the previous row; empty at step 0, before
    any update), ``val_acc`` and ``val_format`` (validation means of the verifier's ``acc`` and ``format``), then
    ``seconds_per_step`` and every ``care/*``, ``signal/*`` and ``rgr/*`` metric, each averaged over the same training
    steps as ``train_reward``.

``python -m recipe_care.learn_demo.learn_curves summary --root DIR``
    reads every ``DIR/<run>/curves.csv`` (runs named ``<estimator>-seed<seed>[-<variant>]``, with ``run.json`` written
    by the script beside it) and writes ``DIR/summary.md`` (start / end / best validation accuracy per estimator and
    seed, first step at the target accuracy, steps, seconds per step, wall time, ``signal/fail_adv_share``, RGR
    triggers and pass rate) and ``DIR/curves.png`` (validation accuracy and training reward against the step, every
    run).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

BASE_COLUMNS = ["step", "train_reward", "val_acc", "val_format", "seconds_per_step"]
METRIC_PREFIXES = ("care/", "signal/", "rgr/")
TRAIN_REWARD_KEY = "critic/score/mean"
STEP_TIME_KEY = "timing_s/step"
TARGET_ACC = 0.70


def _val_value(data: dict, metric: str) -> float | None:
    """The validation mean of a reward key (verl: ``val-core/<source>/acc/mean@1``, ``val-aux/.../format/...``)."""
    values = [v for k, v in data.items() if k.startswith("val-") and k.split("/")[-2:-1] == [metric]
              and k.split("/")[-1].startswith("mean@")]
    return float(values[0]) if values else None


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def read_metrics(path) -> list[tuple[int, dict]]:
    lines = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            lines.append((int(record["step"]), dict(record["data"])))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{n}: not a verl file-logger line ({err}); expected {{'step': N, 'data': {{}}}}")
    return lines


def curve_rows(records: list[tuple[int, dict]]) -> list[dict]:
    """One row per validation (see the module docstring)."""
    keys = sorted({k for _, d in records for k in d if k.startswith(METRIC_PREFIXES)})
    rows, window = [], []
    for step, data in records:
        if TRAIN_REWARD_KEY in data:
            window.append(data)
        acc = _val_value(data, "acc")
        if acc is None:
            continue
        row = {
            "step": step,
            "train_reward": _mean([d.get(TRAIN_REWARD_KEY) for d in window]),
            "val_acc": acc,
            "val_format": _val_value(data, "format"),
            "seconds_per_step": _mean([d.get(STEP_TIME_KEY) for d in window]),
        }
        for key in keys:
            row[key] = _mean([d.get(key) for d in window])
        rows.append(row)
        window = []
    if not rows:
        raise ValueError("no validation line in the metrics (did the run validate? trainer.val_before_train=True)")
    return rows


def write_csv(rows: list[dict], path) -> None:
    columns = BASE_COLUMNS + [k for k in rows[0] if k not in BASE_COLUMNS]
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                             for k in columns})


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)]


# ---------------------------------------------------------------------------------------------------------------------
# summary over runs
# ---------------------------------------------------------------------------------------------------------------------


def _run_info(run_dir: Path) -> dict:
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    name = run_dir.name
    info.setdefault("run", name)
    info.setdefault("estimator", name.split("-")[0])
    return info


def summarize_run(run_dir: Path) -> dict:
    rows = read_csv(run_dir / "curves.csv")
    info = _run_info(run_dir)
    accs = [r["val_acc"] for r in rows]
    hit = next((int(r["step"]) for r in rows if r["val_acc"] >= TARGET_ACC), None)
    totals = {}
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.is_file():  # sums over every training step (the csv holds window means)
        for _, data in read_metrics(metrics_path):
            for key in ("rgr/triggered", "rgr/passed", STEP_TIME_KEY):
                if key in data:
                    totals[key] = totals.get(key, 0.0) + float(data[key])
            if TRAIN_REWARD_KEY in data:
                totals["steps"] = totals.get("steps", 0) + 1
    share = _mean([r.get("signal/fail_adv_share") for r in rows])
    triggered = totals.get("rgr/triggered")
    return {
        **info,
        "start": accs[0],
        "end": accs[-1],
        "best": max(accs),
        "end_format": rows[-1]["val_format"],
        "min_format": min(r["val_format"] for r in rows if r["val_format"] is not None),
        "first_step_at_target": hit,
        "steps": int(rows[-1]["step"]),
        "seconds_per_step": (totals[STEP_TIME_KEY] / totals["steps"]) if totals.get("steps") else None,
        "fail_adv_share": share,
        "rgr_triggered": triggered,
        "rgr_pass_rate": (totals.get("rgr/passed", 0.0) / triggered) if triggered else None,
    }


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_markdown(runs: list[dict]) -> str:
    lines = [
        f"| run | estimator | seed | val acc start | end | best | first step ≥ {TARGET_ACC:.2f} | val format end (min) "
        "| steps | s/step | wall s | signal/fail_adv_share | RGR triggered | RGR pass rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['run']} | {r['estimator']} | {_fmt(r.get('seed'))} | {_fmt(r['start'])} | {_fmt(r['end'])} "
            f"| {_fmt(r['best'])} | {_fmt(r['first_step_at_target'])} | {_fmt(r['end_format'])} "
            f"({_fmt(r['min_format'])}) | {r['steps']} | {_fmt(r['seconds_per_step'])} | {_fmt(r.get('wall_s'), 0)} "
            f"| {_fmt(r['fail_adv_share'])} | {_fmt(r['rgr_triggered'], 0)} | {_fmt(r['rgr_pass_rate'])} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[tuple[dict, list[dict]]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"care": "tab:red", "grpo": "tab:blue"}
    styles = ["-", "--", ":", "-."]
    fig, (ax_acc, ax_rew) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    keys = sorted({(str(info.get("seed")), str(info.get("variant", ""))) for info, _ in runs})
    for info, rows in runs:
        colour = colours.get(info["estimator"], "tab:gray")
        style = styles[keys.index((str(info.get("seed")), str(info.get("variant", "")))) % len(styles)]
        label = f"{info['estimator']} seed {info.get('seed')}" + (f" {info['variant']}" if info.get("variant") else "")
        steps = [r["step"] for r in rows]
        ax_acc.plot(steps, [r["val_acc"] for r in rows], style, color=colour, marker="o", ms=3, label=label)
        train = [(r["step"], r["train_reward"]) for r in rows if r["train_reward"] is not None]
        if train:
            ax_rew.plot(*zip(*train), style, color=colour, label=label)
    chance = runs[0][0].get("chance")
    for ax, title in ((ax_acc, "validation accuracy (held-out, greedy)"), (ax_rew, "training reward (verl score, mean since last row)")):
        if chance is not None:
            ax.axhline(chance, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("RL step")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    ax_acc.axhline(TARGET_ACC, color="black", lw=0.6, ls="--")
    ax_acc.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summarize(root) -> str:
    root = Path(root)
    run_dirs = sorted(p.parent for p in root.glob("*/curves.csv"))
    if not run_dirs:
        raise FileNotFoundError(f"no <run>/curves.csv under {root}; run run_scripts/cpu_learn.sh first")
    runs = [summarize_run(d) for d in run_dirs]
    runs.sort(key=lambda r: (str(r.get("variant", "")), str(r.get("seed")), r["estimator"]))
    text = summary_markdown(runs)
    (root / "summary.md").write_text(
        "# CPU learning run: validation accuracy on held-out items\n\n"
        f"Chance: {_fmt(runs[0].get('chance'))}. Target: {TARGET_ACC:.2f}. Produced by run_scripts/cpu_learn.sh; "
        "s/step is verl's timing_s/step (mean over training steps), wall s the whole verl command.\n\n" + text
    )
    plot([(_run_info(d), read_csv(d / "curves.csv")) for d in run_dirs], root / "curves.png")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="metrics.jsonl -> curves.csv")
    run.add_argument("--metrics", required=True)
    run.add_argument("--out", required=True)
    summ = sub.add_parser("summary", help="every <run>/curves.csv under --root -> summary.md + curves.png")
    summ.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        write_csv(curve_rows(read_metrics(args.metrics)), args.out)
        print(args.out)
    else:
        print(summarize(args.root), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
