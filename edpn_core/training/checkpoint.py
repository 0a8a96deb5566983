"""Checkpoint contents that are not the network: random state in plain types, and reading a checkpoint back
with one-line errors that name the previous good one."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..archs import with_current_names


def rng_state() -> dict:
    """Every generator a run may draw from, in plain types so checkpoints load with weights_only=True."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in numpy_state["state"].items()}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = dict(numpy_state["state"], key=np.asarray(numpy_state["state"]["key"], np.uint32))
    np.random.set_state(numpy_state)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "rng", "config")


def read_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's contents, or a one-line ValueError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint there")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a checkpoint (the previous one is {previous_checkpoint(path)})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and unpickler errors vary with how the file is broken
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: truncated or not a PyTorch checkpoint ({reason}); the previous one is "
                         f"{previous_checkpoint(path)}") from exc
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path}: not an EDPN Restore training checkpoint (no {', '.join(missing)})")
    for key in ("model", "model_raw"):
        if isinstance(state.get(key), dict):
            state[key] = with_current_names(state[key])
    return state


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)
