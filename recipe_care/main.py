"""The recipe's entry point: ``python -m recipe_care.main [hydra overrides]``.

It composes ``recipe_care/config/care_trainer.yaml`` (verl's ``ppo_trainer`` plus CARE, RGR, the verifiers and the
legacy trainer), checks the plugin (``recipe_care.preflight``), validates the CARE/RGR sections, checks every node of
the Ray cluster when the run connects to one, and hands the config to verl's own ``verl.trainer.main_ppo.main`` — no
copy of verl's training loop.

``CARE_DRY_RUN=1`` composes and validates the full config (verl's ``validate_config`` included), prints it as YAML and
exits without starting Ray or touching a GPU.

A run that fails or is stopped by SIGTERM/SIGINT/SIGHUP ends its output with one line, ``[care] stopped: <why>`` (the
exception, or the signal), after the traceback and after ``ray.shutdown()`` has stopped the Ray cluster the run
started (its TaskRunner, workers and rollout engines); it exits with 1, or 128 + the signal's number. (SIGKILL cannot
be caught: the run scripts write that line from the exit status, run_scripts/_long_runs.sh.)
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import hydra
from omegaconf import DictConfig, OmegaConf


def validate_recipe_config(config: DictConfig) -> None:
    """Build the CARE/RGR dataclasses (unknown keys and bad values raise) and check the trainer choice; a run that
    asks for hidden-state embeddings (``algorithm.care.similarity=hidden``) with a config that cannot pool them
    (fused kernels, a non-FSDP actor) is refused here rather than at the first training step."""
    from recipe_care.config import CareConfig, RgrConfig
    from recipe_care.patches.hidden_states import unsupported_reason

    care = CareConfig.from_omegaconf(config.algorithm.get("care"))
    RgrConfig.from_omegaconf(config.algorithm.get("rgr"))
    if config.algorithm.adv_estimator == "care":
        if config.trainer.get("use_v1", True):
            raise ValueError("algorithm.adv_estimator=care needs verl's legacy trainer: set trainer.use_v1=False")
        reason = unsupported_reason(config) if care.similarity == "hidden" else None
        if reason:
            raise ValueError(f"algorithm.care.similarity=hidden cannot work with this config: {reason}")


def dry_run(config: DictConfig) -> str:
    """Compose-time checks without GPUs: recipe sections plus verl's own ``validate_config``."""
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    validate_recipe_config(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return OmegaConf.to_yaml(config, resolve=True)


def cluster_preflight(config: DictConfig) -> str | None:
    """Before verl starts: on a Ray cluster (``ray_kwargs.ray_init.address`` or ``RAY_ADDRESS``) check every alive
    node with the runtime_env verl will use (``recipe_care.preflight.check_cluster``); ``trainer.nnodes > 1``
    without a cluster address is refused (verl would start a one-node Ray instance and wait for the others).
    Returns the report, or None for a run that starts its own single-node Ray instance (its workers share this
    machine and this environment, which ``check_plugin`` checked)."""
    from recipe_care.preflight import PreflightError, check_cluster, cluster_address, ray_init_kwargs

    nnodes = int(config.trainer.nnodes)
    address = cluster_address(config)
    if not address:
        if nnodes > 1:
            raise PreflightError(
                f"trainer.nnodes={nnodes} needs a running Ray cluster: start the head and the workers "
                "(docs/run_scripts.md, 'Several nodes') and pass its address (RAY_ADDRESS=<head>:6379, or "
                "ray_kwargs.ray_init.address=...)"
            )
        return None
    gpus = int(config.trainer.n_gpus_per_node) if config.trainer.get("device", "cuda") != "cpu" else 0
    return check_cluster(ray_init_kwargs(config), nnodes=nnodes, gpus_per_node=gpus)


class RunInterrupted(BaseException):
    """Raised in the main thread by a stop signal (a BaseException, so no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _raise_on_stop_signal(signum, frame) -> None:
    for sig in STOP_SIGNALS:  # a second signal must not break the clean-up the first one started
        signal.signal(sig, signal.SIG_IGN)
    raise RunInterrupted(signum)


def stop_reason(err: BaseException) -> str:
    """One line: the signal, or the exception (for a Ray task error, the exception the task raised)."""
    if isinstance(err, RunInterrupted):
        return f"interrupted by {signal.Signals(err.signum).name}"
    if isinstance(err, KeyboardInterrupt):
        return "interrupted by SIGINT (KeyboardInterrupt)"
    cause = getattr(err, "cause", None)  # ray.exceptions.RayTaskError / RayActorError carry the original
    shown = cause if isinstance(cause, BaseException) else err
    message = next((line.strip() for line in str(shown).splitlines() if line.strip()), "")
    where = f" (in a Ray task: {type(err).__name__})" if shown is not err else ""
    text = f"{type(shown).__name__}: {message}" if message else type(shown).__name__
    return (text[:400] + " ...") if len(text) > 400 else text + where


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception as err:  # noqa: BLE001  (the stop line must still be printed)
        print(f"[care] ray.shutdown() failed: {err!r}", file=sys.stderr, flush=True)


def run_and_say_why(fn, *args) -> None:
    """``fn(*args)``; on an exception or a stop signal: the traceback, ``ray.shutdown()``, then the one stop line on
    stdout and stderr, and ``SystemExit`` (1, or 128 + the signal)."""
    previous = {sig: signal.signal(sig, _raise_on_stop_signal) for sig in STOP_SIGNALS}
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, SystemExit) and err.code in (0, None):
            _shutdown_ray()
            raise
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if isinstance(err, SystemExit):  # an exit with a message (str) or a status
            reason = err.code if isinstance(err.code, str) else f"exit status {err.code}"
            code = err.code if isinstance(err.code, int) else 1
        elif isinstance(err, RunInterrupted):
            reason, code = stop_reason(err), 128 + err.signum
        else:
            traceback.print_exc()
            reason, code = stop_reason(err), 130 if isinstance(err, KeyboardInterrupt) else 1
        _shutdown_ray()
        sys.stderr.flush()
        print(f"[care] stopped: {reason}", flush=True)
        raise SystemExit(code) from None
    else:
        _shutdown_ray()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@hydra.main(config_path="config", config_name="care_trainer", version_base=None)
def main(config: DictConfig) -> None:
    run_and_say_why(_main, config)


def _main(config: DictConfig) -> None:
    from recipe_care.preflight import PreflightError, check_plugin

    print(f"[care] {check_plugin()}", flush=True)
    if os.environ.get("CARE_DRY_RUN", "0") == "1":
        print(dry_run(config), flush=True)
        print("[care] dry run: config composed and validated; nothing was launched", flush=True)
        return
    validate_recipe_config(config)
    try:
        report = cluster_preflight(config)
    except PreflightError as err:
        print(f"[preflight] FAILED {err}", file=sys.stderr, flush=True)
        raise SystemExit("preflight failed (the [preflight] FAILED message above)") from None
    if report:
        print("[preflight] " + report.replace("\n", "\n[preflight] "), flush=True)
    from verl.trainer.main_ppo import main as verl_main

    verl_main(config)  # hydra.main passes a composed config straight through


if __name__ == "__main__":
    sys.exit(main())
