"""A ``cpu`` platform for verl's platform plugin API (``verl.plugin.platform.PlatformRegistry``).

verl 0.9.1 registers only ``nvidia``, ``npu`` and ``rocm``; auto-detection falls back to ``nvidia``, and the FSDP
engine then calls ``torch.cuda.set_device`` and dies on a machine without a GPU. With this class registered under
``"cpu"`` and ``VERL_PLATFORM=cpu`` exported, ``get_device_name()`` is ``"cpu"``, the collective backend is gloo,
and ``get_torch_device()`` is :data:`CPU_DEVICE_MODULE`, a stand-in for ``torch.cuda`` backed by ``torch.cpu``. It is
registered by ``recipe_care.patches.cpu_backend.register_cpu_platform``.

Two choices matter:

* ``ray_resource_name`` stays ``"GPU"``: verl's resource pools always ask Ray for GPUs, so the CPU scripts start Ray
  with logical GPUs (``+ray_kwargs.ray_init.num_gpus=1``) and the workers are scheduled on those.
* ``current_device()`` returns the string ``"cpu"``, not ``0``: verl does ``tensor.to(get_device_id())`` and
  ``torch.device(get_device_id())``, and ``0`` would mean ``cuda:0``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform import PlatformBase

PLATFORM_NAME = "cpu"


class _CPUDeviceModule:
    """What verl calls on ``get_torch_device()`` (a ``torch.cuda``-like namespace), answered for the CPU.

    Streams, events, ``synchronize``, ``device_count`` … come from ``torch.cpu``; memory statistics are 0 (there is
    no device memory), ``mem_get_info`` reports host memory, the RNG state is the CPU generator's, and cache/IPC
    calls are no-ops.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def current_device() -> str:
        return "cpu"

    @staticmethod
    def set_device(device: Any) -> None:
        return None

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        return "cpu"

    @staticmethod
    def empty_cache() -> None:
        return None

    @staticmethod
    def ipc_collect() -> None:
        return None

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        return None

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    @staticmethod
    def reset_peak_memory_stats(device: Any = None) -> None:
        return None

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)

    @staticmethod
    def get_rng_state(device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed


CPU_DEVICE_MODULE = _CPUDeviceModule()


class PlatformCPU(PlatformBase):
    """verl platform for hosts without an accelerator: device ``cpu``, collectives over gloo."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self):
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: only an explicit VERL_PLATFORM=cpu selects it.
        return False

    def current_device(self):
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for the logical GPUs; nothing reads it on the CPU.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None

