"""The repository is self-contained: no file points at the workspace folder that lies beside our own checkouts.

A user clones the repository into an empty folder; anything read from the sibling ``shared`` folder (or through an environment
variable naming it) works for us and fails for them. CI also runs the suite in such a fresh clone (``.ci/run``).
"""

import re
from pathlib import Path
from conftest import run_group

REPO = Path(__file__).resolve().parents[1]

# Written so that this file does not match itself.
FORBIDDEN = re.compile(
    rb"\.\./shared\b|CARE_SHARED" + rb"_DIR|/work/share[d]\b|parents?\b[^\n]{0,40}[\"']share[d][\"']"
)


def _repository_files() -> list[Path]:
    """Tracked files plus new files git does not ignore (what a commit would carry)."""
    out = run_group(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_file_refers_to_the_workspace_beside_the_repository():
    files = [f for f in _repository_files() if f.is_file()]
    assert len(files) > 100  # the listing worked (the repository has a few hundred files)
    hits = []
    for f in files:
        for lineno, line in enumerate(f.read_bytes().splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{f.relative_to(REPO)}:{lineno}: {line.decode(errors='replace').strip()[:100]}")
    assert not hits, "files refer to a folder outside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_is_for():
    for bad in (
        b"--local-path ../" + b"shared" + b"/fixtures",
        b"CARE_SHARED" + b"_DIR=/x",
        b'REPO.parent / "share' + b'd"',
    ):
        assert FORBIDDEN.search(bad), bad
    assert not FORBIDDEN.search(b"the shared verdict helper; tests/fixtures/benchmarks")
