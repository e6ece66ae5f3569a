"""Prepare every dataset: Geometry3K train/test and the six benchmarks (ten parquet files).

    python -m data_prep.all --out DIR                      # everything from the Hugging Face Hub (streaming)
    python -m data_prep.all --out DIR --local-root ROOT    # local copies: ROOT/<folder>/ per output (see below)
    python -m data_prep.all --out DIR --only mathvista_testmini,wemath_testmini

With ``--local-root``, each output is read from the first folder that exists among: its own name (``ROOT/<stem>``,
e.g. ``ROOT/mmmu_pro_vision``), the script's name (``ROOT/mmmu_pro``) and the Hugging Face dataset's name
(``ROOT/MMMU_Pro``, the folder ``hf download MMMU/MMMU_Pro --repo-type dataset --local-dir ROOT/MMMU_Pro`` makes).
One download folder of MMMU-Pro, MATH-Vision or Geometry3K therefore serves all of that dataset's outputs; a shared
folder that holds a single table (``records.jsonl``, one file, a saved ``Dataset``) serves only the script's first
default output (``geometry3k_train``, ``mathvision_test``, ``mmmu_pro_standard10``), as ``--local-path`` does. The
fixture layout ``tests/fixtures/benchmarks/`` works as is. A folder may hold anything ``--local-path`` accepts. An
output with no folder is an error unless ``--skip-missing`` is given (then it is listed as missing).

Writes ``<out>/<stem>.parquet`` + ``<stem>.report.json`` per output and ``<out>/summary.json``. Exit status: 0 when
every output is ok, 1 when one skipped more than ``--max-skip-frac``, 2 when a source could not be opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep import geometry3k, logicvista, mathverse, mathvision, mathvista, mmmu_pro, wemath
from data_prep.cli import Script, add_common_arguments, check_common_arguments, run_spec
from data_prep.core import Spec


@dataclass(frozen=True)
class Job:
    """One output of ``data_prep.all``: a script and one of its choices (split or setting)."""

    script: Script
    choice: str

    @property
    def spec(self) -> Spec:
        return self.script.make_spec(self.choice)

    def folders(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(folders of this output alone, folders shared by every output of the script) under --local-root."""
        shared = dict.fromkeys((self.script.name, self.spec.source.hf_id.split("/")[-1]))
        return (self.spec.stem,), tuple(shared)

    def find_local(self, root: Path) -> tuple[Path | None, list[str]]:
        """The local copy under ``root`` and, when there is none, why each candidate was passed over."""
        own, shared = self.folders()
        for name in own:
            if (root / name).exists():
                return root / name, []
        passed_over = []
        first_default = self.script.default[0] if self.script.default else self.script.choices[0]
        for name in shared:
            folder = root / name
            if not folder.exists():
                continue
            if (
                len(self.script.choices) == 1
                or self.choice == first_default
                or not self.script.holds_one_choice(folder)
            ):
                return folder, []
            passed_over.append(
                f"{folder} holds one table, read as {self.script.make_spec(first_default).stem} only; put this "
                f"output's copy in {root / own[0]}"
            )
        return None, passed_over


_ORDER = [
    (geometry3k, "train"),
    (geometry3k, "test"),
    (mathvista, "testmini"),
    (mmmu_pro, "standard10"),
    (mmmu_pro, "vision"),
    (mathverse, "testmini"),
    (mathvision, "test"),
    (mathvision, "testmini"),
    (wemath, "testmini"),
    (logicvista, "test"),
]

#: stem -> job, in the order the outputs are prepared
JOBS: dict[str, Job] = {(job := Job(module.SCRIPT, choice)).spec.stem: job for module, choice in _ORDER}

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
    parser.add_argument("--local-root", default=None, help="folder with the local copies (see above)")
    parser.add_argument("--only", type=_parse_only, default=list(JOBS), help=f"subset of {', '.join(JOBS)}")
    parser.add_argument("--skip-missing", action="store_true", help="with --local-root: skip outputs with no folder")
    args = parser.parse_args(argv)
    if args.local_path:
        parser.error("data_prep.all reads several datasets: use --local-root (one folder per output), not --local-path")
    if args.hf_id:
        parser.error("data_prep.all reads several datasets: --hf-id names one; run that dataset's own script with it")
    check_common_arguments(parser, args)

    status = 0
    summary: dict[str, Any] = {}
    for stem in args.only:
        job = JOBS[stem]
        local = None
        if args.local_root:
            root = Path(args.local_root).expanduser()
            local, passed_over = job.find_local(root)
            if local is None:
                own, shared = job.folders()
                tried = [str(root / f) for f in (*own, *shared)]
                msg = f"no local copy for {stem}: none of {tried} exists" + "".join(f"; {p}" for p in passed_over)
                summary[stem] = {"status": "missing", "detail": msg}
                if args.skip_missing:
                    print(f"skip: {msg}", file=sys.stderr)
                    continue
                print(f"error: {msg} (add it, or pass --skip-missing / --only)", file=sys.stderr)
                status = max(status, 2)
                continue
        code, result = run_spec(job.spec, args, local)
        status = max(status, code)
        if code == 2:
            summary[stem] = {"status": "source_error", "detail": result}
            continue
        summary[stem] = {
            "status": "ok" if result["ok"] else "too_many_skipped",
            "output": result["output"],
            "source": result["source"],
            "records_read": result["records_read"],
            "rows_written": result["rows_written"],
            "skipped_by_reason": result["skipped_by_reason"],
            "repaired_by_rule": result["repaired_by_rule"],
        }
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
