"""What a measurement records of where it ran: the device, its driver, CUDA or ROCm, torch,
and the command as a user would retype it (profiles and reference runs alike)."""

from __future__ import annotations

import platform
import subprocess

import torch

from profiles.profile_format import command_line

__all__ = ["command_line", "device_facts"]


def device_facts(device: str) -> dict[str, str]:
    """What a measurement must record of its device: name, driver, CUDA/ROCm, torch."""
    dev = torch.device(device)
    return {"name": _device_name(dev), "driver": _driver(), "runtime": _runtime(dev),
            "torch": torch.__version__}


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU {platform.processor() or platform.machine()}"


def _runtime(dev: torch.device) -> str:
    if dev.type != "cuda":
        return "cpu"
    if torch.version.hip:
        return f"ROCm {torch.version.hip}"
    return f"CUDA {torch.version.cuda}"


def _driver() -> str:
    for command in (["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    ["rocm-smi", "--showdriverversion"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[0]
    return "n/a"
