"""Checkpoint contents that are not the network: random state in plain types, reading a checkpoint back with
one-line errors, and finding the newest readable one of a checkpoint and the previous one it keeps."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..model_io import check_values, load_pth, settings_json, tensor_state


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
    """A training checkpoint's contents, or a one-line ValueError naming the file and what is wrong with it.
    Read as weights are (model_io.load_pth: nothing in it runs), its weights checked finite and plausible."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint there")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a checkpoint")
    loaded = load_pth(path)
    state = loaded if isinstance(loaded, dict) else {}
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: not an EDPN Restore training checkpoint (no {', '.join(missing)})")
    if not isinstance(settings_json(path, state["config"], "the checkpoint's training config"), dict):
        raise ValueError(f"{path}: the checkpoint's training config is not a mapping of settings")
    if not isinstance(state["iteration"], int) or isinstance(state["iteration"], bool) or state["iteration"] < 0:
        raise ValueError(f"{path}: the checkpoint's iteration is not a count ({state['iteration']!r})")
    for key in ("model", "model_raw"):
        if key in state:
            state[key] = tensor_state(path, state[key], key)
            check_values(path, state[key])
    return state


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def newest_checkpoint(path: str | Path) -> tuple[Path, dict, list[str]]:
    """Checkpoint `path`, or when it cannot be read the one kept before it (`previous_checkpoint`): a save writes
    the new file whole before renaming the latest to the previous, so a crash at any instant leaves one of the
    two and the previous is never the newer. Returns the path read, its contents and why `path` was passed over."""
    path, previous = Path(path), previous_checkpoint(Path(path))
    try:
        return path, read_checkpoint(path), []
    except ValueError as exc:
        problem = str(exc)
    if not previous.exists():
        raise ValueError(f"{problem}; no {previous.name} either")
    try:
        return previous, read_checkpoint(previous), [problem]
    except ValueError as exc:
        raise ValueError(f"{problem}; {exc}") from None
