"""Building models and reading/writing weights files that describe their own model (no guessing on load)."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, cast

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .archs import EDPN, with_current_names
from .config import PRESETS, TASKS, EDPNConfig, Preset, Task, make_config
from .durable import replace_durably

WEIGHTS_FORMAT = "edpn-restore/1"
# What a weights file may declare. The paper's network sits well inside; anything beyond would ask for gigabytes
# or hours before a single tensor is checked, so it is refused from the metadata alone.
CONFIG_BOUNDS: dict[str, tuple[int, int]] = {
    "channels": (1, 256), "copies": (1, 16), "extractor_blocks": (0, 64), "pyramid_levels": (1, 5),
    "ptbs_per_level": (1, 8), "deformable_groups": (1, 64), "reconstruction_blocks": (1, 240),
    "attention_reduction": (1, 256),
}
# Trained EDPN weights stay below 1 in magnitude; values this large are not weights, and would overflow
# reduced-precision activations into inf and NaN (NaN offsets are what crashed torchvision's DCN).
MAX_WEIGHT_MAGNITUDE = 1e4


def build_model(preset: Preset, task: Task, **overrides) -> EDPN:
    """The public constructor: a preset name ("paper", "lite"), a task ("sr" or "deblock"), optional overrides."""
    return EDPN(make_config(preset, task, **overrides))


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_breakdown(model: EDPN) -> dict[str, int]:
    return {name: parameter_count(child) for name, child in model.named_children()}


@dataclass
class WeightsInfo:
    """What a weights file says about itself: enough to rebuild the exact model and to show it to a user."""

    preset: str
    config: EDPNConfig
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.config.task

    @property
    def scale(self) -> int:
        return self.config.scale


class WeightsError(ValueError):
    """A weights file that cannot be used, with a reason a user can act on."""


def save_weights(model: EDPN, path: str | Path, preset: str, half: bool = False, **metadata) -> Path:
    """Write safetensors with the config and free-form metadata (iterations, data, metrics, date...)."""
    path = Path(path)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
               for k, v in model.state_dict().items()}
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    meta.update(
        format=WEIGHTS_FORMAT,
        preset=preset,
        task=model.cfg.task,
        scale=str(model.cfg.scale),
        config=model.cfg.to_json(),
        parameters=str(parameter_count(model)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600; an exported file is meant to be shared
    replace_durably(tmp, path)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def config_from_mapping(path: Path, data: object) -> EDPNConfig:
    """The config a file declares, checked field by field (type, then bounds) before any model is built."""
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path}: the model config is not a mapping of settings")
    fields = {f.name: f for f in dataclasses.fields(EDPNConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise WeightsError(f"{path}: unknown model config fields {unknown}")
    for name, value in data.items():
        if name == "task":
            if value not in TASKS:
                raise WeightsError(f"{path}: config task {value!r} is not one of {list(TASKS)}")
        elif name == "replica_shortcut":
            if not isinstance(value, bool):
                raise WeightsError(f"{path}: config replica_shortcut must be true or false, got {value!r}")
        else:
            low, high = CONFIG_BOUNDS[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise WeightsError(f"{path}: config {name} must be a whole number, got {value!r}")
            if not low <= value <= high:
                raise WeightsError(f"{path}: config {name} = {value} is outside {low}..{high}")
    try:
        return EDPNConfig(**data)
    except ValueError as exc:
        raise WeightsError(f"{path}: inconsistent model config ({exc})") from exc


def _config_from_json(path: Path, text: str) -> EDPNConfig:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise WeightsError(f"{path}: the model config is not valid JSON") from exc
    return config_from_mapping(path, data)


def _expected_state(path: Path, config: EDPNConfig) -> dict[str, torch.Tensor]:
    """Names, shapes and kinds of the tensors the config's network holds, without allocating them."""
    try:
        with torch.device("meta"):
            return EDPN(config).state_dict()
    except Exception as exc:  # a combination of in-bounds values the network cannot be built with
        raise WeightsError(f"{path}: the described model cannot be built ({exc})") from exc


def _check_layout(path: Path, shapes: Mapping[str, tuple[int, ...]], floating: Mapping[str, bool],
                  config: EDPNConfig) -> None:
    """Every tensor the network needs, no other, each of the shape the config gives it."""
    expected = _expected_state(path, config)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"{path}: weights do not match the described model (missing {len(missing)}, "
                           f"unexpected {len(unexpected)}, e.g. {(missing or unexpected)[0]})")
    for name, want in expected.items():
        if tuple(shapes[name]) != tuple(want.shape):
            raise WeightsError(f"{path}: tensor {name} has shape {list(shapes[name])}, the described model "
                               f"needs {list(want.shape)}")
        if floating[name] != want.is_floating_point():
            raise WeightsError(f"{path}: tensor {name} has the wrong number type")


def _check_values(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        if not torch.isfinite(tensor).all():
            raise WeightsError(f"{path}: tensor {name} contains NaN or infinity (a diverged training run?)")
        if tensor.abs().max() > MAX_WEIGHT_MAGNITUDE:
            raise WeightsError(f"{path}: tensor {name} holds values above {MAX_WEIGHT_MAGNITUDE:g}, "
                               "not trained weights")


def _torch_load(path: Path) -> object:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        if blocked:
            raise WeightsError(f"{path}: refused: it would call {blocked.group(1)}, which no weights file needs "
                               "(nothing in it was run)") from exc
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint (corrupt data)") from exc
    except Exception as exc:  # zip, EOF and pickle errors vary by damage; weights_only refuses arbitrary code
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({reason})") from exc


def _checkpoint_info(path: Path) -> tuple[WeightsInfo, Mapping[str, object]]:
    """A training checkpoint (.pth) names its preset and task in its training config; read it safely."""
    state = _torch_load(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise WeightsError(f"{path}: not an EDPN Restore training checkpoint (no model/config inside)")
    try:
        train_cfg = json.loads(state["config"])
    except (json.JSONDecodeError, TypeError) as exc:
        raise WeightsError(f"{path}: the checkpoint's training config is not valid JSON") from exc
    if not isinstance(train_cfg, dict):
        raise WeightsError(f"{path}: the checkpoint's training config is not a mapping of settings")
    preset, task, overrides = train_cfg.get("preset"), train_cfg.get("task"), train_cfg.get("model_overrides", {})
    if preset not in PRESETS:
        raise WeightsError(f"{path}: the checkpoint names no known preset (preset {preset!r})")
    if not isinstance(overrides, dict):
        raise WeightsError(f"{path}: the checkpoint's model_overrides is not a mapping of settings")
    config = config_from_mapping(path, {**PRESETS[preset], **overrides, "task": task})
    iteration = state.get("iteration", 0)
    info = WeightsInfo(preset=preset, config=config,
                       metadata={"iterations": str(iteration), "config": config.to_json()})
    model_state = state["model"]
    return info, with_current_names(model_state) if isinstance(model_state, Mapping) else model_state


def _safetensors_header(path: Path) -> tuple[WeightsInfo, dict[str, tuple[int, ...]], dict[str, bool]]:
    """Metadata and tensor shapes from the header alone: nothing is loaded before they are checked."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            slices = {name: f.get_slice(name) for name in f.keys()}
            shapes = with_current_names({name: tuple(s.get_shape()) for name, s in slices.items()})
            floating = with_current_names({name: s.get_dtype() in ("F16", "BF16", "F32", "F64")
                                           for name, s in slices.items()})
    except Exception as exc:  # safetensors raises several types for corrupt headers
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a readable safetensors file ({reason})") from exc
    if meta.get("format") != WEIGHTS_FORMAT or "config" not in meta:
        raise WeightsError(f"{path}: not an EDPN Restore weights file (missing format/config metadata)")
    info = WeightsInfo(preset=meta.get("preset", "custom"), config=_config_from_json(path, meta["config"]),
                       metadata=meta)
    return info, shapes, floating


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix not in (".pth", ".safetensors"):
        raise WeightsError(f"{path}: weights must be .safetensors (or an EDPN Restore .pth checkpoint)")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty")


def read_weights_info(path: str | Path) -> WeightsInfo:
    """What the file declares, its config checked; the tensors of a .safetensors file are not read."""
    path = Path(path)
    _check_path(path)
    if path.suffix == ".pth":
        return _checkpoint_info(path)[0]
    return _safetensors_header(path)[0]


def validate_weights(path: str | Path) -> tuple[WeightsInfo, Mapping[str, torch.Tensor]]:
    """The file's description and tensors once the config, every tensor's shape against it and every value
    (finite, plausible) are checked; anything wrong is a WeightsError naming the file. Builds no model."""
    path = Path(path)
    _check_path(path)
    if path.suffix == ".pth":
        info, saved = _checkpoint_info(path)
        if not isinstance(saved, Mapping) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
            raise WeightsError(f"{path}: the checkpoint's model is not a set of tensors")
        state = cast(Mapping[str, torch.Tensor], saved)
        _check_layout(path, {k: tuple(v.shape) for k, v in state.items()},
                      {k: v.is_floating_point() for k, v in state.items()}, info.config)
    else:
        info, shapes, floating = _safetensors_header(path)
        _check_layout(path, shapes, floating, info.config)
        try:
            state = with_current_names(load_file(str(path)))
        except Exception as exc:  # a header that promises more bytes than the file holds
            raise WeightsError(f"{path}: truncated or corrupt tensor data") from exc
    _check_values(path, state)
    return info, state


def load_model(path: str | Path, replica_shortcut: bool = True) -> tuple[EDPN, WeightsInfo]:
    """Rebuild the model the file describes and load its weights in float32, once `validate_weights` passed."""
    info, state = validate_weights(path)
    model = EDPN(dataclasses.replace(info.config, replica_shortcut=replica_shortcut))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval(), info
