"""Network configuration: a small dataclass plus named presets, so a weights file can describe its model."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

Task = Literal["sr", "deblock"]
TASKS: tuple[Task, ...] = ("sr", "deblock")
TASK_SCALES: dict[Task, int] = {"sr": 4, "deblock": 1}
Preset = Literal["lite", "paper"]


@dataclass(frozen=True)
class EDPNConfig:
    """Every number that shapes an EDPN network (paper Sections 3.1 to 3.3)."""

    task: Task = "sr"
    channels: int = 64
    copies: int = 5  # K + 1 replicas of the blurry input
    extractor_blocks: int = 18
    pyramid_levels: int = 3  # M
    ptbs_per_level: int = 3  # N
    deformable_groups: int = 8
    reconstruction_blocks: int = 120
    attention_reduction: int = 8  # MS-CAM bottleneck: channels // reduction
    replica_shortcut: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.channels % self.deformable_groups:
            raise ValueError("channels must be divisible by deformable_groups")
        if self.channels < self.attention_reduction:
            raise ValueError("channels must be at least attention_reduction")
        for name in ("copies", "pyramid_levels", "ptbs_per_level", "reconstruction_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def scale(self) -> int:
        return TASK_SCALES[self.task]

    @property
    def size_multiple(self) -> int:
        """Inside the net H and W must divide by this (pyramid and spatial attention halve twice)."""
        return 2 ** max(self.pyramid_levels - 1, 2)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


PRESETS: dict[Preset, dict] = {
    "paper": {},
    # Same modules, scaled so a 1-megapixel photo restores in tens of seconds on a 2-core CPU.
    "lite": {
        "channels": 32,
        "extractor_blocks": 4,
        "ptbs_per_level": 1,
        "deformable_groups": 4,
        "reconstruction_blocks": 12,
        "attention_reduction": 4,
    },
}


def make_config(preset: Preset, task: Task, **overrides) -> EDPNConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return EDPNConfig(task=task, **{**PRESETS[preset], **overrides})
