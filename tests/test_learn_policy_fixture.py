"""The committed warm-started policy of the CI learning test (tests/fixtures/learn_policy/seed0) is exactly what the
warm start writes today: same cache key, same tokenizer, config and weights when rebuilt from scratch."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from conftest import LEARN_POLICY_FIXTURE as FIXTURE, run_group

from recipe_care.learn_demo import learn_policy

REBUILD = "see tests/fixtures/learn_policy/README.md to rebuild it"

pytestmark = pytest.mark.timeout(600)


def test_the_fixture_marker_is_the_current_cache_key():
    marker = json.loads((FIXTURE / learn_policy.WARM_MARKER).read_text())
    assert marker["settings"] == learn_policy.warm_settings(seed=0), f"the fixture is stale: {REBUILD}"
    assert learn_policy.is_current(FIXTURE, learn_policy.warm_settings(seed=0))
    assert not learn_policy.is_current(FIXTURE, learn_policy.warm_settings(seed=1))
    assert not learn_policy.is_current(FIXTURE, learn_policy.warm_settings(seed=0, steps=199))


def test_a_current_policy_is_reused_without_building_anything(tmp_path):
    out = tmp_path / "policy-seed0"
    shutil.copytree(FIXTURE, out)
    proc = run_group([sys.executable, "-X", "importtime", "-m", "recipe_care.learn_demo.learn_policy", "--out",
                           str(out), "--seed", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(out)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "torch" not in imported and "transformers" not in imported  # the cache check alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy-seed0"]  # no base folder built


def test_rebuilding_from_scratch_gives_the_fixture(tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "policy-seed0"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # as cpu_learn.sh
    proc = run_group([sys.executable, "-m", "recipe_care.learn_demo.learn_policy", "--out", str(out), "--seed", "0"],
                          capture_output=True, text=True, timeout=540, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("tokenizer.json", "config.json", "processor_config.json", "chat_template.jinja",
                 learn_policy.WARM_MARKER):
        built, kept = (out / name).read_text(), (FIXTURE / name).read_text()
        if name == learn_policy.WARM_MARKER:  # the marker also records the seconds the build took
            built, kept = json.loads(built)["settings"], json.loads(kept)["settings"]
        assert built == kept, f"{name} differs from the fixture: {REBUILD}"
    built, kept = load_file(out / "model.safetensors"), load_file(FIXTURE / "model.safetensors")
    assert built.keys() == kept.keys()
    for key in kept:
        # bit-identical on the machine that built it; the tolerance only allows another CPU's rounding
        torch.testing.assert_close(built[key], kept[key], rtol=1e-3, atol=1e-4,
                                   msg=lambda m, key=key: f"{key}: {m}\n{REBUILD}")
