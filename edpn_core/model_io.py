"""Building models and reading/writing weights files that describe their own model (no guessing on load)."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

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
# The number formats a weights tensor may arrive in (dense, loaded as float32): float8 and other exotic kinds have
# no kernels for the checks, sparse or quantized tensors are not what the network holds.
WEIGHT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
# torch.save stores the members of its zip archive uncompressed: a member declaring more than the file itself
# (beyond this slack) is a zip bomb, refused before a byte of it is inflated.
ARCHIVE_SLACK_BYTES = 16 << 20


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
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600; an exported file is meant to be shared
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed or interrupted export leaves nothing behind
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def config_from_mapping(path: str | Path, data: object) -> EDPNConfig:
    """The config a file (or a training setting: `path` names it) declares, checked field by field (type, then
    bounds) before any model is built."""
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


def settings_json(path: Path, text: object, what: str) -> object:
    """Settings a file holds as JSON text; anything that is not plain JSON of sane depth and numbers (nesting
    that exhausts the parser, integers of thousands of digits) is a one-line WeightsError naming the file."""
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError) as exc:  # ValueError: bad JSON and over-long integers alike
        reason = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:120]
        raise WeightsError(f"{path}: {what} is not valid JSON ({reason})") from exc


def _config_from_json(path: Path, text: str) -> EDPNConfig:
    return config_from_mapping(path, settings_json(path, text, "the model config"))


def _expected_state(path: Path, config: EDPNConfig) -> dict[str, torch.Tensor]:
    """Names, shapes and kinds of the tensors the config's network holds, without allocating them."""
    try:
        with torch.device("meta"):
            return EDPN(config).state_dict()
    except Exception as exc:  # a combination of in-bounds values the network cannot be built with
        raise WeightsError(f"{path}: the described model cannot be built ({exc})") from exc


def _check_layout(path: Path, shapes: Mapping[str, tuple[int, ...]], floating: Mapping[str, bool],
                  config: EDPNConfig) -> None:
    """Every tensor the network needs, no other, each of the shape the config gives it. `floating`: whether each
    tensor is a dense float of WEIGHT_DTYPES (else integer or of no usable kind)."""
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
            raise _wrong_kind(path, name)


def _wrong_kind(path: Path, name: str) -> WeightsError:
    return WeightsError(f"{path}: tensor {name} has the wrong number type or layout (weights are dense float16, "
                        "bfloat16, float32 or float64)")


def check_values(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Every float tensor dense, of a loadable kind, finite and plausible."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if not _floating(tensor):
            raise _wrong_kind(path, name)
        if tensor.numel() == 0:
            continue
        if not torch.isfinite(tensor).all():
            raise WeightsError(f"{path}: tensor {name} contains NaN or infinity (a diverged training run?)")
        if tensor.abs().max() > MAX_WEIGHT_MAGNITUDE:
            raise WeightsError(f"{path}: tensor {name} holds values above {MAX_WEIGHT_MAGNITUDE:g}, "
                               "not trained weights")


def _check_archive(path: Path) -> None:
    """Refuse a zip archive whose members declare more bytes than the file holds, from its directory alone."""
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    with file:
        size = os.fstat(file.fileno()).st_size
        try:
            with zipfile.ZipFile(file) as archive:
                declared = sum(member.file_size for member in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return  # not a whole zip archive: torch.load refuses it (or reads its legacy format) below
    if declared > size + ARCHIVE_SLACK_BYTES:
        raise WeightsError(f"{path}: refused: its archive declares {declared / 2**20:.0f} MiB in a "
                           f"{size / 2**20:.1f} MiB file (a zip bomb; torch.save stores its tensors uncompressed)")


def load_pth(path: Path) -> object:
    """A .pth file's contents read safely: the archive's declared sizes checked first, then weights_only
    unpickling, which refuses anything that would call code; every failure a WeightsError naming the file and
    never torch's advice to load it unsafely."""
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch's notes on sparse tensors; such files are refused by their layout
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"\bGLOBAL (\S+)", str(exc))
        if blocked:
            raise WeightsError(f"{path}: refused: it would call {blocked.group(1)}, which no weights file needs "
                               "(nothing in it was run)") from exc
        refused = re.search(r"WeightsUnpickler error: ([^\n]+)", str(exc))
        if refused:
            raise WeightsError(f"{path}: refused: it holds pickled objects no weights file needs "
                               f"({refused.group(1)[:120]}; nothing in it was run)") from exc
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint (corrupt data)") from exc
    except RecursionError as exc:
        raise WeightsError(f"{path}: refused: its data is nested too deeply to be weights") from exc
    except Exception as exc:  # zip, EOF and pickle errors vary by damage; weights_only refuses arbitrary code
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def tensor_state(path: Path, saved: object, what: str = "model") -> dict[str, torch.Tensor]:
    """A checkpoint's `what` as a state dict under current names, once it is a mapping of names to tensors."""
    if not isinstance(saved, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in saved.items()):
        raise WeightsError(f"{path}: the checkpoint's {what} is not a set of named tensors")
    return with_current_names(saved)


def _floating(tensor: torch.Tensor) -> bool:
    return tensor.layout == torch.strided and tensor.dtype in WEIGHT_DTYPES


def _checkpoint_info(path: Path) -> tuple[WeightsInfo, dict[str, torch.Tensor]]:
    """A training checkpoint (.pth) names its preset and task in its training config; read it safely."""
    state = load_pth(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise WeightsError(f"{path}: not an EDPN Restore training checkpoint (no model/config inside)")
    train_cfg = settings_json(path, state["config"], "the checkpoint's training config")
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
    return info, tensor_state(path, state["model"])


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
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from exc
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
    if not os.access(path, os.R_OK):  # safetensors reports a file it may not open as missing
        raise WeightsError(f"{path}: cannot read file (permission denied)")


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
        info, state = _checkpoint_info(path)
        _check_layout(path, {k: tuple(v.shape) for k, v in state.items()}, {k: _floating(v) for k, v in state.items()},
                      info.config)
    else:
        info, shapes, floating = _safetensors_header(path)
        _check_layout(path, shapes, floating, info.config)
        try:
            state = with_current_names(load_file(str(path)))
        except Exception as exc:  # a header that promises more bytes than the file holds
            raise WeightsError(f"{path}: truncated or corrupt tensor data") from exc
    check_values(path, state)
    return info, state


def load_model(path: str | Path, replica_shortcut: bool = True) -> tuple[EDPN, WeightsInfo]:
    """Rebuild the model the file describes and load its weights in float32, once `validate_weights` passed."""
    info, state = validate_weights(path)
    model = EDPN(dataclasses.replace(info.config, replica_shortcut=replica_shortcut))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval(), info
