"""verl's own CPU tests for the estimator registry and DataProto still pass with recipe_care installed.

They run from the installed verl wheel, in a subprocess: their ``setUp`` rebinds verl's estimator registry, which
must not leak into this process.
"""

import sys
from pathlib import Path

import pytest
import verl
from conftest import run_group

SITE = Path(verl.__file__).resolve().parents[1]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("relpath", ["tests/trainer/ppo/test_core_algos_on_cpu.py", "tests/test_protocol_on_cpu.py"])
def test_verl_suite_passes_with_plugin(relpath, tmp_path):
    target = SITE / relpath
    assert target.is_file(), f"{target} is missing from the verl wheel"
    # the plugin must be active in that process: check it first, then run verl's tests
    check = run_group(
        [sys.executable, "-c", "import verl; from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g; g('care')"],
        capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stderr
    proc = run_group(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", "/dev/null", str(target)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail
