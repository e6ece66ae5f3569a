"""Preflight: fail loudly, in seconds, before an expensive verl launch.

verl loads plugins with their import errors swallowed, so a broken ``care`` registration would only surface at the
first advantage step, after model loading and a full rollout; on a Ray cluster, a node without the plugin would
silently compute no hidden-state embeddings. This module imports the plugin *directly* on the launch node, and on a
cluster runs one probe on every alive node, so the real error is printed with the node's name and the fix.

    python -m recipe_care.preflight                      # plugin, registry, patches (this node)
    python -m recipe_care.preflight --gpus 8 --data train.parquet test.parquet --reward-check train.parquet
    python -m recipe_care.preflight --cluster auto --nnodes 2 --gpus-per-node 8     # every node of a Ray cluster

``python -m recipe_care.main`` runs :func:`check_cluster` itself before verl starts whenever the run connects to a
Ray cluster (``ray_kwargs.ray_init.address`` or ``RAY_ADDRESS``). Exit status 0 when every requested check passes,
1 otherwise (each failure is printed with its fix).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

VERL_VERSION = "0.9.1"


class PreflightError(RuntimeError):
    pass


def check_plugin() -> str:
    """Import the plugin module directly and check that ``care`` resolves to our estimator, patches included."""
    try:
        importlib.import_module("recipe_care._verl_plugin")
    except Exception as err:  # the error verl would have swallowed
        raise PreflightError(
            "importing recipe_care._verl_plugin failed (verl hides this error and would crash at the first "
            f"advantage step):\n{traceback.format_exc()}"
        ) from err
    import verl
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    version = getattr(verl, "__version__", "?")
    if version != VERL_VERSION:
        raise PreflightError(f"verl {version} is installed, recipe_care needs verl=={VERL_VERSION}: "
                             f"pip install 'verl[verl-core]=={VERL_VERSION}'")
    fn = get_adv_estimator_fn("care")
    if getattr(fn, "__qualname__", "") != "compute_care_advantage":
        raise PreflightError(f"'care' resolves to {fn!r}, not recipe_care's estimator")
    from verl.trainer.ppo import ray_trainer

    from recipe_care.patches import is_patched

    if not is_patched(ray_trainer):
        raise PreflightError("verl.trainer.ppo.ray_trainer was imported without recipe_care's patches")
    return f"plugin ok: verl {version}, 'care' registered, legacy-trainer patches installed"


def check_gpus(n: int) -> str:
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < n:
        raise PreflightError(
            f"{n} GPU(s) needed, {found} visible. This script trains on GPUs; without one, try "
            "`bash run_scripts/cpu_smoke.sh` (tiny model on CPU) or DRY_RUN=1 to only compose the config."
        )
    return f"gpus ok: {found} visible"


def check_data(paths: list[str]) -> str:
    import pyarrow.parquet as pq

    lines = []
    for path in paths:
        try:
            meta = pq.ParquetFile(path).metadata
        except FileNotFoundError as err:
            raise PreflightError(f"data file {path} does not exist: prepare it with "
                                 "`python -m data_prep.all --out DIR`") from err
        except Exception as err:
            raise PreflightError(f"data file {path} is not a readable parquet file: {err}") from err
        names = set(meta.schema.to_arrow_schema().names)  # top-level columns (schema.names lists leaves)
        missing = {"data_source", "prompt", "reward_model", "extra_info"} - names
        if missing:
            raise PreflightError(f"data file {path} lacks columns {sorted(missing)}: regenerate it with data_prep")
        lines.append(f"{path}: {meta.num_rows} rows")
    return "data ok: " + "; ".join(lines)


def check_reward(path: str, reward_module: str = "reward_fns") -> str:
    """Score the first row of ``path`` with its own ground truth as the answer: the verifier must say acc 1."""
    import pyarrow.parquet as pq

    row = pq.ParquetFile(path).read_row_group(0).slice(0, 1).to_pylist()[0]
    module = importlib.import_module(reward_module)
    gt = row["reward_model"]["ground_truth"]
    response = f"<think>check</think><answer>{gt}</answer>"
    out = module.compute_score(row["data_source"], response, gt, extra_info=row.get("extra_info"))
    acc = out["acc"] if isinstance(out, dict) else out
    if float(acc) != 1.0:
        raise PreflightError(f"the reward function scores the ground truth of {path} row 0 ({gt!r}) as {out!r}, "
                             "not acc 1")
    return f"reward ok: {row['data_source']} row 0 verifies"


# --------------------------------------------------------------------------------------------------------------
# Every node of a Ray cluster
# --------------------------------------------------------------------------------------------------------------
PLUGIN_MODULE = "recipe_care._verl_plugin"
SHIP_FIX = (
    "ship the recipe with the run: ray_kwargs.ray_init.runtime_env.py_modules=[<repo>/recipe_care,<repo>/reward_fns] "
    f"(the run scripts pass it) and runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES={PLUGIN_MODULE} "
    "(care_trainer.yaml sets it), or install the recipe on that node: pip install -e <repo> "
    "(docs/run_scripts.md, 'Several nodes')"
)


def recipe_runtime_env() -> dict:
    """The Ray ``runtime_env`` the run scripts add to verl's: this installation's ``recipe_care`` and ``reward_fns``
    as ``py_modules`` (Ray uploads them and puts them on every worker's path) and ``VERL_USE_EXTERNAL_MODULES``, with
    which ``import verl`` imports the plugin in every worker even where no entry point is installed."""
    import recipe_care
    import reward_fns

    folders = [os.path.dirname(os.path.abspath(m.__file__)) for m in (recipe_care, reward_fns)]
    return {"py_modules": folders, "env_vars": {"VERL_USE_EXTERNAL_MODULES": PLUGIN_MODULE}}


def cluster_address(config: Any) -> str | None:
    """The Ray cluster a run connects to: ``ray_kwargs.ray_init.address``, else ``RAY_ADDRESS`` (as ``ray.init``).

    ``address=local`` is no cluster: ``ray.init`` then starts a new single-node instance on this machine whatever
    ``RAY_ADDRESS`` says (the CPU runs use it), so there is nothing to check and None is returned.
    """
    address = config.ray_kwargs.ray_init.get("address") if "ray_kwargs" in config else None
    if address == "local":
        return None
    return address or os.environ.get("RAY_ADDRESS") or None


def ray_init_kwargs(config: Any) -> dict:
    """The keyword arguments verl 0.9.1's ``run_ppo`` passes to ``ray.init``: ``ray_kwargs.ray_init`` with its
    ``runtime_env`` merged over ``verl.trainer.constants_ppo.get_ppo_ray_runtime_env(config)`` (the same three lines
    as ``verl.trainer.main_ppo.run_ppo``), so the preflight's probes run in the environment verl's workers get."""
    from omegaconf import OmegaConf
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    ray_init = config.ray_kwargs.get("ray_init", {})
    runtime_env = OmegaConf.merge(get_ppo_ray_runtime_env(config), ray_init.get("runtime_env", {}))
    return OmegaConf.to_container(OmegaConf.create({**ray_init, "runtime_env": runtime_env}), resolve=True)


@dataclass
class NodeReport:
    """What the preflight found on one alive Ray node."""

    node_id: str
    address: str
    gpus: int
    head: bool = False
    problems: list[str] = field(default_factory=list)
    found: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"node {self.address} (id {self.node_id[:12]}{', head' if self.head else ''})"


def node_reports(nodes: list[dict]) -> list[NodeReport]:
    """One report per alive node of ``ray.nodes()``; the GPU count is Ray's own (what verl's placement groups get)."""
    reports = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        reports.append(NodeReport(
            node_id=node["NodeID"], address=node.get("NodeManagerAddress", "?"), gpus=int(resources.get("GPU", 0)),
            head="node:__internal_head__" in resources,
        ))
    return reports


def check_node_gpus(reports: list[NodeReport], nnodes: int, gpus_per_node: int) -> list[str]:
    """verl places ``trainer.nnodes`` bundles of ``trainer.n_gpus_per_node`` GPUs, one per node: a node with some
    GPUs but fewer than that is named (a raylet started with part of its GPUs, a GPU the driver lost), and the cluster
    must hold ``nnodes`` nodes with enough GPUs. CPU-only nodes (a head without GPUs) are fine: they run the
    TaskRunner, the reward and agent-loop workers. Per-node problems go into the reports; cluster-wide ones are
    returned. ``gpus_per_node=0`` skips the check (CPU runs)."""
    if gpus_per_node <= 0:
        return []
    for report in reports:
        if 0 < report.gpus < gpus_per_node:
            report.problems.append(
                f"{report.gpus} GPU(s) in Ray's view, trainer.n_gpus_per_node={gpus_per_node}. Fix: start this "
                f"node's raylet with all its GPUs (`ray start --address=<head>:6379 --num-gpus={gpus_per_node}`, "
                "check CUDA_VISIBLE_DEVICES and nvidia-smi there), or set NGPUS (trainer.n_gpus_per_node) to the "
                "GPUs every node has"
            )
    ready = sum(r.gpus >= gpus_per_node for r in reports)
    if ready < nnodes:
        return [
            f"trainer.nnodes={nnodes} x trainer.n_gpus_per_node={gpus_per_node} needs {nnodes} node(s) with "
            f">= {gpus_per_node} GPUs; the cluster has {ready}. Fix: start the missing workers "
            "(`ray start --address=<head>:6379` on each) or lower NNODES (trainer.nnodes)"
        ]
    return []


def _make_fingerprint() -> Callable[[str], str]:
    """A closure (pickled by value, see :func:`_make_node_probe`) hashing a package folder's ``.py``/``.yaml`` files."""

    def fingerprint(folder: str) -> str:
        import hashlib
        import os

        digest = hashlib.sha256()
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith((".py", ".yaml"))):
                path = os.path.join(root, name)
                with open(path, "rb") as fh:
                    digest.update(os.path.relpath(path, folder).encode() + b"\0" + fh.read() + b"\0")
        return digest.hexdigest()[:16]

    return fingerprint


package_fingerprint = _make_fingerprint()
SHIPPED = ("recipe_care", "reward_fns")


def _make_node_probe(verl_version: str, expected: dict[str, str], plugin_fix: str) -> Callable[[], dict]:
    """The check that runs on each node. Built as a closure so that Ray pickles it by value: it must run, and report,
    on a node where ``recipe_care`` itself does not import. ``expected`` maps each shipped package to the
    fingerprint of the launch node's copy."""
    fingerprint = _make_fingerprint()

    def probe() -> dict:
        import importlib
        import importlib.util
        import os
        import socket
        import sys

        env = {k: os.environ.get(k, "") for k in ("VERL_USE_EXTERNAL_MODULES", "VERL_USE_EXTERNAL_PLUGINS")}
        found = {"host": socket.gethostname(), "python": sys.executable, **env}
        problems = []
        for name, want in expected.items():  # which copy of the recipe this node runs
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.submodule_search_locations:
                problems.append(f"`import {name}` finds nothing here. Fix: {plugin_fix}")
                continue
            folder = list(spec.submodule_search_locations)[0]
            found[name] = folder
            if fingerprint(folder) != want:
                problems.append(
                    f"{name} here ({folder}) is not the launch node's copy (its files differ): this node would run "
                    "other code. Fix: ship the launch node's copy (py_modules, as the run scripts do) and launch "
                    f"from a directory without a {name}/ folder (Ray puts the driver's working directory first on "
                    "every worker's sys.path), or update the copy on this node"
                )
        try:
            import verl
        except Exception as err:  # noqa: BLE001 - reported with the environment that caused it
            problems.append(f"`import verl` failed: {err!r} (VERL_USE_EXTERNAL_MODULES="
                            f"{env['VERL_USE_EXTERNAL_MODULES']!r}). Fix: {plugin_fix}")
            return {"found": found, "problems": problems}
        found["verl"] = getattr(verl, "__version__", "?")
        if found["verl"] != verl_version:
            problems.append(f"verl {found['verl']} is installed here; the recipe needs verl=={verl_version}")
        from verl.trainer.ppo import core_algos

        estimator = core_algos.ADV_ESTIMATOR_REGISTRY.get("care")
        if estimator is None:
            problems.append(
                "after `import verl` the 'care' estimator is not registered: verl did not import recipe_care's plugin "
                f"in this node's workers (VERL_USE_EXTERNAL_MODULES={env['VERL_USE_EXTERNAL_MODULES']!r}, "
                f"VERL_USE_EXTERNAL_PLUGINS={env['VERL_USE_EXTERNAL_PLUGINS'] or 'auto'!r}, no verl.plugins entry "
                "point loaded). The TaskRunner could not run CARE and the actor workers here would compute no "
                f"hidden-state embeddings. Fix: {plugin_fix}"
            )
        elif getattr(estimator, "__qualname__", "") != "compute_care_advantage":
            problems.append(f"'care' resolves to {estimator!r}, not recipe_care's estimator")
        else:
            checks = (
                ("legacy-trainer patches", "verl.trainer.ppo.ray_trainer", ("trainer",)),
                ("trainer embedding patch", "verl.trainer.ppo.ray_trainer", ("hidden_states",)),
                ("worker embedding patch", "verl.workers.engine.fsdp.transformer_impl", ("hidden_states",)),
            )
            for what, target, groups in checks:
                try:
                    patches = importlib.import_module("recipe_care.patches")
                    applied = patches.is_patched(importlib.import_module(target), groups)
                except Exception as err:  # noqa: BLE001
                    problems.append(f"{what}: importing {target} failed here: {err!r}")
                    continue
                if not applied:
                    problems.append(f"{what} not applied to {target} after `import verl`")
        try:
            import reward_fns

            score = reward_fns.compute_score("hiyouga/geometry3k", "<think>x</think><answer>2</answer>", "2")
            if score.get("acc") != 1.0:
                problems.append(f"reward_fns scores a correct answer as {score!r}")
        except Exception as err:  # noqa: BLE001
            problems.append(f"the verifiers do not work here: {err!r}. Fix: install the recipe's dependencies on this "
                            "node (pip install -e <repo>, or the same image as the head)")
        return {"found": found, "problems": problems}

    return probe


def expected_fingerprints(runtime_env: dict) -> dict[str, str]:
    """Fingerprint of each shipped package: the ``py_modules`` folder the run ships, else the launch node's copy."""
    shipped = {os.path.basename(os.path.normpath(str(m))): str(m) for m in runtime_env.get("py_modules") or []}
    out = {}
    for name in SHIPPED:
        folder = shipped.get(name) or os.path.dirname(os.path.abspath(importlib.import_module(name).__file__))
        out[name] = package_fingerprint(folder)
    return out


def probe_nodes(reports: list[NodeReport], expected: dict[str, str], timeout_s: float = 600.0) -> None:
    """Run the probe once on every node (node-affinity scheduling, no CPU reserved) and file what it finds."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_make_node_probe(VERL_VERSION, expected, SHIP_FIX))
    refs = {
        report.node_id: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=report.node_id, soft=False)
        ).remote()
        for report in reports
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    for report in reports:
        ref = refs[report.node_id]
        if ref not in ready:
            ray.cancel(ref, force=True)
            report.problems.append(f"no answer within {timeout_s:.0f} s (is its raylet healthy? `ray status` on the "
                                   "head)")
            continue
        try:
            answer = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - e.g. RuntimeEnvSetupError: the runtime_env cannot be built there
            report.problems.append(f"the probe could not run there: {type(err).__name__}: {str(err)[:2000]}")
            continue
        report.found.update(answer["found"])
        report.problems.extend(answer["problems"])


def check_cluster(init_kwargs: dict, *, nnodes: int, gpus_per_node: int, timeout_s: float = 600.0) -> str:
    """Check every alive node of a Ray cluster before training; raise :class:`PreflightError` naming each bad node.

    Step 1: connect with ``init_kwargs`` (what verl will pass to ``ray.init``: :func:`ray_init_kwargs`), so the
    probes get the runtime_env verl's workers get. Step 2: compare each node's GPUs in Ray's view with
    ``trainer.n_gpus_per_node`` x ``trainer.nnodes`` (:func:`check_node_gpus`). Step 3: run one probe per node
    (:func:`_make_node_probe`): the copy of recipe_care/reward_fns it imports is the launch node's, ``import verl``
    registers ``care`` and applies the patches (legacy trainer, trainer- and worker-side embeddings), the verifiers
    score a known answer. Step 4: a report line per node; any problem raises, with the node's address, id and fix.
    """
    import ray

    expected = expected_fingerprints(init_kwargs.get("runtime_env") or {})
    owns = not ray.is_initialized()
    if owns:
        ray.init(**{"log_to_driver": False, **init_kwargs})
    try:
        reports = node_reports(ray.nodes())
        cluster_problems = check_node_gpus(reports, nnodes, gpus_per_node)
        probe_nodes(reports, expected, timeout_s)
    finally:
        if owns:
            ray.shutdown()
    lines = [f"cluster: {len(reports)} alive node(s); trainer.nnodes={nnodes}, trainer.n_gpus_per_node={gpus_per_node}"]
    for report in reports:
        if report.problems:
            lines.append(f"  {report.name}: FAILED")
            lines.extend(f"    - {problem}" for problem in report.problems)
        else:
            lines.append(f"  {report.name}: ok ({report.gpus} GPU(s); 'care' registered, patches applied, verifiers "
                         f"ok; recipe_care from {report.found.get('recipe_care')})")
    lines.extend(f"  cluster: {problem}" for problem in cluster_problems)
    bad = [report.name for report in reports if report.problems]
    if bad or cluster_problems:
        raise PreflightError(f"{', '.join(bad) or 'the cluster'}: preflight failed; nothing was launched.\n"
                             + "\n".join(lines))
    return "\n".join(lines)


def run_checks(checks: list[tuple[str, Callable[[], str]]]) -> int:
    failed = 0
    for name, fn in checks:
        try:
            print(f"[preflight] {fn()}")
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the exit status says it
            failed += 1
            print(f"[preflight] FAILED {name}: {err}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe_care.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=0, help="fail unless at least this many CUDA GPUs are visible")
    parser.add_argument("--data", nargs="*", default=[], help="parquet files that must exist in verl's row schema")
    parser.add_argument("--reward-check", default=None, help="parquet file whose first row the verifier must accept")
    parser.add_argument("--cluster", metavar="ADDRESS", default=None,
                        help="check every alive node of the Ray cluster at ADDRESS (`auto` on a node of the cluster), "
                             "shipping this installation's recipe as the run scripts do")
    parser.add_argument("--nnodes", type=int, default=1, help="with --cluster: trainer.nnodes")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="with --cluster: trainer.n_gpus_per_node")
    parser.add_argument("--no-ship", action="store_true",
                        help="with --cluster: ship nothing (check what is installed on the nodes)")
    args = parser.parse_args(argv)
    checks: list[tuple[str, Callable[[], str]]] = [("plugin", check_plugin)]
    if args.gpus:
        checks.append(("gpus", lambda: check_gpus(args.gpus)))
    if args.data:
        checks.append(("data", lambda: check_data(args.data)))
    if args.reward_check:
        checks.append(("reward", lambda: check_reward(args.reward_check)))
    if args.cluster:
        init_kwargs = {"address": args.cluster, "runtime_env": {} if args.no_ship else recipe_runtime_env()}
        checks.append(("cluster", lambda: check_cluster(init_kwargs, nnodes=args.nnodes,
                                                         gpus_per_node=args.gpus_per_node)))
    return run_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
