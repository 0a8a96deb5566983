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
    """The newest readable one of checkpoint `path` and the one kept before it (`previous_checkpoint`): a crash
    mid-save leaves at least one of the two. Returns its path, its contents and why any other was passed over
    (a missing previous one is no news)."""
    path, previous = Path(path), previous_checkpoint(Path(path))
    readable: list[tuple[Path, dict]] = []
    problems: list[str] = []
    for candidate in (path, previous):
        try:
            readable.append((candidate, read_checkpoint(candidate)))
        except ValueError as exc:
            if candidate == path or candidate.exists():
                problems.append(str(exc))
    if not readable:
        raise ValueError("; ".join(problems if previous.exists() else [*problems, f"no {previous.name} either"]))
    chosen, state = max(readable, key=lambda found: found[1]["iteration"])
    return chosen, state, problems
