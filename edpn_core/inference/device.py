"""Which device a restore or training runs on, what it is called, and how much memory it has free.

One listing (`available_devices`) serves the CLI's `info`, the benchmark and the app's device menu.
"""
from __future__ import annotations

import psutil
import torch


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[tuple[str, str]]:
    """(device name for `select_device`, label for people) of every device present: each CUDA GPU, Apple's GPU,
    then the CPU, fastest first."""
    devices = [(f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}") for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append(("mps", "Apple GPU (MPS)"))
    return devices + [("cpu", "CPU")]


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


# Where restores and training run; torch names other kinds (meta, xla, ...) that compute no pixels.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(name: str) -> torch.device:
    """An explicit device name as torch reads it, refused in one line unless it is a kind this program runs on."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise ValueError(f"--device {name}: not a device to run on; use auto, cpu, cuda, cuda:N or mps")
    return device


def select_device(name: str = "auto") -> torch.device:
    """CUDA, else Apple MPS, else CPU; an explicit name is honoured or refused clearly."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = parse_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA GPU is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not _mps_available():
        raise ValueError("MPS was requested but is not available")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU, {torch.get_num_threads()} threads"


def available_memory_bytes(device: torch.device) -> int:
    """Memory a tile may use without swapping: on a CPU the page cache counts as available (the OS hands it back),
    so a machine that has just read gigabytes of files does not get tiles sized for its bare free pages."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available
