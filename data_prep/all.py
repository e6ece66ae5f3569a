"""Prepare every dataset: Geometry3K train/test and the six benchmarks (ten parquet files).

    python -m data_prep.all --out DIR                      # everything from the Hugging Face Hub (streaming)
    python -m data_prep.all --out DIR --local-root ROOT    # local copies: ROOT/<folder>/ per output (see below)
    python -m data_prep.all --out DIR --only mathvista_testmini,wemath_testmini

With ``--local-root``, each output is read from the first existing folder among its names below (the fixture
layout ``tests/fixtures/benchmarks/`` works as is); every folder may hold anything ``--local-path`` accepts. An
output whose folder is missing is an error unless ``--skip-missing`` is given (then it is listed as missing).

Writes ``<out>/<stem>.parquet`` + ``<stem>.report.json`` per output and ``<out>/summary.json``. Exit status: 0 when
every output is ok, 1 when one skipped more than ``--max-skip-frac``, 2 when a source could not be opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_prep import geometry3k, logicvista, mathverse, mathvision, mathvista, mmmu_pro, wemath
from data_prep.core import Spec, add_common_arguments, prepare, summarize
from data_prep.sources import SourceError


def _single(module) -> Callable[[], Spec]:
    return lambda: module.build_specs(argparse.Namespace())[0]


#: stem -> (spec factory, local folder names tried under --local-root, in order)
JOBS: dict[str, tuple[Callable[[], Spec], tuple[str, ...]]] = {
    "geometry3k_train": (lambda: geometry3k.make_spec("train"), ("geometry3k_train", "geometry3k")),
    "geometry3k_test": (lambda: geometry3k.make_spec("test"), ("geometry3k_test", "geometry3k")),
    "mathvista_testmini": (_single(mathvista), ("mathvista_testmini", "mathvista")),
    "mmmu_pro_standard10": (lambda: mmmu_pro.make_spec("standard10"), ("mmmu_pro_standard10",)),
    "mmmu_pro_vision": (lambda: mmmu_pro.make_spec("vision"), ("mmmu_pro_vision",)),
    "mathverse_testmini": (_single(mathverse), ("mathverse_testmini", "mathverse")),
    "mathvision_test": (lambda: mathvision.make_spec("test"), ("mathvision_test", "mathvision")),
    "mathvision_testmini": (lambda: mathvision.make_spec("testmini"), ("mathvision_testmini",)),
    "wemath_testmini": (_single(wemath), ("wemath_testmini", "wemath")),
    "logicvista_test": (_single(logicvista), ("logicvista_test", "logicvista")),
}

#: The evaluation outputs (everything but Geometry3K train).
VALIDATION_STEMS = tuple(s for s in JOBS if s != "geometry3k_train")


def _parse_only(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in JOBS]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"--only takes a comma-separated subset of {list(JOBS)}; unknown: {bad}")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.all", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument("--local-root", default=None, help="folder with one local copy per output (see above)")
    parser.add_argument("--only", type=_parse_only, default=list(JOBS), help=f"subset of {', '.join(JOBS)}")
    parser.add_argument("--skip-missing", action="store_true", help="with --local-root: skip outputs with no folder")
    args = parser.parse_args(argv)
    if args.local_path:
        parser.error("data_prep.all reads several datasets: use --local-root (one folder per output), not --local-path")
    if not 0.0 <= args.max_skip_frac <= 1.0:
        parser.error("--max-skip-frac must be between 0 and 1")

    status = 0
    summary: dict[str, Any] = {}
    for stem in args.only:
        factory, folders = JOBS[stem]
        spec = factory()
        local = None
        if args.local_root:
            root = Path(args.local_root).expanduser()
            found = [root / f for f in folders if (root / f).exists()]
            if not found:
                msg = f"no local copy for {stem}: none of {[str(root / f) for f in folders]} exists"
                summary[stem] = {"status": "missing", "detail": msg}
                if args.skip_missing:
                    print(f"skip: {msg}", file=sys.stderr)
                    continue
                print(f"error: {msg} (add it, or pass --skip-missing / --only)", file=sys.stderr)
                status = max(status, 2)
                continue
            local = found[0]
        try:
            report = prepare(
                spec,
                args.out,
                local_path=local,
                image_root=args.image_root,
                hf_id=None,
                max_skip_frac=args.max_skip_frac,
                limit=args.limit,
                rows_per_group=args.rows_per_group,
                progress=not args.quiet,
            )
        except SourceError as exc:
            print(f"error: {stem}: {exc}", file=sys.stderr)
            summary[stem] = {"status": "source_error", "detail": str(exc)}
            status = max(status, 2)
            continue
        print(summarize(report))
        summary[stem] = {
            "status": "ok" if report["ok"] else "too_many_skipped",
            "output": report["output"],
            "records_read": report["records_read"],
            "rows_written": report["rows_written"],
            "skipped_by_reason": report["skipped_by_reason"],
            "repaired_by_rule": report["repaired_by_rule"],
        }
        if not report["ok"]:
            print(
                f"error: {stem}: skipped {report['skipped']}/{report['records_read']} ({report['skip_frac']:.1%}) "
                f"> --max-skip-frac {args.max_skip_frac}",
                file=sys.stderr,
            )
            status = max(status, 1)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
