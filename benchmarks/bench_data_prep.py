"""Throughput and peak memory of data_prep on a synthetic dataset with images: peak RSS must not grow with size.

Builds synthetic Geometry3K-schema parquet sources (``images`` list of PNG structs, ``problem`` with ``<image>``,
``answer``; a distinct drawn diagram per row, written in row groups so building does not hold the data in memory),
then runs ``python -m data_prep.geometry3k --local-path SRC --split train`` in a fresh process per size and reads
that process's peak RSS (``os.wait4`` rusage) and the converter's rows/s from the report.

    python benchmarks/bench_data_prep.py                        # 2,000 and 20,000 rows
    python benchmarks/bench_data_prep.py --rows 1000 5000 --image-size 320 --workdir /tmp/bench

A 1-row run of the same source gives the baseline (interpreter + datasets/pyarrow/PIL imports).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def _diagram(rng: random.Random, size: int) -> bytes:
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 8)):
        pts = [(rng.randrange(size), rng.randrange(size)) for _ in range(2)]
        d.line(pts, fill=(rng.randrange(200), rng.randrange(200), rng.randrange(200)), width=rng.randint(1, 3))
    x, y = rng.randrange(size // 2), rng.randrange(size // 2)
    d.ellipse([x, y, x + rng.randint(10, size // 2), y + rng.randint(10, size // 2)], outline=(0, 0, 0))
    d.text((rng.randrange(size - 30), rng.randrange(size - 12)), f"x={rng.randint(1, 99)}", fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def build_source(path: Path, rows: int, image_size: int, seed: int = 0, group: int = 500) -> float:
    """Write a synthetic hiyouga/geometry3k-schema parquet file; returns its size in MB."""
    schema = pa.schema(
        [
            ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
            ("problem", pa.string()),
            ("answer", pa.string()),
        ]
    )
    rng = random.Random(seed)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            batch = {
                "images": [[{"bytes": _diagram(rng, image_size), "path": None}] for _ in range(n)],
                "problem": [
                    f"<image>In the figure, find x for problem {start + i}. Round to the nearest tenth."
                    for i in range(n)
                ],
                "answer": [str(rng.randint(1, 500)) for _ in range(n)],
            }
            writer.write_table(pa.Table.from_pydict(batch, schema=schema))
    return path.stat().st_size / 1e6


def run_prep(src: Path, out: Path, limit: int | None = None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "data_prep.geometry3k",
        "--out",
        str(out),
        "--local-path",
        str(src),
        "--split",
        "train",
        "--quiet",
        "--max-skip-frac",
        "0",
    ]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples = []  # (seconds since start, RSS MB) of the child, polled from /proc while it runs
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                kb = int(fh.read().split("VmRSS:")[1].split()[0])
            samples.append((time.perf_counter() - t0, kb / 1024))
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"data_prep failed ({code}):\n{stdout}\n{stderr}")
    report = json.loads((out / "geometry3k_train.report.json").read_text())
    peak_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20

    def rss_in(lo: float, hi: float) -> float | None:
        vals = [mb for t, mb in samples if lo * wall <= t <= hi * wall]
        return round(max(vals), 1) if vals else None

    return {
        "rows": report["rows_written"],
        "row_groups": report["row_groups"],
        "convert_s": report["elapsed_s"],
        "rows_per_s": report["rows_per_s"],
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak_mb, 1),
        # Flat memory: the highest RSS seen in the 2nd, 3rd and last quarter of the run.
        "rss_q2_q3_q4_mb": [rss_in(0.25, 0.5), rss_in(0.5, 0.75), rss_in(0.75, 1.0)],
        "output_mb": round((out / "geometry3k_train.parquet").stat().st_size / 1e6, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--image-size", type=int, default=224, help="side of the square synthetic diagrams (px)")
    parser.add_argument("--workdir", default=None, help="where sources/outputs go (default: a temp dir, removed)")
    args = parser.parse_args(argv)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_data_prep_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.rows:
            src = work / f"src_{n}.parquet"
            t0 = time.perf_counter()
            size_mb = build_source(src, n, args.image_size)
            print(f"built {n:,}-row source ({size_mb:.1f} MB) in {time.perf_counter() - t0:.1f}s", flush=True)
            if not results:
                base = run_prep(src, work / "out_base", limit=1)
                base.update(label="baseline (1 row)", source_mb=round(size_mb, 1))
                results.append(base)
            res = run_prep(src, work / f"out_{n}")
            res.update(label=f"{n:,} rows", source_mb=round(size_mb, 1))
            results.append(res)
            print(json.dumps(res), flush=True)
            src.unlink()
            shutil.rmtree(work / f"out_{n}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\ndata_prep.geometry3k on synthetic data ({args.image_size}px PNG diagrams, 1 image/row), "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(
        "| run | rows | source MB | output MB | row groups | rows/s (convert) | wall s | peak RSS MB "
        "| max RSS in quarters 2/3/4 of the run, MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        quarters = " / ".join("-" if q is None else f"{q:.0f}" for q in r["rss_q2_q3_q4_mb"])
        print(
            f"| {r['label']} | {r['rows']:,} | {r['source_mb']} | {r['output_mb']} | {r['row_groups']} | "
            f"{r['rows_per_s']:.0f} | {r['wall_s']} | {r['peak_rss_mb']} | {quarters} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
