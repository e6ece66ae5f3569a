"""The one command line of every ``python -m data_prep.<name>`` script.

A dataset module describes itself with a :class:`Script` (its outputs, and the ``--split`` / ``--setting`` choice
when it has several) and ends with ``main = SCRIPT.main``; parsing, checking the arguments and running the outputs
happen here, once for all seven scripts. ``data_prep.all`` shares the common arguments and the specs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.core import Spec, prepare, summarize
from data_prep.sources import SourceError


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder: <out>/<stem>.parquet + <stem>.report.json")
    parser.add_argument(
        "--local-path",
        default=None,
        help="read a local copy instead of the Hub: a Hugging Face download (parquet, picked by config and split), "
        "a save_to_disk folder, the official JSON(L) + image folder, or a records.jsonl + images folder (the "
        "layout of tests/fixtures/benchmarks/<name>/)",
    )
    parser.add_argument("--image-root", default=None, help="folder that image paths in JSON records are relative to")
    parser.add_argument("--hf-id", default=None, help="override the Hugging Face dataset id (a mirror)")
    parser.add_argument(
        "--max-skip-frac",
        type=float,
        default=0.05,
        help="exit non-zero when more than this share of records is skipped (default 0.05)",
    )
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N records")
    parser.add_argument("--rows-per-group", type=int, default=256, help="parquet row-group size (rows)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0.0 <= args.max_skip_frac <= 1.0:
        parser.error("--max-skip-frac must be between 0 and 1")


def run_spec(spec: Spec, args: argparse.Namespace, local_path: str | os.PathLike | None) -> tuple[int, dict | str]:
    """Prepare one output: ``(status, report)``; status 0 = ok, 1 = skip threshold exceeded, 2 = no source
    (then the second item is the error message). Errors are printed to stderr, the summary to stdout."""
    try:
        report = prepare(
            spec,
            args.out,
            local_path=local_path,
            image_root=args.image_root,
            hf_id=getattr(args, "hf_id", None),
            max_skip_frac=args.max_skip_frac,
            limit=args.limit,
            rows_per_group=args.rows_per_group,
            progress=not args.quiet,
        )
    except SourceError as exc:
        print(f"error: {spec.stem}: {exc}", file=sys.stderr)
        return 2, str(exc)
    print(summarize(report))
    if not report["ok"]:
        print(
            f"error: {spec.stem}: skipped {report['skipped']}/{report['records_read']} records "
            f"({report['skip_frac']:.1%}) > --max-skip-frac {report['max_skip_frac']}; see "
            f"{Path(report['output']).with_suffix('.report.json')}",
            file=sys.stderr,
        )
        return 1, report
    return 0, report


def local_holds_one_table(local_path: str | os.PathLike | None) -> bool:
    """True when ``--local-path`` can hold only one split/setting (a single file or a records.jsonl folder)."""
    if not local_path:
        return False
    p = Path(local_path).expanduser()
    return p.is_file() or (p / "records.jsonl").is_file() or (p / "state.json").is_file()


def split_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"{what} must be a comma-separated subset of {list(allowed)}, got {value!r}")
    return items


@dataclass(frozen=True)
class Script:
    """A ``python -m data_prep.<name>`` script: which outputs it can write and how they are chosen.

    ``make_spec(choice)`` builds the output for one value of ``choices`` (a split, or an MMMU-Pro setting). With one
    choice the script has no choice option; with several, ``option`` (``--split`` / ``--setting``) takes a
    comma-separated subset and defaults to ``default``.
    """

    name: str
    doc: str | None
    make_spec: Callable[[str], Spec]
    choices: tuple[str, ...]
    default: tuple[str, ...] = ()
    option: str | None = None  # "--split" or "--setting" when len(choices) > 1
    option_help: str = ""
    choices_are_configs: bool = False  # the choices are HF configs: a saved DatasetDict holds only one of them

    def __post_init__(self) -> None:
        if len(self.choices) > 1 and (self.option is None or not self.default):
            raise ValueError(f"{self.name}: several choices need an option name and a default")

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=f"python -m data_prep.{self.name}",
            description=self.doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common_arguments(parser)
        if self.option:
            parser.add_argument(
                self.option,
                dest="choices",
                metavar=self.option.lstrip("-").upper(),
                type=lambda v: split_list(v, self.choices, self.option),
                default=list(self.default),
                help=self.option_help,
            )
        return parser

    def parse_args(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        parser = self.parser()
        args = parser.parse_args(argv)
        check_common_arguments(parser, args)
        if not self.option:
            args.choices = list(self.choices)
        if len(args.choices) > 1 and args.local_path and self.holds_one_choice(args.local_path):
            what = "setting" if self.choices_are_configs else "split"
            parser.error(
                f"--local-path holds one {what}: pass the one it holds with "
                + " or ".join(f"{self.option} {c}" for c in args.choices)
            )
        return args

    def holds_one_choice(self, local_path: str | os.PathLike) -> bool:
        """True when a local copy can hold only one of the choices (one file, records.jsonl, a saved ``Dataset``;
        for configs also a saved ``DatasetDict``, whose keys are splits)."""
        local = Path(local_path).expanduser()
        return local_holds_one_table(local) or (self.choices_are_configs and (local / "dataset_dict.json").is_file())

    def specs(self, choices: Sequence[str]) -> list[Spec]:
        return [self.make_spec(c) for c in choices]

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Prepare each chosen output; 0 = all ok, 1 = a skip threshold exceeded, 2 = a source could not be opened."""
        args = self.parse_args(argv)
        return max(run_spec(spec, args, args.local_path)[0] for spec in self.specs(args.choices))


__all__ = [
    "Script",
    "add_common_arguments",
    "check_common_arguments",
    "local_holds_one_table",
    "run_spec",
    "split_list",
]
