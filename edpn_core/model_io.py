"""Building models and reading/writing weights files that describe their own model (no guessing on load)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .archs import EDPN
from .config import EDPNConfig, make_config

WEIGHTS_FORMAT = "edpn-restore/1"


def build_model(preset: str, task: str, **overrides) -> EDPN:
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
    def task(self) -> str:
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
    tmp.replace(path)
    return path


def _checkpoint_info(path: Path) -> tuple[WeightsInfo, dict[str, torch.Tensor]]:
    """A training checkpoint (.pth) names its preset and task in its training config; read it safely."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors vary; weights_only refuses arbitrary code
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise WeightsError(f"{path}: not an EDPN Restore training checkpoint (no model/config inside)")
    train_cfg = json.loads(state["config"])
    config = make_config(train_cfg["preset"], train_cfg["task"], **train_cfg.get("model_overrides", {}))
    info = WeightsInfo(preset=train_cfg["preset"], config=config,
                       metadata={"iterations": str(state.get("iteration", 0)), "config": config.to_json()})
    return info, state["model"]


def read_weights_info(path: str | Path) -> WeightsInfo:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix == ".pth":
        return _checkpoint_info(path)[0]
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: weights must be .safetensors (or an EDPN Restore .pth checkpoint)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != WEIGHTS_FORMAT or "config" not in meta:
        raise WeightsError(f"{path}: not an EDPN Restore weights file (missing format/config metadata)")
    return WeightsInfo(preset=meta.get("preset", "custom"), config=EDPNConfig.from_json(meta["config"]),
                       metadata=meta)


def load_model(path: str | Path, replica_shortcut: bool = True) -> tuple[EDPN, WeightsInfo]:
    """Rebuild the model the file describes and load its weights in float32."""
    path = Path(path)
    if path.suffix == ".pth" and path.is_file():
        info, state = _checkpoint_info(path)
    else:
        info, state = read_weights_info(path), load_file(str(path))
    model = EDPN(dataclasses.replace(info.config, replica_shortcut=replica_shortcut))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path}: weights do not match the described model "
                           f"(missing {len(missing)}, unexpected {len(unexpected)})")
    return model.eval(), info
