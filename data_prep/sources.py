"""Where records come from: the Hugging Face Hub (streaming) or a local copy, always as a stream of dicts.

``--local-path`` accepts, tried in this order:

1. a dataset saved with ``save_to_disk`` (folder with ``dataset_dict.json`` or ``state.json``);
2. a folder laid out like ``tests/fixtures/benchmarks/<name>/``: ``records.jsonl`` (source schema) + images;
3. a folder holding the benchmark's official annotation file (``testmini.json``, ``data/test.jsonl``, ...; the
   names each script looks for are listed in its ``--help``) + its image folder;
4. parquet: one ``.parquet`` file, or a folder of them (an HF snapshot such as ``data/testmini-00000-of-00001.parquet``
   or ``standard (10 options)/test-*.parquet``: files are picked by config folder and split prefix);
5. a single ``.json`` / ``.jsonl`` file.

HF-schema sources yield image columns as undecoded ``{"bytes", "path"}`` structs, so the bytes are passed through
without a decode/re-encode round trip: the Hub through ``datasets.load_dataset(..., streaming=True).decode(False)``,
local parquet through ``pyarrow.parquet.ParquetFile.iter_batches`` and saved datasets through Arrow-formatted
batches of the memory-mapped table (both stream in batches of ``BATCH_ROWS``). JSON
sources hold image *paths*, resolved against the image roots (``--image-root``, else the annotation file's folder
and its parent; ``<root>/images/<path>`` is tried too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

BATCH_ROWS = 64  # records read per Arrow batch from local parquet / saved datasets
KNOWN_SPLITS = ("train", "test", "testmini", "validation", "val", "dev")


class SourceError(RuntimeError):
    """The source cannot be opened; the message says what was tried and what to do."""


@dataclass
class Source:
    kind: str  # "hub" | "saved" | "parquet" | "json"
    description: dict[str, Any]
    records: Iterable[dict[str, Any]]
    total: int | None
    image_roots: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class SourceSpec:
    """How one output's records are found on the Hub and in local copies."""

    hf_id: str
    hf_config: str | None
    hf_split: str
    official_files: tuple[str, ...] = ()  # relative names of the official annotation file(s) in a local folder
    dict_id_field: str = "id"  # official JSON keyed by id: the field that receives the key


# --------------------------------------------------------------------------------------------------- Hub / HF data


def _hf_total(ds: Any, split: str) -> int | None:
    splits = getattr(getattr(ds, "info", None), "splits", None)  # None for local folders without metadata
    info = splits.get(split) if splits else None
    return int(info.num_examples) if info is not None and info.num_examples else None


def open_hub(spec: SourceSpec, *, streaming: bool = True, hf_id: str | None = None) -> Source:
    repo = hf_id or spec.hf_id
    desc = {"kind": "hub", "id": repo, "config": spec.hf_config, "split": spec.hf_split, "streaming": streaming}
    try:
        ds = datasets.load_dataset(repo, spec.hf_config, split=spec.hf_split, streaming=streaming)
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = "HF_HUB_OFFLINE is set" if offline else "no hub access or wrong id/config/split"
        raise SourceError(
            f"cannot load {repo!r} (config {spec.hf_config!r}, split {spec.hf_split!r}) from the Hugging Face Hub "
            f"({hint}): {type(exc).__name__}: {exc}\n"
            "Fix: check network/HF token, or download the dataset elsewhere and pass --local-path "
            "(a save_to_disk folder, parquet files, or the official JSON + images)."
        ) from exc
    if streaming:
        total = _hf_total(ds, spec.hf_split)
        records = ds.decode(False)
    else:
        total = len(ds)
        records = ds.to_iterable_dataset().decode(False)
    return Source("hub", desc, records, total)


def _open_saved(path: Path, spec: SourceSpec) -> Source:
    obj = datasets.load_from_disk(str(path))
    split = spec.hf_split
    if isinstance(obj, datasets.DatasetDict):
        if split not in obj:
            if len(obj) == 1:
                split = next(iter(obj))
            else:
                raise SourceError(
                    f"saved dataset {path} has splits {sorted(obj)}, not {spec.hf_split!r}; "
                    "pass --split with one of them (or save only the split you want)"
                )
        ds = obj[split]
    else:
        ds = obj
    # Arrow batches of the memory-mapped table: image structs stay undecoded, and no IterableDataset (which
    # imports torch) is built.
    records = (rec for table in ds.with_format("arrow").iter(batch_size=BATCH_ROWS) for rec in table.to_pylist())
    return Source("saved", {"kind": "saved", "path": str(path), "split": split}, records, len(ds), [path])


def _select_parquet(files: list[Path], root: Path, spec: SourceSpec) -> list[Path]:
    """Pick the files of the wanted config/split from an HF snapshot folder."""
    if spec.hf_config:
        by_config = [f for f in files if spec.hf_config in f.relative_to(root).parts[:-1]]
        if by_config:
            files = by_config

    def in_split(f: Path, split: str) -> bool:
        name = f.name
        return (
            name == f"{split}.parquet"
            or name.startswith((f"{split}-", f"{split}_"))
            or split in f.relative_to(root).parts[:-1]
        )

    split = spec.hf_split
    chosen = [f for f in files if in_split(f, split)]
    if chosen:
        return chosen
    if not any(in_split(f, s) for f in files for s in KNOWN_SPLITS):
        return files  # shards without any split marker: one split, take them all
    raise SourceError(
        f"no parquet file for split {split!r}{' / config ' + repr(spec.hf_config) if spec.hf_config else ''} "
        f"under {root} (found: {[str(f.relative_to(root)) for f in files][:10]}); pass one file with --local-path"
    )


def _iter_parquet(files: list[Path]) -> Iterator[dict[str, Any]]:
    for f in files:
        # pre_buffer=False: no read-ahead of whole row groups (with it, Arrow holds tens of MB of source buffers).
        pf = pq.ParquetFile(f, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            yield from batch.to_pylist()


def _open_parquet(files: list[Path], desc_path: Path) -> Source:
    """Stream parquet files batch by batch with pyarrow (HF Image columns arrive as raw ``{bytes, path}`` structs)."""
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return Source(
        "parquet",
        {"kind": "parquet", "path": str(desc_path), "files": [str(f) for f in files]},
        _iter_parquet(files),
        total,
        [desc_path if desc_path.is_dir() else desc_path.parent],
    )


# ------------------------------------------------------------------------------------------------------- JSON data


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                # One broken line: hand it on as a record the pipeline reports (never dropped silently).
                yield {"__invalid__": f"{path.name} line {lineno} is not valid JSON: {exc}"}
                continue
            if not isinstance(rec, dict):
                yield {"__invalid__": f"{path.name} line {lineno} is a JSON {type(rec).__name__}, not an object"}
                continue
            yield rec


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _open_json(path: Path, spec: SourceSpec, image_roots: list[Path]) -> Source:
    desc = {"kind": "json", "path": str(path)}
    if path.suffix == ".jsonl":
        return Source("json", desc, _iter_jsonl(path), _count_lines(path), image_roots)
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)  # official annotation files are small (metadata only, < 10 MB)
    if isinstance(data, dict):
        if all(isinstance(v, dict) for v in data.values()):
            records = []
            for key, rec in data.items():
                rec = dict(rec)
                rec.setdefault(spec.dict_id_field, key)
                records.append(rec)
        elif isinstance(data.get("data"), list):
            records = data["data"]
        else:
            raise SourceError(f"{path}: a JSON object that is neither keyed by record id nor has a 'data' list")
    elif isinstance(data, list):
        records = data
    else:
        raise SourceError(f"{path}: expected a JSON list or object of records, got {type(data).__name__}")
    return Source("json", desc, records, len(records), image_roots)


# --------------------------------------------------------------------------------------------------- dispatching


def open_local(path: str | os.PathLike, spec: SourceSpec, image_root: str | os.PathLike | None = None) -> Source:
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise SourceError(f"--local-path {p} does not exist")

    def roots_for(annotation: Path) -> list[Path]:
        if image_root is not None:
            return [Path(image_root).expanduser().resolve()]
        return [annotation.parent, annotation.parent.parent]

    if p.is_file():
        if p.suffix == ".parquet":
            return _open_parquet([p], p)
        if p.suffix in (".json", ".jsonl"):
            return _open_json(p, spec, roots_for(p))
        raise SourceError(f"--local-path {p}: unsupported file type {p.suffix!r} (use .parquet, .json or .jsonl)")

    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return _open_saved(p, spec)
    if (p / "records.jsonl").is_file():
        return _open_json(p / "records.jsonl", spec, roots_for(p / "records.jsonl"))
    for name in spec.official_files:
        if (p / name).is_file():
            return _open_json(p / name, spec, roots_for(p / name))
    parquet = sorted(x for x in p.rglob("*.parquet") if x.is_file())
    if parquet:
        return _open_parquet(_select_parquet(parquet, p, spec), p)
    looked = ["dataset_dict.json/state.json (save_to_disk)", "records.jsonl", *spec.official_files, "*.parquet"]
    raise SourceError(f"--local-path {p}: found none of {looked}")
