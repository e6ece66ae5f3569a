"""Every verl symbol that recipe_care patches still exists in the pinned verl 0.9.1 (a rename must fail here, not
silently at training time), and the patches are installed after a plain ``import verl``."""

import importlib
import subprocess
import sys

import pytest

from recipe_care import embedding_patch, patches


def _resolve(module: str, dotted: str):
    obj = importlib.import_module(module)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("module,attr", list(patches.PATCHED_SYMBOLS) + list(embedding_patch.PATCHED_SYMBOLS))
def test_patched_symbol_exists(module, attr):
    assert callable(_resolve(module, attr)), f"{module}.{attr} is gone: recipe_care's patch must be updated"


def test_patches_apply_after_plain_import_verl():
    code = (
        "import verl, sys\n"
        "import verl.trainer.ppo.ray_trainer as rt\n"
        "from recipe_care.patches import is_patched\n"
        "sys.exit(0 if is_patched(rt) else 3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
