"""``onellm env``: what this machine has, every field detected (nothing assumed): paste it into a bug report.

Package versions come from the installed distributions' metadata (no import: DeepSpeed and flash-attn are not
imported, so a broken build cannot hide the rest); torch is imported for its CUDA build, cuDNN, the GPUs it sees
(name, memory, compute capability) and bf16 support. ``nvidia-smi`` (when on PATH) gives the driver version.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

# (label, distribution names tried in order); torch is reported from the import itself
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("transformers", ("transformers",)),
    ("open_clip", ("open_clip_torch", "open-clip-torch")),
    ("deepspeed", ("deepspeed",)),
    ("accelerate", ("accelerate",)),
    ("flash-attn", ("flash-attn", "flash_attn")),
    ("peft", ("peft",)),
    ("bitsandbytes", ("bitsandbytes",)),
    ("safetensors", ("safetensors",)),
    ("tokenizers", ("tokenizers",)),
    ("sentencepiece", ("sentencepiece",)),
    ("numpy", ("numpy",)),
    ("decord", ("decord", "eva-decord")),
    ("av", ("av",)),
    ("soundfile", ("soundfile", "SoundFile")),
    ("trimesh", ("trimesh",)),
    ("pillow", ("pillow", "Pillow")),
    ("tensorboard", ("tensorboard",)),
    ("wandb", ("wandb",)),
    ("matplotlib", ("matplotlib",)),
    ("vllm", ("vllm",)),
    ("gradio", ("gradio",)),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of aligned lines")


def package_version(names: tuple[str, ...]) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _nvidia_smi_driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    versions = sorted({line.strip() for line in out.splitlines() if line.strip()})
    return ", ".join(versions) or None


def torch_info() -> dict[str, Any]:
    """torch's build and the accelerators it sees; ``{"torch": None}`` when torch cannot be imported."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install is what this command must show
        return {"torch": None, "torch_error": f"{type(exc).__name__}: {exc}"}
    info: dict[str, Any] = {"torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
                            "torch_hip_build": getattr(torch.version, "hip", None),
                            "cuda_available": torch.cuda.is_available(),
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "torch_threads": torch.get_num_threads(),
                            "mps_available": bool(getattr(torch.backends, "mps", None)
                                                  and torch.backends.mps.is_available())}
    gpus = []
    if info["cuda_available"]:
        for k in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(k)
            gpus.append({"index": k, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "compute_capability": f"{props.major}.{props.minor}"})
        info["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    else:
        info["bf16_supported"] = None
    info["gpus"] = gpus
    info["nccl"] = (".".join(map(str, torch.cuda.nccl.version())) if info["cuda_available"]
                    and hasattr(torch.cuda, "nccl") else None)
    return info


def collect() -> dict[str, Any]:
    from ..version import __version__

    info: dict[str, Any] = {
        "onellm": __version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    info.update(torch_info())
    info["nvidia_driver"] = _nvidia_smi_driver()
    info["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    info["packages"] = {label: package_version(names) for label, names in PACKAGES}
    return info


# what a None means, per field (default "none")
ABSENT = {"bf16_supported": "n/a (no CUDA GPU)", "nccl": "n/a (no CUDA GPU)", "cudnn": "not available",
          "nvidia_driver": "not found (no nvidia-smi on PATH)", "CUDA_VISIBLE_DEVICES": "unset",
          "torch": "not importable", "usable_cpus": "unknown"}


def format_env(info: dict[str, Any]) -> list[str]:
    def show(key: str, value) -> str:
        if value is None:
            return ABSENT.get(key, "none")
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    rows = [(k, show(k, v)) for k, v in info.items() if k not in ("packages", "gpus")]
    gpus = info.get("gpus") or []
    rows.append(("gpus", str(len(gpus)) if gpus else "none"))
    for g in gpus:
        rows.append((f"  gpu {g['index']}", f"{g['name']}, {g['memory_gib']} GiB, compute capability "
                                            f"{g['compute_capability']}"))
    rows += [(name, v if v is not None else "not installed") for name, v in info["packages"].items()]
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(format_env(info)))
    return 0
