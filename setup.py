"""Install the CARE recipe for verl: ``pip install -e ".[test]"`` (CPU) or ``pip install -e ".[gpu]"`` (GPU nodes).

Install a pinned torch *before* this package (``run_scripts/test.sh`` does): verl's dependencies do not pin torch,
and an unpinned resolve pulls a multi-GB CUDA build.
"""

from setuptools import find_packages, setup

VERL = "verl[verl-core]==0.9.1"

install_requires = [
    VERL,
    # verl 0.9.1 imports orjson (verl/utils/tracking.py) without declaring it.
    "orjson>=3.9",
    # Math equivalence for the verifiers; their own undeclared imports are pinned beside them.
    "math-verify==0.9.0",
    "latex2sympy2-extended==1.11.0",
    "mathruler==0.1.0",
    # mathruler declares no dependencies but imports pylatexenc and sympy (tested versions pinned);
    # latex2sympy2-extended declares sympy and antlr4-python3-runtime (4.9.3, which hydra/omegaconf also pin).
    "pylatexenc==2.11",
    "sympy==1.14.0",
    "qwen-vl-utils>=0.0.11",
    "datasets>=3.0",
    "pyarrow>=19.0.0",
    "pillow>=10.0",
    "tqdm>=4.66",
    "numpy>=2.0.0",
    "omegaconf>=2.3",
    "hydra-core>=1.3",
    "psutil>=5.9",
]

extras_require = {
    # GPU nodes: verl's own vLLM + FSDP extras (torch 2.11, vllm 0.24, flash-attn 2.8.3). Never install on CPU hosts.
    "gpu": ["verl[vllm,fsdp]==0.9.1"],
    "test": [
        "pytest>=8.0",
        "pytest-timeout==2.4.0",
        # run_scripts/test.sh runs the suite in 2 workers
        "pytest-xdist==3.8.0",
        "pytest-asyncio>=0.23",
        "hypothesis==6.170.15",
        # plots of the CPU learning run (recipe_care.learn_demo.learn_curves, run_scripts/cpu_learn.sh)
        "matplotlib==3.10.9",
    ],
}

setup(
    name="recipe-care",
    version="0.1.0",
    description="CARE (Contrastive Anchored REflection) advantage estimator and RGR for verl 0.9.1",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["recipe_care", "recipe_care.*", "reward_fns", "reward_fns.*", "data_prep", "data_prep.*"]),
    package_data={"recipe_care": ["config/*.yaml"]},
    include_package_data=True,
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={
        # Loaded by verl on every `import verl` (driver, TaskRunner, every Ray worker).
        "verl.plugins": ["care = recipe_care._verl_plugin"],
        # Loaded by vLLM in each of its processes (engine core, executor workers); a no-op unless CARE_CPU_BACKEND=1
        # and vLLM runs on its CPU platform (recipe_care/patches/vllm_cpu.py).
        "vllm.general_plugins": ["care_cpu = recipe_care.patches.vllm_cpu:install"],
        "console_scripts": ["care-preflight = recipe_care.preflight:main"],
    },
)
