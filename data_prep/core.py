"""The conversion pipeline shared by every ``data_prep`` script.

A script describes one output with a :class:`Spec` (ids, split, and a ``convert(record, ctx)`` function returning a
:class:`Converted`). :func:`prepare` streams the source records through it and writes verl rows:

* records are read one at a time (HF ``streaming=True`` / a JSON Lines reader), converted, validated and buffered;
  every ``rows_per_group`` rows (or ``bytes_per_group`` bytes of images) the buffer is written as one parquet row
  group with ``pyarrow.parquet.ParquetWriter`` and dropped, so peak memory does not grow with the dataset;
* a record that cannot be converted into a valid row raises :class:`BadRecord` (or an image error) and is
  **skipped**, counted by reason and listed in the report; records fixed by a documented rule are counted under
  ``repaired``; nothing is dropped silently;
* ``<out>/<stem>.parquet`` is written via ``<stem>.parquet.partial`` and renamed when complete;
  ``<out>/<stem>.report.json`` is written next to it; the run fails (exit 1) when the skipped share is above
  ``--max-skip-frac``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from data_prep.images import ImageError, to_image_struct
from data_prep.prompt import IMAGE_TOKEN, MEDIA_TOKENS, build_messages
from data_prep.schema import ARROW_SCHEMA, make_extra_info
from data_prep.sources import Source, SourceSpec, open_hub, open_local
from reward_fns.schema import DATA_SOURCES

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: Why a record is skipped (report key -> documented meaning).
SKIP_REASONS = {
    "missing_image": "an image the record needs is null, empty, or its file does not exist",
    "undecodable_image": "image bytes that PIL cannot fully decode (truncated, corrupt, not an image)",
    "extreme_aspect_ratio": "an image with aspect ratio > 200, which the Qwen2.5-VL processor rejects",
    "malformed_options": "options that cannot be parsed, too few options, or an answer that is not one of them",
    "empty_answer": "the published answer is empty: the record cannot be graded",
    "empty_question": "no question text and the benchmark does not put the question in the image",
    "placeholder_mismatch": "the number of <image> placeholders differs from the number of images after rewriting",
    "invalid_record": "a required field is missing or has the wrong type / an unknown value",
}

#: Documented repair rules (report key -> what was changed).
REPAIR_RULES = {
    "prepended_image_placeholder": "the text has no image token for an image: one <image> per such image is put "
    "at the start of the question, in column order",
    "stray_media_token": "a literal '<image>', '<video>' or '<audio>' in the source text (not an image "
    "reference) is rewritten as '[image]', '[video]', '[audio]'",
    "nested_options_flattened": "MMMU-Pro options given as a single nested list [[...]] are flattened",
    "option_separator_repaired": "We-Math option string whose ';' separators are missing or irregular: options "
    "are split at the letter markers 'A.', 'B.', ... in order",
    "literal_backslash_n": "MATH-Vision: a literal two-character '\\n' (not a LaTeX command such as \\neq) is "
    "turned into a newline",
    "image_reencoded_png": "an image in another format than PNG/JPEG (GIF, WebP, BMP, ...) is re-encoded as PNG",
}

#: Events that are neither a skip nor a repair but worth counting.
NOTE_KINDS = {
    "text_only_record": "MathVerse 'Text Only' record (testmini_text_only config): written with no image",
    "image_only_question": "the question text is empty after removing image tokens: the image carries it",
    "duplicate_image_reference": "the same <image k> is referenced twice: the image is passed twice (official rule)",
    "option_marker_in_text": "We-Math option text holding a ';X.' that is not an option marker (a separator "
    "artefact of the source, e.g. '∠AB;C.'): kept as text",
}


class BadRecord(Exception):
    """A record that cannot become a valid row. ``reason`` is a key of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass
class Converted:
    """A converted record before images are loaded and the row is assembled."""

    id: str
    body: str  # question text with exactly one "<image>" per entry of `images`, in order
    images: list[Any]  # image references (HF struct / bytes / PIL / path), in placeholder order
    ground_truth: str
    extra: dict[str, Any] = field(default_factory=dict)  # canonical extra_info values (question_type, choices ...)
    meta: dict[str, Any] = field(default_factory=dict)  # other source fields, stored as extra_info.meta_json


class Ctx:
    """Per-record context handed to ``convert``: image roots and the repair/note log."""

    def __init__(self, image_roots: Sequence[Path] = ()):
        self.image_roots = list(image_roots)
        self.repairs: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []

    def repair(self, rule: str, detail: str = "") -> None:
        if rule not in REPAIR_RULES:
            raise ValueError(f"unknown repair rule {rule!r}")
        self.repairs.append((rule, detail))

    def note(self, kind: str, detail: str = "") -> None:
        if kind not in NOTE_KINDS:
            raise ValueError(f"unknown note kind {kind!r}")
        self.notes.append((kind, detail))


@dataclass
class Spec:
    """One output file of one benchmark."""

    name: str  # script name: "mathvista"
    stem: str  # output file stem: "mathvista_testmini"
    data_source: str  # reward_fns dispatch key
    split: str  # split label stored in extra_info.split
    variant: str  # extra_info.variant
    ability: str
    source: SourceSpec
    convert: Callable[[dict[str, Any], Ctx], Converted]
    id_field: str = "id"  # used to name a record in the report when conversion fails early
    report_id: Callable[[dict[str, Any]], str] | None = None  # overrides id_field (e.g. We-Math "ID|key")

    def __post_init__(self) -> None:
        if self.data_source not in DATA_SOURCES:
            raise ValueError(f"data_source {self.data_source!r} is not a reward_fns dispatch key {DATA_SOURCES}")


# ------------------------------------------------------------------------------------------------- text helpers


def sanitize_media_tokens(text: str, ctx: Ctx, where: str = "text") -> str:
    """Rewrite literal <image>/<video>/<audio> in source text (rule ``stray_media_token``)."""
    for tok in MEDIA_TOKENS:
        if tok in text:
            ctx.repair("stray_media_token", f"{text.count(tok)} x {tok} in {where}")
            text = text.replace(tok, "[" + tok[1:-1] + "]")
    return text


def require_str(record: dict[str, Any], key: str, *, allow_empty: bool = True) -> str:
    value = record.get(key)
    if value is None:
        raise BadRecord("invalid_record", f"field {key!r} is missing or null")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRecord("invalid_record", f"field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise BadRecord("empty_answer" if key == "answer" else "invalid_record", f"field {key!r} is empty")
    return value


def require_answer(record: dict[str, Any], key: str = "answer") -> str:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRecord("empty_answer", f"{key!r} is {value!r}: the record cannot be graded")
    return require_str(record, key)


def letter_answer(answer: str, n_options: int, what: str = "answer") -> str:
    """The answer letter, checked against the option count (raises ``malformed_options``)."""
    a = answer.strip()
    if len(a) != 1 or a not in LETTERS[:n_options]:
        raise BadRecord(
            "malformed_options", f"{what} {answer!r} is not one of the {n_options} option letters {LETTERS[:n_options]}"
        )
    return a


def option_lines(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def clean_meta(record: dict[str, Any], drop: Sequence[str]) -> dict[str, Any]:
    """Source fields for meta_json: everything except `drop`, image columns and binary values."""
    out = {}
    for k, v in record.items():
        if k in drop or isinstance(v, (bytes, bytearray)):
            continue
        if isinstance(v, dict) and ("bytes" in v and "path" in v):
            continue
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------------- pipeline


def _num(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else 0.0


class _RowGroupWriter:
    def __init__(self, path: Path, rows_per_group: int, bytes_per_group: int):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.rows_per_group = rows_per_group
        self.bytes_per_group = bytes_per_group
        self.buffer: list[dict[str, Any]] = []
        self.buffer_bytes = 0
        self.rows = 0
        self.groups = 0
        self.writer = pq.ParquetWriter(self.partial, ARROW_SCHEMA)

    def add(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        self.buffer_bytes += sum(len(im["bytes"]) for im in row["images"])
        if len(self.buffer) >= self.rows_per_group or self.buffer_bytes >= self.bytes_per_group:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        table = pa.Table.from_pylist(self.buffer, schema=ARROW_SCHEMA)
        self.writer.write_table(table, row_group_size=len(self.buffer))
        self.rows += len(self.buffer)
        self.groups += 1
        self.buffer = []
        self.buffer_bytes = 0

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.partial.unlink(missing_ok=True)


def _record_id(record: dict[str, Any], spec: Spec) -> str:
    if spec.report_id is not None and isinstance(record, dict) and "__invalid__" not in record:
        return str(spec.report_id(record))
    for key in (spec.id_field, "id", "pid", "sample_index", "ID"):
        v = record.get(key) if isinstance(record, dict) else None
        if v is not None and not isinstance(v, (dict, list, bytes)):
            return str(v)
    return ""


def build_row(spec: Spec, record: dict[str, Any], index: int, ctx: Ctx) -> dict[str, Any]:
    """Convert + validate one record into a verl row (raises BadRecord)."""
    if "__invalid__" in record:
        raise BadRecord("invalid_record", record["__invalid__"])
    conv = spec.convert(record, ctx)
    if not isinstance(conv.ground_truth, str) or not conv.ground_truth.strip():
        raise BadRecord("empty_answer", f"ground truth {conv.ground_truth!r} is empty")
    images = []
    for i, ref in enumerate(conv.images, 1):
        try:
            struct, reencoded = to_image_struct(ref, ctx.image_roots)
        except ImageError as exc:
            raise BadRecord(exc.reason, f"image {i}/{len(conv.images)}: {exc}") from None
        if reencoded:
            ctx.repair("image_reencoded_png", f"image {i}")
        images.append(struct)
    n_placeholders = conv.body.count(IMAGE_TOKEN)
    if n_placeholders != len(images):
        raise BadRecord(
            "placeholder_mismatch",
            f"{n_placeholders} '<image>' placeholder(s) in the prompt for {len(images)} image(s)",
        )
    for tok in MEDIA_TOKENS[1:]:
        if tok in conv.body:
            raise BadRecord("placeholder_mismatch", f"stray {tok} in the prompt")
    extra = make_extra_info(
        meta=conv.meta,
        **{
            **conv.extra,
            "id": conv.id or f"{spec.split}-{index}",
            "benchmark": spec.name,
            "variant": conv.extra.get("variant") or spec.variant,
            "split": spec.split,
            "index": index,
        },
    )
    return {
        "data_source": spec.data_source,
        "prompt": build_messages(conv.body),
        "images": images,
        "ability": spec.ability,
        "reward_model": {"style": "rule", "ground_truth": conv.ground_truth},
        "extra_info": extra,
    }


def prepare(
    spec: Spec,
    out_dir: str | os.PathLike,
    *,
    local_path: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    hf_id: str | None = None,
    max_skip_frac: float = 0.05,
    limit: int | None = None,
    rows_per_group: int = 256,
    bytes_per_group: int = 64 << 20,
    progress: bool = True,
    max_listed_repairs: int = 1000,
) -> dict[str, Any]:
    """Convert one source into ``<out_dir>/<stem>.parquet`` + ``<stem>.report.json``; returns the report."""
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    source: Source = (
        open_local(local_path, spec.source, image_root) if local_path else open_hub(spec.source, hf_id=hf_id)
    )
    if image_root is not None and source.kind != "json":
        source.image_roots = [Path(image_root).expanduser().resolve()]
    parquet_path = out / f"{spec.stem}.parquet"
    report_path = out / f"{spec.stem}.report.json"

    skipped: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    skipped_records: list[dict[str, Any]] = []
    repaired_records: list[dict[str, Any]] = []
    read = 0
    total = source.total if limit is None or source.total is None else min(limit, source.total)
    writer = _RowGroupWriter(parquet_path, rows_per_group, bytes_per_group)
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=spec.stem, unit="rec", disable=not progress, mininterval=0.5, dynamic_ncols=True)
    try:
        for index, record in enumerate(source.records):
            if limit is not None and index >= limit:
                break
            read += 1
            ctx = Ctx(source.image_roots)
            rid = _record_id(record, spec)
            try:
                row = build_row(spec, record, index, ctx)
            except BadRecord as exc:
                skipped[exc.reason] += 1
                skipped_records.append({"index": index, "id": rid, "reason": exc.reason, "detail": str(exc)})
                bar.set_postfix(skipped=sum(skipped.values()), refresh=False)
            else:
                writer.add(row)
                for rule, detail in ctx.repairs:
                    repaired[rule] += 1
                    if len(repaired_records) < max_listed_repairs:
                        repaired_records.append(
                            {"index": index, "id": row["extra_info"]["id"], "rule": rule, "detail": detail}
                        )
                for kind, _ in ctx.notes:
                    notes[kind] += 1
            bar.update(1)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    n_skipped = sum(skipped.values())
    skip_frac = n_skipped / read if read else 1.0
    ok = read > 0 and skip_frac <= max_skip_frac
    report = {
        "name": spec.name,
        "stem": spec.stem,
        "data_source": spec.data_source,
        "split": spec.split,
        "variant": spec.variant,
        "source": source.description,
        "output": str(parquet_path),
        "records_read": read,
        "rows_written": writer.rows,
        "row_groups": writer.groups,
        "skipped": n_skipped,
        "skip_frac": _num(skip_frac),
        "max_skip_frac": max_skip_frac,
        "ok": ok,
        "skipped_by_reason": dict(sorted(skipped.items())),
        "repaired_by_rule": dict(sorted(repaired.items())),
        "notes": dict(sorted(notes.items())),
        "skipped_records": skipped_records,
        "repaired_records": repaired_records,
        "repaired_records_truncated": sum(repaired.values()) > len(repaired_records),
        "rules": {
            "skip_reasons": {k: SKIP_REASONS[k] for k in sorted(skipped)},
            "repair_rules": {k: REPAIR_RULES[k] for k in sorted(repaired)},
            "notes": {k: NOTE_KINDS[k] for k in sorted(notes)},
        },
        "elapsed_s": _num(elapsed),
        "rows_per_s": _num(writer.rows / elapsed) if elapsed > 0 else 0.0,
    }
    tmp = report_path.with_name(report_path.name + ".partial")
    tmp.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, report_path)
    return report


def summarize(report: dict[str, Any]) -> str:
    reasons = ", ".join(f"{k}={v}" for k, v in report["skipped_by_reason"].items()) or "none"
    repairs = ", ".join(f"{k}={v}" for k, v in report["repaired_by_rule"].items()) or "none"
    return (
        f"{report['stem']}: {report['rows_written']}/{report['records_read']} rows -> {report['output']} "
        f"(skipped {report['skipped']} [{reasons}]; repaired [{repairs}]; {report['rows_per_s']} rows/s)"
    )


__all__ = [
    "LETTERS",
    "NOTE_KINDS",
    "REPAIR_RULES",
    "SKIP_REASONS",
    "BadRecord",
    "Converted",
    "Ctx",
    "Spec",
    "build_row",
    "clean_meta",
    "letter_answer",
    "option_lines",
    "prepare",
    "require_answer",
    "require_str",
    "sanitize_media_tokens",
    "summarize",
]
