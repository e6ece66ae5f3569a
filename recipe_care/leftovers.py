"""Find and remove what a finished run left behind: shared-memory segments no live process uses.

vLLM's multiprocess executor talks to its workers through ``multiprocessing.shared_memory`` ring buffers
(``/dev/shm/psm_*``, ``vllm/distributed/device_communicators/shm_broadcast.py``); only the process that created a
buffer unlinks it, in ``__del__``. At the end of a run Ray kills the vLLM server actors, so that never runs and the
buffers stay (two per engine, 160-250 MB each on the CPU smoke run). The run scripts call this module when the run
ends, however it ends (``trap ... EXIT``), and the tests call it after killing a run.

A segment is removed only when all of these hold:

* its name starts with ``psm_`` (Python's ``SharedMemory`` names) or ``verl_weights_`` (verl's weight-transfer
  buffer on hosts without CUDA IPC); nothing else is touched;
* it was last modified at or after ``since`` (the run's start, in seconds since the epoch);
* no live process has it mapped or open (``/proc/<pid>/maps`` and ``/proc/<pid>/fd``): a segment of another
  running program, or of a concurrent run, is always mapped by it.

Standard library only, no torch: ``python -m recipe_care.leftovers --since 1733600000`` prints what it removed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SHM = Path("/dev/shm")
# Python's SharedMemory names (vLLM's ring buffers), and verl's weight-transfer buffer when there is no CUDA IPC
# (verl/workers/rollout/vllm_rollout/bucketed_weight_transfer.py:190; a run whose weight sync fails leaves it, 2 GB)
PREFIXES = ("psm_", "verl_weights_")


def segments_in_use(shm_dir: Path = SHM) -> set[str]:
    """Names under ``shm_dir`` that a live process maps or holds open."""
    used: set[str] = set()
    prefix = str(shm_dir).rstrip("/") + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            with open(proc / "maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    i = line.find(prefix)
                    if i >= 0:
                        used.add(line[i + len(prefix):].split()[0])
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(prefix):
                    used.add(target[len(prefix):].split()[0])
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
    return used


def stale_segments(since: float, shm_dir: Path = SHM) -> list[Path]:
    """:data:`PREFIXES` segments under ``shm_dir`` modified at or after ``since`` that no live process uses."""
    if not shm_dir.is_dir():
        return []
    candidates = []
    for path in (p for prefix in PREFIXES for p in shm_dir.glob(prefix + "*")):
        try:
            if path.stat().st_mtime >= since:
                candidates.append(path)
        except FileNotFoundError:
            continue
    if not candidates:
        return []
    used = segments_in_use(shm_dir)
    return sorted(p for p in candidates if p.name not in used)


def remove_stale_segments(since: float, shm_dir: Path = SHM) -> list[Path]:
    """Unlink :func:`stale_segments`; returns the paths removed."""
    removed = []
    for path in stale_segments(since, shm_dir):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", type=float, required=True, help="the run's start (seconds since the epoch)")
    parser.add_argument("--shm-dir", type=Path, default=SHM)
    args = parser.parse_args(argv)
    removed = remove_stale_segments(args.since, args.shm_dir)
    if removed:
        print(f"[care] removed {len(removed)} shared-memory segment(s) the run left: "
              + " ".join(p.name for p in removed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
