"""Fast checks of the opt-in CPU backend (``recipe_care.cpu``) and the test fixtures (``recipe_care.testing``).

Importing ``recipe_care.cpu`` registers a platform and patches three verl module attributes in the importing process,
so every check that needs it runs in a fresh interpreter (``_in_subprocess``), started the way the smoke run starts
its processes: ``import verl`` with ``CARE_CPU_BACKEND=1`` / ``VERL_PLATFORM=cpu``. The pytest process itself never
imports the backend, which also keeps the other test modules unaffected.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import LEARN_POLICY_FIXTURE, run_group

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# Every verl symbol the CPU backend patches or relies on: (module, attribute path).
RELIED_ON = [
    ("verl.plugin.platform", "PlatformBase"),
    ("verl.plugin.platform", "PlatformRegistry.register"),
    ("verl.plugin.platform", "PlatformRegistry.get"),
    ("verl.workers.rollout.base", "BaseRollout"),
    ("verl.workers.rollout.base", "_ROLLOUT_REGISTRY"),
    ("verl.workers.rollout.base", "get_rollout_class"),
    ("verl.workers.rollout.replica", "RolloutReplica"),
    ("verl.workers.rollout.replica", "RolloutReplicaRegistry.register"),
    ("verl.workers.rollout.replica", "RolloutReplicaRegistry.get"),
    ("verl.workers.rollout.replica", "TokenOutput"),
    ("verl.workers.config", "HFModelConfig"),
    ("verl.utils.config", "omega_conf_to_dataclass"),
    ("verl.utils.model", "convert_weight_keys"),
    ("verl.utils.model", "get_hf_auto_model_class"),
    ("verl.workers.engine.base", "EngineRegistry.get_engine_cls"),
]


def _in_subprocess(check: str, *, backend: bool = True, extra_env: dict | None = None, timeout: int = 240):
    """Run ``tests/test_cpu_backend.py::<check>`` in a fresh interpreter; return its stdout (the check's JSON)."""
    env = dict(os.environ)
    for key in ("CARE_CPU_BACKEND", "VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES", "VERL_ENGINE_DEVICE"):
        env.pop(key, None)
    if backend:
        env.update(CARE_CPU_BACKEND="1", VERL_PLATFORM="cpu")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra_env or {})
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_cpu_backend as t; t.{check}()"
    proc = run_group(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{check} failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------------
# verl symbols (pinned 0.9.1)
# ---------------------------------------------------------------------------------------------------------------------


def _resolve(module: str, path: str):
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def test_pinned_verl_version():
    import verl

    assert verl.__version__ == "0.9.1"


@pytest.mark.parametrize("module,attr", RELIED_ON, ids=[f"{m}:{a}" for m, a in RELIED_ON])
def test_relied_on_verl_symbol_exists(module, attr):
    assert _resolve(module, attr) is not None


def test_the_patched_verl_code_is_still_what_the_patches_fix():
    from verl.utils import distributed
    from verl.workers.engine import base as engine_base
    from verl.workers.engine.fsdp import transformer_impl

    assert 'f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in inspect.getsource(
        distributed.initialize_global_process_group_ray
    )
    assert "CPUOffloadPolicy(pin_memory=True)" in inspect.getsource(transformer_impl)
    assert 'os.getenv("VERL_ENGINE_DEVICE")' in inspect.getsource(engine_base.EngineRegistry.get_engine_cls)
    # patch 6: without flash-attn, verl's log-probs loop over the rows of the flattened logits
    from verl.utils import torch_functional

    assert not torch_functional.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE
    assert "output = logprobs_from_logits_v2(logits, labels)" in inspect.getsource(
        torch_functional.logprobs_from_logits
    )
    assert "for logit in logits" in inspect.getsource(torch_functional.logprobs_from_logits_v2)


def test_hfcpu_server_answers_every_call_verl_makes_on_a_server():
    """Every ``server.<method>.remote`` that verl's replica base class and LLM client make exists on HFCPUServer."""
    from verl.workers.rollout import llm_server, replica

    called = set()
    for module in (replica, llm_server):
        called |= set(re.findall(r"server\.(\w+)\.remote\(", inspect.getsource(module)))
    assert {"generate", "sleep", "wake_up", "abort_all_requests"} <= called
    defined = set(
        re.findall(r"^    (?:async )?def (\w+)\(", (REPO / "recipe_care/cpu/hf_rollout.py").read_text(), re.MULTILINE)
    )
    assert called <= defined, f"HFCPUServer lacks {sorted(called - defined)}"


# ---------------------------------------------------------------------------------------------------------------------
# the backend, in fresh interpreters
# ---------------------------------------------------------------------------------------------------------------------


def _check_not_loaded_without_switch():
    import verl  # noqa: F401
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY

    print(
        json.dumps(
            {
                "cpu_modules": sorted(m for m in sys.modules
                                      if m.startswith(("recipe_care.cpu", "recipe_care.patches.cpu_backend"))),
                "hfcpu": ("hfcpu", "async") in _ROLLOUT_REGISTRY,
                "care_plugin": "recipe_care._verl_plugin" in sys.modules,
            }
        )
    )


def test_gpu_run_imports_none_of_the_cpu_backend():
    out = _in_subprocess("_check_not_loaded_without_switch", backend=False)
    assert out["care_plugin"], "the verl.plugins entry point did not load recipe_care._verl_plugin"
    assert out["cpu_modules"] == [] and not out["hfcpu"]


def _check_install():
    import verl  # noqa: F401  (the plugin entry point imports recipe_care.cpu: CARE_CPU_BACKEND=1)

    assert "recipe_care.cpu" in sys.modules, "the plugin did not load the CPU backend"
    from verl.plugin.platform import PlatformRegistry, get_platform
    from verl.utils import distributed, fsdp_utils
    from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_torch_device
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    import recipe_care.cpu as backend

    before = (
        PlatformRegistry.get("cpu"),
        distributed.initialize_global_process_group_ray,
        fsdp_utils.CPUOffloadPolicy,
        get_rollout_class("hfcpu"),
        RolloutReplicaRegistry.get("hfcpu"),
    )
    backend.install()  # a second install, and a re-executed module, change nothing and never raise
    importlib.reload(backend)
    after = (
        PlatformRegistry.get("cpu"),
        distributed.initialize_global_process_group_ray,
        fsdp_utils.CPUOffloadPolicy,
        get_rollout_class("hfcpu"),
        RolloutReplicaRegistry.get("hfcpu"),
    )

    mem_free, mem_total = get_torch_device().mem_get_info()
    engine = EngineRegistry.get_engine_cls("language_model", "fsdp")
    print(
        json.dumps(
            {
                "platform": type(get_platform()).__name__,
                "device": get_device_name(),
                "device_id": get_device_id(),
                "backend": get_nccl_backend(),
                "ray_resource": get_platform().ray_resource_name(),
                "mem_ok": 0 < mem_free <= mem_total,
                "engine": engine.__name__,
                "engine_device_env": os.environ.get("VERL_ENGINE_DEVICE"),
                "adapter": get_rollout_class("hfcpu").__name__,
                "replica": RolloutReplicaRegistry.get("hfcpu").__name__,
                "idempotent": all(a is b for a, b in zip(before, after)),
            }
        )
    )


def test_backend_registers_platform_engine_and_rollout_idempotently():
    out = _in_subprocess("_check_install")
    assert out == {
        "platform": "PlatformCPU",
        "device": "cpu",
        "device_id": "cpu",
        "backend": "gloo",
        "ray_resource": "GPU",
        "mem_ok": True,
        "engine": "FSDPEngineWithLMHead",
        "engine_device_env": "cuda",
        "adapter": "HFCPUServerAdapter",
        "replica": "HFCPUReplica",
        "idempotent": True,
    }


def test_backend_also_loads_as_external_module_with_plugins_off():
    """Belt and braces of cpu_smoke.sh: VERL_USE_EXTERNAL_MODULES=recipe_care.cpu alone loads it."""
    out = _in_subprocess(
        "_check_install",
        backend=False,
        extra_env={
            "VERL_PLATFORM": "cpu",
            "VERL_USE_EXTERNAL_PLUGINS": "none",
            "VERL_USE_EXTERNAL_MODULES": "recipe_care.cpu",
        },
    )
    assert out["device"] == "cpu" and out["adapter"] == "HFCPUServerAdapter" and out["idempotent"]


def _check_patches_on_verl_code_paths():
    import socket

    import torch
    import torch.distributed as dist
    import verl  # noqa: F401
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy as TorchCPUOffloadPolicy
    from torch.distributed.fsdp import fully_shard
    from verl.workers import engine_workers
    from verl.workers.engine.fsdp import transformer_impl

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
    # Patch 4: the function engine_workers imported; unpatched it asks torch for "cpu:gloo,cpu:gloo".
    engine_workers.initialize_global_process_group_ray(timeout_second=None)
    backend = str(dist.get_backend())
    # Patch 5: the policy class the FSDP engine module uses for the forward-only (ref) model, asked to pin.
    policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)
    mesh = init_device_mesh("cpu", (1,))
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    fully_shard(model, mesh=mesh, offload_policy=policy)
    out = model(torch.randn(3, 8))
    dist.destroy_process_group()
    # Patch 6: the log-probs the FSDP engine module calls, against verl's own row loop, values and gradients
    from verl.utils import torch_functional

    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 7, 50, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, 50, (2, 7))
    weights = torch.randn(2, 7, dtype=torch.float64)
    ours = transformer_impl.logprobs_from_logits(logits, labels)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    verls = torch_functional.logprobs_from_logits_v2(logits.reshape(-1, 50), labels.reshape(-1)).view(2, 7)
    (grad_verl,) = torch.autograd.grad((verls * weights).sum(), logits)
    print(
        json.dumps(
            {
                "backend": backend,
                "pin_memory": policy.pin_memory,
                "is_torch_policy": isinstance(policy, TorchCPUOffloadPolicy),
                "forward_shape": list(out.shape),
                "logprobs_patched": transformer_impl.logprobs_from_logits is torch_functional.logprobs_from_logits
                and transformer_impl.logprobs_from_logits.__module__ == "recipe_care.patches.cpu_backend",
                "logprobs_shape": list(ours.shape),
                "logprobs_max_diff": float((ours - verls).abs().max()),
                "logprobs_grad_max_diff": float((grad_ours - grad_verl).abs().max()),
                "logprobs_are_log_probs": bool(ours.max() < 0),
            }
        )
    )


def test_patches_make_verl_process_group_fsdp2_offload_and_logprobs_work_on_cpu():
    out = _in_subprocess("_check_patches_on_verl_code_paths")
    assert out.pop("logprobs_max_diff") < 1e-12 and out.pop("logprobs_grad_max_diff") < 1e-12
    assert out == {"backend": "cpu:gloo", "pin_memory": False, "is_torch_policy": True, "forward_shape": [3, 2],
                   "logprobs_patched": True, "logprobs_shape": [2, 7], "logprobs_are_log_probs": True}


def _check_mm_token_check_patch() -> None:
    """Patch 7 against transformers' own check: same verdicts, same error, on the learning run's processor."""
    import torch
    import verl  # noqa: F401  (the plugin installs the backend, as in every process of a CPU run)
    from transformers import AutoProcessor
    from transformers.processing_utils import ProcessorMixin

    from recipe_care.patches import is_marked
    from recipe_care.testing import learn_policy

    patched = ProcessorMixin._check_special_mm_tokens
    original = patched.__wrapped__
    processor = AutoProcessor.from_pretrained(LEARN_POLICY_FIXTURE)
    pad = processor.image_token
    text = [f"look {pad}{pad} here", f"{pad} once", "no image"]
    ids = processor.tokenizer(text, padding=True, return_tensors="pt")
    cut = {"input_ids": ids["input_ids"][:, :2]}  # truncated: the counts no longer agree
    listed = processor.tokenizer(text)  # lists, not a tensor: the original's path

    def verdict(fn, inputs):
        try:
            fn(processor, text, inputs, ["image", "video", "audio"])
            return "ok"
        except ValueError as err:
            return str(err)

    items = [learn_policy._warm_item(0, i) for i in range(3)]
    enc = processor(text=[learn_policy.prompt_text(processor, it.question) for it in items],
                    images=[learn_policy.load_image(it.png) for it in items], padding=True, return_tensors="pt")
    print(json.dumps({
        "patched": is_marked(patched) and patched.__code__.co_filename.endswith("cpu_backend.py"),
        "verdicts": [verdict(fn, inputs) for inputs in (ids, cut, listed) for fn in (patched, original)],
        "image_tokens": (enc["input_ids"] == processor.image_token_id).sum(-1).tolist(),
    }))


def test_mm_token_check_patch_gives_transformers_verdicts():
    out = _in_subprocess("_check_mm_token_check_patch")
    ok, ok_orig, bad, bad_orig, listed, listed_orig = out["verdicts"]
    assert out["patched"] is True
    assert ok == ok_orig == "ok" and listed == listed_orig == "ok"
    assert bad == bad_orig and bad.startswith("Mismatch in `image` token count") and "text=[2, 1, 0]" in bad
    assert out["image_tokens"] == [16, 16, 16]  # a real processor call with images passes the patched check


def test_vectorized_logprobs_docstring_example():
    """Patch 6's ``>>>`` example (importing the module installs nothing; only ``install()`` patches verl)."""
    import doctest

    from recipe_care.patches import cpu_backend

    result = doctest.testmod(cpu_backend)
    assert result.attempted > 0 and result.failed == 0, result


# ---------------------------------------------------------------------------------------------------------------------
# tiny models
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_vl(tiny_dir) -> Path:
    from recipe_care.testing import build_tiny_qwen25vl

    start = time.monotonic()
    path = build_tiny_qwen25vl(tiny_dir / "qwen25vl")
    assert time.monotonic() - start < 60, "the tiny Qwen2.5-VL must build in seconds"
    return path


@pytest.fixture(scope="session")
def tiny_text(tiny_dir) -> Path:
    from recipe_care.testing import build_tiny_qwen2

    return build_tiny_qwen2(tiny_dir / "qwen2")


def test_tiny_builders_are_idempotent_and_rebuild_incomplete_folders(tiny_vl, tiny_text):
    from recipe_care.testing import build_tiny_qwen2, build_tiny_qwen25vl
    from recipe_care.testing.tiny_models import MARKER

    weights = tiny_vl / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_tiny_qwen25vl(tiny_vl) == tiny_vl
    assert weights.stat().st_mtime_ns == stamp, "a complete folder must be reused, not rebuilt"

    (tiny_text / MARKER).unlink()  # an interrupted build: no marker
    assert build_tiny_qwen2(tiny_text) == tiny_text
    assert (tiny_text / MARKER).is_file() and (tiny_text / "model.safetensors").is_file()
    # a folder of the other kind is not taken for complete
    other = tiny_text.parent / "kind-mismatch"
    build_tiny_qwen2(other)
    assert json.loads((build_tiny_qwen25vl(other) / MARKER).read_text())["kind"] == "qwen2_5_vl"


def test_tiny_vl_loads_offline_with_qwen_tokens_template_and_processor(tiny_vl):
    from PIL import Image
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_vl, local_files_only=True)
    proc = AutoProcessor.from_pretrained(tiny_vl, local_files_only=True)
    cfg = AutoConfig.from_pretrained(tiny_vl, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vl, local_files_only=True)

    assert type(proc).__name__ == "Qwen2_5_VLProcessor" and cfg.model_type == "qwen2_5_vl"
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 0 == tok.pad_token_id
    assert tok.eos_token == "<|im_end|>"
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.text_config.vocab_size == len(tok)
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        ids = tok.encode(tag, add_special_tokens=False)
        assert len(ids) == 1 and ids[0] not in tok.all_special_ids, tag
    assert len(tok.encode("x = 180 - 60 - 70 = 50", add_special_tokens=False)) <= 14

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is x?"}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>What is x?<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = proc(text=[text], images=[Image.new("RGB", (300, 200), (10, 200, 30))], return_tensors="pt")
    n_pad = int((inputs["input_ids"] == cfg.image_token_id).sum())
    assert n_pad == int(inputs["image_grid_thw"].prod()) // 4 and 1 <= n_pad <= 16, "tiny max_pixels keeps images small"
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_tiny_text_model_loads_offline_and_generates(tiny_text):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_text, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_text, local_files_only=True)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.vocab_size == len(tok)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "1+1?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert model.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] > ids["input_ids"].shape[1]


def test_tiny_models_cli(tmp_path):
    proc = run_group(
        [sys.executable, "-m", "recipe_care.testing.tiny_models", "--out", str(tmp_path / "t"), "--text-only"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "t")
    assert (tmp_path / "t" / "config.json").is_file()


# ---------------------------------------------------------------------------------------------------------------------
# the hfcpu server (in a fresh interpreter: importing it installs the backend)
# ---------------------------------------------------------------------------------------------------------------------


def _check_hfcpu_server():
    import torch
    import verl  # noqa: F401
    from PIL import Image
    from verl.workers.config import RolloutConfig

    from recipe_care.cpu.hf_rollout import HFCPUServer, _mm_token_type_ids

    model_dir = os.environ["TINY_VL"]
    config = RolloutConfig(name="hfcpu", prompt_length=256, response_length=24, tensor_model_parallel_size=1)
    server = HFCPUServer(config=config, model_config={"path": model_dir}, replica_rank=0)
    tok, proc = server.tokenizer, server.processor
    special = set(tok.all_special_ids) - {tok.eos_token_id}

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is x?"}]}]
    image = Image.new("RGB", (120, 90), (200, 10, 10))
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = proc(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()

    def generate(params):
        return asyncio.run(
            server.generate(prompt_ids=prompt_ids, sampling_params=dict(params), request_id="r", image_data=[image])
        )

    # Log-probs are the model's own (raw logits / temperature): recompute them with one teacher-forced forward.
    out = generate({"temperature": 0.7, "top_p": 1.0, "top_k": -1, "logprobs": True})
    full = torch.tensor([prompt_ids + out.token_ids])
    vision = proc.image_processor(images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = server.model(
            input_ids=full,
            attention_mask=torch.ones_like(full),
            pixel_values=vision["pixel_values"],
            image_grid_thw=vision["image_grid_thw"],
            mm_token_type_ids=_mm_token_type_ids(full, server.image_token_id, server.video_token_id),
        ).logits[0, len(prompt_ids) - 1 : -1]
    ref = torch.log_softmax(logits / 0.7, -1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
    max_lp_err = float((ref - torch.tensor(out.log_probs)).abs().max())
    greedy_a, greedy_b = generate({"temperature": 0}).token_ids, generate({"temperature": 0}).token_ids

    # Make special tokens overwhelmingly likely: push a modified lm_head through update_weights (the weight-sync path).
    lm_key = next(k for k, v in server._key_map.items() if v.endswith("lm_head.weight"))
    weight = server.model.state_dict()[server._key_map[lm_key]].clone()
    probe = torch.nn.functional.normalize(torch.randn(weight.shape[1]), dim=0) * 50
    rigged = torch.zeros_like(weight)
    for j, i in enumerate(sorted(special)):
        rigged[i] = probe if j % 2 else -probe  # whatever the hidden state, half the specials get a large logit
    stats = asyncio.run(server.update_weights({lm_key: rigged}))
    synced = torch.equal(server.model.state_dict()[server._key_map[lm_key]], rigged)
    sampled = []
    for _ in range(4):
        sampled += generate({"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": False}).token_ids
    # control: the same rigged model without suppression samples special tokens
    with torch.no_grad():
        ids = torch.tensor([prompt_ids])
        raw = server.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=vision["pixel_values"],
            image_grid_thw=vision["image_grid_thw"],
            mm_token_type_ids=_mm_token_type_ids(ids, server.image_token_id, server.video_token_id),
            do_sample=True,
            max_new_tokens=8,
            eos_token_id=None,
        )[0, len(prompt_ids) :].tolist()
    try:
        asyncio.run(server.update_weights({"not.a.weight": rigged}))
        unknown_rejected = False
    except KeyError:
        unknown_rejected = True
    print(
        json.dumps(
            {
                "n_tokens": len(out.token_ids),
                "n_logprobs": len(out.log_probs),
                "stop_reason": out.stop_reason,
                "max_lp_err": max_lp_err,
                "greedy_deterministic": greedy_a == greedy_b,
                "no_logprobs_when_not_asked": generate({"temperature": 0}).log_probs is None,
                "suppressed_are_specials_minus_eos": sorted(server.suppress_ids) == sorted(special),
                "sync_stats": stats,
                "synced": synced,
                "sampled_specials": sorted(set(sampled) & special),
                "sampled_any": len(sampled) > 0,
                "control_specials": len(set(raw) & special) > 0,
                "unknown_rejected": unknown_rejected,
            }
        )
    )


def test_hfcpu_server_generates_with_image_exact_logprobs_and_never_samples_special_tokens(tiny_vl):
    out = _in_subprocess("_check_hfcpu_server", extra_env={"TINY_VL": str(tiny_vl)})
    assert 1 <= out["n_tokens"] <= 24 and out["n_logprobs"] == out["n_tokens"]
    assert out["stop_reason"] == "completed"
    assert out["max_lp_err"] < 1e-4, "rollout log-probs must be the raw model log-probs / temperature"
    assert out["greedy_deterministic"] and out["no_logprobs_when_not_asked"]
    assert out["suppressed_are_specials_minus_eos"]
    assert out["sync_stats"]["tensors"] == 1 and out["sync_stats"]["max_abs_delta"] > 0 and out["synced"]
    assert out["control_specials"], "control: the rigged model must favour special tokens without suppression"
    assert out["sampled_any"] and out["sampled_specials"] == []
    assert out["unknown_rejected"]


# ---------------------------------------------------------------------------------------------------------------------
# smoke data and plumbing reward
# ---------------------------------------------------------------------------------------------------------------------


def test_smoke_reward_is_deterministic_about_half_and_shaped_like_the_verifier():
    from recipe_care.testing.smoke_reward import compute_score
    from reward_fns.verdict import RESULT_KEYS

    texts = [f"<think>step {i}</think><answer>{i % 7}</answer>" for i in range(400)]
    results = [compute_score("mathvision_test", t, "3", {"index": 0}) for t in texts]
    assert all(tuple(r) == RESULT_KEYS for r in results)
    assert [compute_score("x", t, "3")["acc"] for t in texts] == [r["acc"] for r in results]
    rate = sum(r["acc"] for r in results) / len(results)
    assert 0.4 < rate < 0.6
    assert all(r["score"] == r["acc"] and r["acc"] in (0.0, 1.0) for r in results)
    assert all(r["format"] == 1.0 and r["extracted"] == 1.0 and isinstance(r["pred"], str) for r in results)
    bad = compute_score("x", "no tags", "3")
    assert bad["format"] == 0.0 and bad["extracted"] == 0.0 and bad["pred"] == ""


def test_smoke_data_from_data_prep_rows(fixtures_dir, tmp_path):
    import io

    import pandas as pd
    from PIL import Image

    from recipe_care.testing.smoke_data import write_smoke_data

    prep = run_group(
        [
            sys.executable,
            "-m",
            "data_prep.mathvision",
            "--local-path",
            str(fixtures_dir / "mathvision"),
            "--out",
            str(tmp_path / "prepared"),
            "--quiet",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert prep.returncode == 0, prep.stderr[-3000:]
    prepared = next((tmp_path / "prepared").glob("*.parquet"))
    source = pd.read_parquet(prepared)

    vl = write_smoke_data(prepared, tmp_path / "vl", max_prompt_chars=700)
    train, val = pd.read_parquet(vl / "train.parquet"), pd.read_parquet(vl / "val.parquet")
    assert len(train) == 4 and len(val) == 4
    assert list(train.columns) == list(source.columns)
    ids = [e["id"] for e in pd.concat([train, val]).extra_info]
    assert len(set(ids)) == 8 and set(ids) <= {e["id"] for e in source.extra_info}
    for _, row in train.iterrows():
        content = row.prompt[0]["content"]
        assert content.count("<image>") == len(row.images) == 1 and len(content) <= 700
        assert max(Image.open(io.BytesIO(row.images[0]["bytes"])).size) <= 56
        original = source[source.extra_info.map(lambda e: e["id"]) == row.extra_info["id"]].iloc[0]
        assert content == original.prompt[0]["content"]
        assert row.reward_model["ground_truth"] == original.reward_model["ground_truth"]

    text = write_smoke_data(prepared, tmp_path / "text", text_only=True)
    rows = pd.read_parquet(text / "train.parquet")
    assert "images" not in rows.columns and not any("<image>" in p[0]["content"] for p in rows.prompt)
