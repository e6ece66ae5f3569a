"""The evaluation table: per-benchmark accuracy and the macro average over the six benchmarks, from verl's outputs.

    python -m recipe_care.eval_table --generations OUT/generations --metrics OUT/metrics.jsonl \\
        --settings OUT/eval_settings.json --out OUT [--rescore official]
    python -m recipe_care.eval_table --generations care=A/generations grpo=B/generations --out CMP   # side by side

Inputs (``run_scripts/eval_benchmarks.sh`` writes all three and runs this command at the end):

* ``--generations``: verl's validation dump (``trainer.validation_data_dir``), scored by the evaluation reward
  ``reward_fns.evaluation.compute_score`` (it adds each record's data source, which verl's dump lacks). A folder
  means its newest step, or ``--step``.
* ``--metrics``: the ``file`` logger's JSON Lines (``VERL_FILE_LOGGER_PATH``) with
  ``val-core/<data_source>/acc/mean@N``. Alone it gives the accuracies (no counts); with a dump it is a cross-check.
* ``--settings``: the decoding settings (``eval_settings.json`` of the eval script; found next to the dump when not
  given). ``--temperature``, ``--top-p``, ``--top-k``, ``--n``, ``--max-response-length`` set or override them.

Accuracy is the mean of ``acc`` (never ``score``). ``--rescore official`` recomputes ``acc`` with
``reward_fns.compute_score(..., mode="official")``; there We-Math, whose official rule reads only answers in its own
template, is marked not comparable when most responses are not in it, with the train rule's accuracy beside it.
Writes ``<out>/<name>.md`` and ``<out>/<name>.csv`` (``name``: ``eval_table``, ``eval_table_official`` with the
re-score). Reading lives in :mod:`recipe_care.eval.read`, the table in :mod:`recipe_care.eval.table`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from recipe_care.eval.read import SETTINGS_FILE, EvalTableError, build_runs
from recipe_care.eval.table import summarize, write_outputs


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
        for row in summarize(run).rows:
            if not row.comparable:
                print(f"[eval_table] note ({run.label}): {row.name} {row.note} (see the table's notes)",
                      file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
