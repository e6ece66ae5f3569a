"""Fast checks of the opt-in CPU backend (``recipe_care.cpu``) and the smoke-run builders (``recipe_care.smoke``).

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


# ---------------------------------------------------------------------------------------------------------------------
# the backend, in fresh interpreters
# ---------------------------------------------------------------------------------------------------------------------


def _check_not_loaded_without_switch():
    import verl  # noqa: F401

    print(
        json.dumps(
            {
                "cpu_modules": sorted(m for m in sys.modules
                                      if m.startswith(("recipe_care.cpu", "recipe_care.patches.cpu_backend"))),
                "care_plugin": "recipe_care._verl_plugin" in sys.modules,
            }
        )
    )


def test_gpu_run_imports_none_of_the_cpu_backend():
    out = _in_subprocess("_check_not_loaded_without_switch", backend=False)
    assert out["care_plugin"], "the verl.plugins entry point did not load recipe_care._verl_plugin"
    assert out["cpu_modules"] == []


def _check_install():
    import verl  # noqa: F401  (the plugin entry point imports recipe_care.cpu: CARE_CPU_BACKEND=1)

    assert "recipe_care.cpu" in sys.modules, "the plugin did not load the CPU backend"
    from verl.plugin.platform import PlatformRegistry, get_platform
    from verl.utils import distributed, fsdp_utils
    from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_torch_device
    from verl.workers.engine.base import EngineRegistry

    import recipe_care.cpu as backend

    before = (
        PlatformRegistry.get("cpu"),
        distributed.initialize_global_process_group_ray,
        fsdp_utils.CPUOffloadPolicy,
    )
    backend.install()  # a second install, and a re-executed module, change nothing and never raise
    importlib.reload(backend)
    after = (
        PlatformRegistry.get("cpu"),
        distributed.initialize_global_process_group_ray,
        fsdp_utils.CPUOffloadPolicy,
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
                "idempotent": all(a is b for a, b in zip(before, after)),
            }
        )
    )


def test_backend_registers_platform_and_engine_idempotently():
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
    assert out["device"] == "cpu" and out["engine"] == "FSDPEngineWithLMHead" and out["idempotent"]


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
    from recipe_care.learn_demo import learn_policy

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
            fn(processor, text, inputs, ["image", "video"])  # what Qwen2_5_VLProcessor passes
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
    from recipe_care.smoke import build_tiny_qwen25vl

    start = time.monotonic()
    path = build_tiny_qwen25vl(tiny_dir / "qwen25vl")
    assert time.monotonic() - start < 60, "the tiny Qwen2.5-VL must build in seconds"
    return path


@pytest.fixture(scope="session")
def tiny_text(tiny_dir) -> Path:
    from recipe_care.smoke import build_tiny_qwen2

    return build_tiny_qwen2(tiny_dir / "qwen2")


def test_tiny_builders_are_idempotent_and_rebuild_incomplete_folders(tiny_vl, tiny_text):
    from recipe_care.smoke import build_tiny_qwen2, build_tiny_qwen25vl
    from recipe_care.smoke.tiny_models import MARKER

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


def test_tiny_qwen3vl_has_its_patches_template_and_position_ids(tiny_dir):
    """Qwen3-VL, not a renamed Qwen2.5-VL: 16-pixel patches (a 64 x 64 image is 4 x 4 patches, 4 image tokens), no
    default system turn, interleaved M-RoPE whose image tokens get 2-D positions; head_dim 32 for vLLM's CPU
    attention."""
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from recipe_care.smoke import build_tiny_qwen3vl

    path = build_tiny_qwen3vl(tiny_dir / "qwen3vl")
    proc = AutoProcessor.from_pretrained(path, local_files_only=True)
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    assert type(proc).__name__ == "Qwen3VLProcessor" and cfg.model_type == "qwen3_vl"
    assert cfg.vision_config.patch_size == 16 and cfg.text_config.head_dim == 32
    assert cfg.text_config.rope_parameters["mrope_interleaved"] is True
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is x?"}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is x?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    inputs = proc(text=[text], images=[Image.new("RGB", (64, 64), (10, 200, 30))], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert int((inputs["input_ids"] == cfg.image_token_id).sum()) == 4
    pos, _ = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
    image = (inputs["input_ids"][0] == cfg.image_token_id).nonzero().flatten()
    assert pos.shape[:2] == (3, 1) and torch.equal(pos[0, 0, image], pos[0, 0, image[:1]].repeat(4))  # one time step
    assert pos[1, 0, image].tolist() != pos[2, 0, image].tolist()  # height and width differ across the 2 x 2 grid
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
        [sys.executable, "-m", "recipe_care.smoke.tiny_models", "--out", str(tmp_path / "t"), "--text-only"],
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
# smoke data and plumbing reward
# ---------------------------------------------------------------------------------------------------------------------


def test_smoke_reward_is_deterministic_about_half_and_shaped_like_the_verifier():
    from recipe_care.smoke.smoke_reward import compute_score
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

    from recipe_care.smoke.smoke_data import write_smoke_data

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
