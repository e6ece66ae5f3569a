"""``care`` resolves after a plain ``import verl`` everywhere verl code runs: this process, a Ray actor, a Ray task;
registration is idempotent; the preflight fails loudly with the real error."""

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from conftest import run_group

REPO = Path(__file__).resolve().parents[1]


def _care_qualname():
    import verl  # noqa: F401  (the verl.plugins entry point registers care)
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    return get_adv_estimator_fn("care").__qualname__


def test_resolves_in_this_process_after_plain_import_verl():
    # a fresh interpreter proves that nothing but `import verl` is needed
    code = (
        "import verl; from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g; "
        "import sys; sys.exit(0 if g('care').__module__ == 'recipe_care.verl_adapter' else 3)"
    )
    assert run_group([sys.executable, "-c", code], capture_output=True).returncode == 0
    assert _care_qualname() == "compute_care_advantage"


def test_plugin_can_be_disabled_by_verl_switch():
    env = dict(os.environ, VERL_USE_EXTERNAL_PLUGINS="none")
    code = "import verl, sys; from verl.trainer.ppo import core_algos as c; sys.exit(0 if 'care' not in c.ADV_ESTIMATOR_REGISTRY else 3)"
    assert run_group([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


def test_registration_is_idempotent_even_under_another_module_object():
    import verl  # noqa: F401
    from verl.trainer.ppo import core_algos

    import recipe_care._verl_plugin as plugin
    from recipe_care.registration import register_care_estimator

    before = core_algos.ADV_ESTIMATOR_REGISTRY["care"]
    register_care_estimator()
    importlib.reload(plugin)
    # a second copy of the adapter module (e.g. loaded by file path): a different function object, same name
    spec = importlib.util.spec_from_file_location("care_adapter_copy", REPO / "recipe_care" / "verl_adapter.py")
    copy = importlib.util.module_from_spec(spec)
    sys.modules["care_adapter_copy"] = copy  # dataclasses look their module up there
    spec.loader.exec_module(copy)
    assert copy.compute_care_advantage is not before
    spec2 = importlib.util.spec_from_file_location("care_plugin_copy", REPO / "recipe_care" / "_verl_plugin.py")
    plugin_copy = importlib.util.module_from_spec(spec2)
    spec2.loader.exec_module(plugin_copy)  # must not raise
    assert core_algos.ADV_ESTIMATOR_REGISTRY["care"] is before


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_resolves_in_ray_actor_and_task():
    import ray

    # a cluster of our own even when another test runs one (the suite runs in parallel workers)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             namespace="care-registration-test")
    try:

        # defined inline (no reference to this test module, which Ray workers cannot import)
        @ray.remote(num_cpus=0)
        def task():
            import verl  # noqa: F401
            from verl.trainer.ppo.core_algos import get_adv_estimator_fn

            return get_adv_estimator_fn("care").__qualname__

        @ray.remote(num_cpus=0)
        class Actor:
            def qualname(self):
                import verl  # noqa: F401
                from verl.trainer.ppo.core_algos import get_adv_estimator_fn

                return get_adv_estimator_fn("care").__qualname__

        actor = Actor.remote()
        assert ray.get(task.remote(), timeout=180) == "compute_care_advantage"
        assert ray.get(actor.qualname.remote(), timeout=180) == "compute_care_advantage"
    finally:
        ray.shutdown()


def test_preflight_cli_passes():
    proc = run_group([sys.executable, "-m", "recipe_care.preflight"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "'care' registered" in proc.stdout


def test_preflight_shows_the_error_verl_swallows():
    # a broken dependency of the plugin: verl's loader hides it, the preflight must print it and exit 1
    code = (
        "import sys\n"
        "sys.modules['recipe_care.ngram_profiles'] = None  # makes `import recipe_care.ngram_profiles` raise\n"
        "import verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "assert 'care' not in core_algos.ADV_ESTIMATOR_REGISTRY, 'verl should have swallowed the error'\n"
        "from recipe_care.preflight import main\n"
        "sys.exit(main([]))\n"
    )
    proc = run_group([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "import of recipe_care.ngram_profiles halted" in proc.stderr
    assert "importing recipe_care._verl_plugin failed" in proc.stderr


def test_preflight_gpu_and_data_checks_fail_clearly(tmp_path):
    proc = run_group(
        [sys.executable, "-m", "recipe_care.preflight", "--gpus", "1", "--data", str(tmp_path / "missing.parquet")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "1 GPU(s) needed" in proc.stderr and "cpu_smoke.sh" in proc.stderr
    assert "missing.parquet does not exist" in proc.stderr and "data_prep" in proc.stderr
