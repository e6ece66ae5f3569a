"""Every verl symbol that recipe_care patches (the one list, ``recipe_care.patches.PATCHED_SYMBOLS``) still exists in
the pinned verl 0.9.1 (a rename must fail here, not silently at training time), and the patches are installed after a
plain ``import verl``."""

import sys

import pytest

from recipe_care.patches import PATCHED_SYMBOLS, resolve
from conftest import run_group


@pytest.mark.parametrize("module,attr,group", PATCHED_SYMBOLS, ids=[f"{m}:{a}" for m, a, _ in PATCHED_SYMBOLS])
def test_patched_symbol_exists(module, attr, group):
    assert callable(resolve(module, attr)), f"{module}.{attr} is gone: recipe_care.patches.{group} must be updated"


def test_the_list_names_every_patch_module_and_each_module_is_in_it():
    from pathlib import Path

    import recipe_care.patches as package

    modules = {p.stem for p in Path(package.__file__).parent.glob("*.py")} - {"__init__", "post_import"}
    assert {s.group for s in PATCHED_SYMBOLS} == modules


def test_patches_apply_after_plain_import_verl():
    code = (
        "import verl, sys\n"
        "import verl.trainer.ppo.ray_trainer as rt\n"
        "import verl.workers.engine.fsdp.transformer_impl as ti\n"
        "import verl.utils.debug.metrics as dm, verl.trainer.ppo.rollout_corr_helper as rc\n"
        "from recipe_care.patches import is_patched\n"
        "sys.exit(0 if all(is_patched(m) for m in (rt, ti, dm, rc)) else 3)\n"
    )
    proc = run_group([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
