"""Where records come from: the Hugging Face Hub (streaming), its local cache, or a local copy, always as a stream
of dicts.

By dataset id (no ``--local-path``): when the Hub answers (one quick request, ``HF_HUB_ETAG_TIMEOUT`` seconds at
most), records are streamed (``datasets.load_dataset(..., streaming=True)``) at the revision the Hub reported. When
it does not (no network, ``HF_HUB_OFFLINE=1``), a copy already in the Hugging Face cache (``hf download``, or an
earlier ``datasets.load_dataset``) is read instead, with no network; with no cached copy the run ends at once with a
:class:`SourceError`. A network failure while streaming ends with the same error, naming how far it got.

``--local-path`` accepts, tried in this order:

1. a dataset saved with ``save_to_disk`` (folder with ``dataset_dict.json`` or ``state.json``);
2. a folder laid out like ``tests/fixtures/benchmarks/<name>/``: ``records.jsonl`` (source schema) + images;
3. parquet: one ``.parquet`` file, or a folder of them such as a Hugging Face download. The files of the wanted
   config and split are the ones the dataset card (``README.md``, ``configs:``) lists for them, as ``datasets``
   reads it; without a card, the split is a file name (``testmini.parquet``, ``testmini-00000-of-00001.parquet``)
   or folder, and the config a folder (``standard (10 options)/test-*.parquet``). A download that also holds the
   annotation JSON and an image zip (MathVerse, We-Math) is read from its parquet, whose images are embedded;
4. a folder holding the benchmark's official annotation file (``testmini.json``, ``data/test.jsonl``, ...; the
   names each script looks for are listed in its ``--help``) + its image folder;
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import yaml
from datasets.data_files import resolve_pattern
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData, HfApi
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.repocard import metadata_load

BATCH_ROWS = 64  # records read per Arrow batch from local parquet / saved datasets
KNOWN_SPLITS = ("train", "test", "testmini", "validation", "val", "dev")


class SourceError(RuntimeError):
    """The source cannot be opened; the message says what was tried and what to do."""


@dataclass
class Source:
    kind: str  # "hub" | "hub_cache" | "saved" | "parquet" | "json"
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

HUB_FIX = (
    "Fix: check the network (or the HF_ENDPOINT mirror and HF_TOKEN), or download the dataset on a connected machine "
    "(`hf download {repo} --repo-type dataset`, into the Hugging Face cache or with --local-dir) and run again: a "
    "cached copy is read by id without network, a --local-dir folder with --local-path."
)


def hub_error(repo: str, spec: SourceSpec, what: str, exc: BaseException | None = None) -> SourceError:
    """The one message for a Hub that cannot be read, at the start or in the middle of a stream."""
    cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return SourceError(
        f"cannot read {repo!r} (config {spec.hf_config!r}, split {spec.hf_split!r}) from the Hugging Face Hub: "
        f"{what}{cause}\n" + HUB_FIX.format(repo=repo)
    )


def _offline_mode() -> bool:
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


try:  # huggingface_hub >= 1.0 talks httpx, whose transport errors are not OSErrors (requests' errors are)
    from httpx import TransportError as _HttpxTransportError
except ImportError:  # pragma: no cover (huggingface_hub < 1.0)
    _HttpxTransportError = OSError


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (_HttpxTransportError, ConnectionError, TimeoutError, OSError)):
        return True
    return isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code >= 500


_UNREACHABLE: dict[str, str] = {}  # endpoint -> why, for the endpoints this process could not reach


def probe_hub(repo: str, spec: SourceSpec) -> tuple[str | None, str]:
    """Ask the Hub once, without retries, for the dataset's current revision: ``(sha, "")`` when it answers,
    ``(None, why)`` when it cannot be reached (offline mode, no network, server error). A wrong id or a gated
    dataset raises :class:`SourceError` at once."""
    if _offline_mode():
        return None, "HF_HUB_OFFLINE is set"
    endpoint = huggingface_hub.constants.ENDPOINT
    if endpoint in _UNREACHABLE:  # asked already in this process (data_prep.all): do not wait again
        return None, _UNREACHABLE[endpoint]
    timeout = float(huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT)
    try:
        return HfApi().dataset_info(repo, timeout=timeout).sha, ""
    except GatedRepoError as exc:
        raise hub_error(repo, spec, "the dataset is gated: accept its terms on the Hub and set HF_TOKEN", exc) from None
    except RepositoryNotFoundError as exc:
        raise hub_error(repo, spec, "no such dataset (or it is private: set HF_TOKEN)", exc) from None
    except Exception as exc:  # noqa: BLE001 (sorted right here: a network failure, or any other answer)
        if not _is_network_error(exc):
            raise hub_error(repo, spec, "the Hub's answer was not understood", exc) from None
        _UNREACHABLE[endpoint] = f"the Hub at {endpoint} is unreachable ({type(exc).__name__}: {exc})"
        return None, _UNREACHABLE[endpoint]


def open_cached(repo: str, spec: SourceSpec) -> tuple[Source | None, str]:
    """The dataset from the Hugging Face cache, with no network (``snapshot_download(local_files_only=True)``):
    ``(source, "")``, or ``(None, why not)``."""
    try:
        folder = huggingface_hub.snapshot_download(repo, repo_type="dataset", local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:  # nothing (usable) cached for this id
        return (
            None,
            f"no copy in the Hugging Face cache {huggingface_hub.constants.HF_HUB_CACHE} ({type(exc).__name__})",
        )
    try:
        source = open_local(folder, spec)
    except SourceError as exc:
        return None, f"the cached copy {folder} does not hold it: {exc}"
    source.kind = "hub_cache"
    source.description = {
        "kind": "hub_cache",
        "id": repo,
        "config": spec.hf_config,
        "split": spec.hf_split,
        "snapshot": str(folder),
        "files": source.description.get("files", []),
    }
    return source, ""


def guard_stream(records: Iterable[dict[str, Any]], on_error: Callable[[int, BaseException], SourceError]):
    """Yield from ``records``; an error raised while *reading* (not while converting) becomes ``on_error(n, exc)``,
    ``n`` being the number of records read so far."""
    it = iter(records)
    n = 0
    while True:
        try:
            rec = next(it)
        except StopIteration:
            return
        except Exception as exc:  # any failure to read the source ends as the source's own error
            raise on_error(n, exc) from exc
        n += 1
        yield rec


def _hf_total(ds: Any, split: str) -> int | None:
    splits = getattr(getattr(ds, "info", None), "splits", None)  # None for local folders without metadata
    info = splits.get(split) if splits else None
    return int(info.num_examples) if info is not None and info.num_examples else None


def open_hub(spec: SourceSpec, *, hf_id: str | None = None) -> Source:
    """Records by dataset id: streamed from the Hub, or read from the Hugging Face cache when the Hub cannot be
    reached. ``hf_id`` may also be a local folder ``datasets.load_dataset`` reads (then no Hub is involved)."""
    repo = hf_id or spec.hf_id
    revision = None
    if not Path(repo).expanduser().exists():
        revision, unreachable = probe_hub(repo, spec)
        if revision is None:
            source, not_cached = open_cached(repo, spec)
            if source is not None:
                return source
            raise hub_error(repo, spec, f"{unreachable}, and {not_cached}")
    desc = {"kind": "hub", "id": repo, "config": spec.hf_config, "split": spec.hf_split, "streaming": True}
    if revision:
        desc["revision"] = revision
    try:
        ds = datasets.load_dataset(repo, spec.hf_config, split=spec.hf_split, streaming=True, revision=revision)
    except Exception as exc:  # noqa: BLE001 (datasets raises many types; each becomes the one SourceError)
        what = "the network failed while opening it" if _is_network_error(exc) else "wrong id, config or split?"
        raise hub_error(repo, spec, what, exc) from None

    def lost(n: int, exc: BaseException) -> SourceError:
        return hub_error(repo, spec, f"reading stopped after {n} records", exc)

    return Source("hub", desc, guard_stream(ds.decode(False), lost), _hf_total(ds, spec.hf_split))


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


def _card_parquet(root: Path, spec: SourceSpec) -> list[Path] | None:
    """The parquet files the dataset card (``README.md``, YAML ``configs:``) lists for the wanted config/split, as
    ``datasets`` resolves them; None when the folder has no card with configs (or they name no parquet)."""
    readme = root / "README.md"
    try:
        meta = metadata_load(readme) if readme.is_file() else None
        configs = MetadataConfigs.from_dataset_card_data(DatasetCardData(**meta)) if meta else None
    except (yaml.YAMLError, ValueError, TypeError, OSError) as exc:
        raise SourceError(f"{readme}: the dataset card's YAML header cannot be read ({type(exc).__name__}: {exc})")
    if not configs:
        return None
    where = f"{readme} (configs: {sorted(configs)})"
    name = spec.hf_config or configs.get_default_config_name()
    if name not in configs:
        raise SourceError(f"config {spec.hf_config or 'default'!r} is not in {where}")
    entries = configs[name].get("data_files") or []
    if isinstance(entries, (str, list)) and not (entries and isinstance(entries[0], dict)):
        entries = [{"split": "train", "path": entries}]  # plain patterns: one split, datasets calls it "train"
    wanted = [e for e in entries if e.get("split") == spec.hf_split]
    if not wanted:
        raise SourceError(
            f"split {spec.hf_split!r} is not in config {name!r} of {where} "
            f"(splits: {[e.get('split') for e in entries]})"
        )
    files: list[Path] = []
    for entry in wanted:
        patterns = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
        for pattern in patterns:
            try:
                files += [Path(f) for f in resolve_pattern(pattern, base_path=str(root))]
            except FileNotFoundError:
                raise SourceError(
                    f"{where} lists {pattern!r} for config {name!r} / split {spec.hf_split!r}, but no such file is "
                    f"under {root} (an incomplete download?)"
                ) from None
    parquet = sorted({f for f in files if f.suffix == ".parquet"})
    return parquet or None


def _in_split(f: Path, root: Path, split: str) -> bool:
    """A file of ``split`` by name: ``testmini.parquet``, ``testmini-00000-of-00001-<hash>.parquet``, or a
    ``testmini/`` folder. ``testmini_text_only.parquet`` is not ``testmini`` (it is its own config)."""
    return f.stem == split or f.stem.startswith(f"{split}-") or split in f.relative_to(root).parts[:-1]


def _select_parquet(files: list[Path], root: Path, spec: SourceSpec) -> list[Path]:
    """Pick the files of the wanted config/split from a folder of parquet files (see the module docstring)."""
    listed = _card_parquet(root, spec)
    if listed is not None:
        return listed
    if spec.hf_config:
        by_config = [f for f in files if spec.hf_config in f.relative_to(root).parts[:-1]]
        if by_config:
            files = by_config
    chosen = [f for f in files if _in_split(f, root, spec.hf_split)]
    if chosen:
        return chosen
    if not any(_in_split(f, root, s) for f in files for s in KNOWN_SPLITS):
        return files  # shards without any split marker: one split, take them all
    return []


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
    parquet = sorted(x for x in p.rglob("*.parquet") if x.is_file())
    chosen: list[Path] = []
    card_error = None
    try:
        chosen = _select_parquet(parquet, p, spec) if parquet else []
    except SourceError as exc:  # the card does not list this config/split: the annotation JSON may still hold it
        card_error = exc
    if chosen:  # parquet first: its images are embedded, while a JSON beside it may point into an unpacked zip
        return _open_parquet(chosen, p)
    for name in spec.official_files:
        if (p / name).is_file():
            return _open_json(p / name, spec, roots_for(p / name))
    if card_error is not None:
        raise card_error
    if parquet:
        config = f" / config {spec.hf_config!r}" if spec.hf_config else ""
        raise SourceError(
            f"no parquet file for split {spec.hf_split!r}{config} under {p} "
            f"(found: {[str(f.relative_to(p)) for f in parquet][:10]}); pass one file with --local-path"
        )
    looked = ["dataset_dict.json/state.json (save_to_disk)", "records.jsonl", "*.parquet", *spec.official_files]
    raise SourceError(f"--local-path {p}: found none of {looked}")
