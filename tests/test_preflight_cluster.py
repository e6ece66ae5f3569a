"""The cluster preflight (``recipe_care.preflight.check_cluster``) on a real multi-node Ray cluster on one machine
(``ray.cluster_utils.Cluster``: a head and a worker node, each its own raylet with logical GPUs).

The worker node is started the way a badly prepared node looks to verl: its raylet has
``VERL_USE_EXTERNAL_PLUGINS=none`` (verl loads no entry point there, as on a node where the recipe is not
pip-installed) and ``PYTHONPATH`` pointing at an older copy of ``recipe_care``/``reward_fns``. Without shipping the
recipe the preflight must fail, naming that node (its id) and the fix; with the recipe's runtime_env (what
``recipe_care.main`` passes to ``ray.init``, composed from ``care_trainer.yaml`` plus the run scripts' ``py_modules``)
every node passes. The cluster test takes ~1-2 min on 2 cores (each node's probe imports verl's trainer and engine).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import recipe_care
from recipe_care import preflight
from recipe_care.main import cluster_preflight
from recipe_care.preflight import NodeReport, PreflightError, check_cluster, check_node_gpus, ray_init_kwargs

REPO = Path(__file__).resolve().parents[1]


def _compose(overrides=()):
    with initialize_config_dir(config_dir=str(Path(recipe_care.__file__).parent / "config"), version_base=None):
        return compose(config_name="care_trainer", overrides=list(overrides))


# --- GPU counts (pure: Ray's per-node view against trainer.nnodes x trainer.n_gpus_per_node) ------------------------
def _reports(*gpus: int) -> list[NodeReport]:
    return [NodeReport(node_id=f"{i:02d}" * 14, address=f"10.0.0.{i}", gpus=g, head=i == 0) for i, g in enumerate(gpus)]


def test_gpu_check_names_the_short_node_and_counts_the_nodes():
    reports = _reports(0, 8, 4)  # a CPU-only head, a full node, a node that came up with half its GPUs
    cluster = check_node_gpus(reports, nnodes=2, gpus_per_node=8)
    assert reports[0].problems == [] and reports[1].problems == []  # a CPU-only head is fine
    (problem,) = reports[2].problems
    assert "4 GPU(s) in Ray's view, trainer.n_gpus_per_node=8" in problem and "--num-gpus=8" in problem
    assert cluster and "needs 2 node(s) with >= 8 GPUs; the cluster has 1" in cluster[0]


def test_gpu_check_passes_a_full_cluster_and_skips_cpu_runs():
    reports = _reports(8, 8)
    assert check_node_gpus(reports, nnodes=2, gpus_per_node=8) == [] and not any(r.problems for r in reports)
    reports = _reports(0, 2)
    assert check_node_gpus(reports, nnodes=1, gpus_per_node=0) == [] and not any(r.problems for r in reports)


def test_multi_node_run_without_a_cluster_address_is_refused(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(PreflightError, match=r"trainer.nnodes=2 needs a running Ray cluster.*RAY_ADDRESS"):
        cluster_preflight(_compose(["trainer.nnodes=2"]))
    assert cluster_preflight(_compose()) is None  # one node, no address: verl starts its own Ray instance
    # address=local starts a new single-node instance even when RAY_ADDRESS names a cluster: nothing to check
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_preflight(_compose(["+ray_kwargs.ray_init.address=local"])) is None
    with pytest.raises(PreflightError, match=r"trainer.nnodes=2 needs a running Ray cluster"):
        cluster_preflight(_compose(["trainer.nnodes=2", "+ray_kwargs.ray_init.address=local"]))


def test_cli_checks_the_cluster_with_what_the_run_scripts_ship(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(preflight, "check_cluster", lambda kwargs, **kw: calls.append((kwargs, kw)) or "cluster ok")
    assert preflight.main(["--cluster", "auto", "--nnodes", "2", "--gpus-per-node", "8"]) == 0
    assert preflight.main(["--cluster", "10.0.0.1:6379", "--no-ship"]) == 0
    (shipped, kw), (bare, kw_bare) = calls
    assert shipped == {"address": "auto", "runtime_env": preflight.recipe_runtime_env()} and kw == {
        "nnodes": 2, "gpus_per_node": 8}
    assert shipped["runtime_env"]["py_modules"] == [str(REPO / "recipe_care"), str(REPO / "reward_fns")]
    assert bare == {"address": "10.0.0.1:6379", "runtime_env": {}} and kw_bare == {"nnodes": 1, "gpus_per_node": 0}
    assert "[preflight] cluster ok" in capsys.readouterr().out


# --- a local multi-node cluster ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    # an older copy of the recipe on the worker node: same packages, one file changed
    stale = tmp_path_factory.mktemp("stale")
    for name in ("recipe_care", "reward_fns"):
        shutil.copytree(REPO / name, stale / name, ignore=shutil.ignore_patterns("__pycache__"))
    with open(stale / "recipe_care" / "spans.py", "a") as fh:
        fh.write("\n# an older version\n")
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False})
    try:
        bad = nodes.add_node(num_cpus=1, num_gpus=1,
                             env_vars={"VERL_USE_EXTERNAL_PLUGINS": "none", "PYTHONPATH": str(stale)})
        yield nodes, bad.node_id
    finally:
        nodes.shutdown()


@pytest.mark.ray
@pytest.mark.timeout(420)
def test_a_node_without_the_plugin_fails_loudly_and_shipping_the_recipe_fixes_it(cluster, tmp_path, monkeypatch):
    nodes, bad_id = cluster
    # Ray puts the driver's working directory first on every worker's sys.path: launch from a neutral folder, as a
    # multi-node run should (the repository root would shadow the shipped copy on this one-machine "cluster")
    monkeypatch.chdir(tmp_path)

    # 1. nothing shipped: the worker node runs without the plugin and with other code
    with pytest.raises(PreflightError) as err:
        check_cluster({"address": nodes.address}, nnodes=2, gpus_per_node=1)
    message = str(err.value)
    assert message.startswith("node ") and f"(id {bad_id[:12]})" in message.splitlines()[0]
    assert "nothing was launched" in message.splitlines()[0]
    bad_block = message.split(f"(id {bad_id[:12]}): FAILED", 1)[1]
    assert "'care' estimator is not registered" in bad_block and "VERL_USE_EXTERNAL_PLUGINS='none'" in bad_block
    assert "no hidden-state embeddings" in bad_block  # why it matters: no silent n-gram fallback
    assert "runtime_env.py_modules" in bad_block and "pip install -e" in bad_block  # the fix
    assert "recipe_care here" in bad_block and "is not the launch node's copy" in bad_block  # the older copy
    assert ", head): ok (1 GPU(s)" in message  # the head node is healthy and says so

    # 2. the recipe's runtime_env, as recipe_care.main builds it for a run script's config
    config = _compose([
        f"ray_kwargs.ray_init.address={nodes.address}",
        f"ray_kwargs.ray_init.runtime_env.py_modules=['{REPO / 'recipe_care'}','{REPO / 'reward_fns'}']",
        "trainer.nnodes=2", "trainer.n_gpus_per_node=1",
    ])
    kwargs = ray_init_kwargs(config)
    assert kwargs["runtime_env"]["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == "recipe_care._verl_plugin"
    assert kwargs["runtime_env"]["env_vars"]["TOKENIZERS_PARALLELISM"] == "true"  # verl's own defaults, merged
    report = cluster_preflight(config)  # what recipe_care.main runs before verl starts
    assert report.count(": ok (1 GPU(s); 'care' registered, patches applied, verifiers ok") == 2, report
    worker_line = next(line for line in report.splitlines() if f"(id {bad_id[:12]})" in line)
    assert "runtime_resources/py_modules_files" in worker_line  # the shipped copy, not the stale one
