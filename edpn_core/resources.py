"""Where the shipped weights and sample photo live: beside the package, or inside a frozen app."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import Task
from .model_io import read_weights_info


def bundle_root() -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    return Path(frozen) if frozen else Path(__file__).resolve().parent.parent


def weights_dir() -> Path:
    return Path(os.environ.get("EDPN_WEIGHTS_DIR", bundle_root() / "weights"))


def sample_image() -> Path:
    return bundle_root() / "resources" / "sample.png"


def shipped_weights(task: Task) -> dict[str, Path]:
    """preset -> file for the task, read from each file's own metadata rather than its name."""
    found: dict[str, Path] = {}
    for path in sorted(weights_dir().glob("*.safetensors")):
        info = read_weights_info(path)
        if info.task == task:
            found.setdefault(info.preset, path)
    return found


def default_weights(task: Task, device_type: str) -> Path:
    """The paper preset on a GPU when shipped, the lite preset on the CPU (it is ~10x cheaper)."""
    found = shipped_weights(task)
    order = ("paper", "lite") if device_type in ("cuda", "mps") else ("lite", "paper")
    for preset in order:
        if preset in found:
            return found[preset]
    if found:
        return next(iter(found.values()))
    raise FileNotFoundError(f"no shipped weights for task {task!r} in {weights_dir()}")
