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


def read_weights_info(path: str | Path) -> WeightsInfo:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: only .safetensors weights carry the metadata needed to rebuild the model")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
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
    info = read_weights_info(path)
    model = EDPN(dataclasses.replace(info.config, replica_shortcut=replica_shortcut))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path}: weights do not match the described model "
                           f"(missing {len(missing)}, unexpected {len(unexpected)})")
    return model.eval(), info
