"""A training run's settings: every number of it, how a resume may change them, and its learning rate."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tomllib

from ..config import PRESETS, TASKS, Preset, Task
from .data import DEFAULT_LQ_PATCH
from .degradations import DegradationConfig, finite_number, whole_number

SCHEDULES = ("cosine", "linear", "step", "constant")
DATA_KINDS = ("photos", "paired", "reds")
VAL_CROPS = ("detailed", "random", "grid")
DEFAULT_VAL_PATCH = {"sr": 128, "deblock": 256}  # LR sizes: 512 px ground truth for sr
NETWORK_SETTINGS = ("preset", "task", "model_overrides")
# What --resume keeps from the checkpoint unless told --new-schedule: together they fix the learning rate of
# every remaining iteration and Adam's behaviour.
SCHEDULE_SETTINGS = ("lr", "lr_schedule", "warmup_iterations", "lr_min", "lr_decay", "lr_decay_every", "iterations",
                     "betas")
# Settings that change how a run is watched and kept, not what it learns (a campaign arm may differ in these).
BOOKKEEPING_SETTINGS = ("out_dir", "val_every", "checkpoint_every", "tensorboard", "keep_validated", "workers",
                        "max_bad_steps", "dcn_offset_warning", "init_weights")

_BILLION = 10**9
# Each number setting: whole or not, the test it must pass, and how a message says it. The upper bounds stop
# values no run needs before they allocate tens of gigabytes (batch 100000) or loop for ever.
NUMBER_RULES: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "val_items": (True, lambda v: 1 <= v <= 100_000, "from 1 to 100000"),
    "batch_size": (True, lambda v: 1 <= v <= 1024, "from 1 to 1024"),
    "iterations": (True, lambda v: 1 <= v <= _BILLION, "from 1 to 10^9"),
    "warmup_iterations": (True, lambda v: 0 <= v <= _BILLION, "from 0 to 10^9"),
    "lr_decay_every": (True, lambda v: 1 <= v <= _BILLION, "from 1 to 10^9"),
    "max_bad_steps": (True, lambda v: 1 <= v <= 1000, "from 1 to 1000"),
    "seed": (True, lambda v: 0 <= v < 2**63, "from 0 to 2^63 - 1"),
    "workers": (True, lambda v: 0 <= v <= 256, "from 0 to 256"),
    "val_every": (True, lambda v: 1 <= v <= _BILLION, "from 1 to 10^9"),
    "checkpoint_every": (True, lambda v: 1 <= v <= _BILLION, "from 1 to 10^9"),
    "lr": (False, lambda v: v > 0, "above 0"),
    "lr_min": (False, lambda v: v >= 0, "0 or more"),
    "lr_decay": (False, lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "grad_clip": (False, lambda v: v >= 0, "0 (off) or more"),
    "ema_decay": (False, lambda v: 0 <= v < 1, "0 (off) or more, below 1"),
    "dcn_offset_warning": (False, lambda v: True, "of pixels"),
    "charbonnier_eps": (False, lambda v: v > 0, "above 0"),
    "ssim_weight": (False, lambda v: v >= 0, "0 or more"),
}
OPTIONAL_PATCH_RULES = {"lq_patch": (8, 1024), "val_patch": (8, 4096)}
# LR pixels per batch: 64 crops of 256 px, far above the paper's 4 x 160 px, still within a large GPU.
MAX_BATCH_PIXELS = 64 * 256 * 256


@dataclass
class TrainConfig:
    """Every number of a run. The network, loss and Adam are the paper's; the default schedule is a warmup and
    a cosine decay to the end of `iterations` (short runs); lr_schedule="step" with warmup_iterations=0 is the
    paper's x0.8 every 100k. batch_size is per process: under torchrun the effective batch is batch_size x ranks,
    and lr applies to that effective batch as it is (no automatic scaling)."""

    preset: Preset = "lite"
    task: Task = "sr"
    model_overrides: dict = field(default_factory=dict)
    data: str = ""  # folder of sharp photos (synthetic pairs), or a REDS root with data_kind="reds"
    data_kind: str = "photos"  # photos | paired | reds
    lq_dir: str = ""  # for data_kind="paired"
    val_data: str = ""  # sharp photos that pick checkpoints: neither training photos nor the ones a report scores
    val_patch: int | None = None  # LR size of the validation crops; None: DEFAULT_VAL_PATCH
    val_items: int = 32
    # detailed: the most textured of several candidate crops per photo, degraded by the training mix; random;
    # grid: one crop per photo under every blur family and the input formats of `edpn eval` (validation.grid_items)
    val_crops: str = "detailed"
    lq_patch: int | None = None  # None: 64 for sr, 160 for deblock
    batch_size: int = 4
    iterations: int = 1_000_000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "cosine"  # cosine | linear (to lr_min at `iterations`) | step (x lr_decay) | constant
    warmup_iterations: int = 500  # linear warmup from 0 at the start of every schedule
    lr_min: float = 1e-7
    lr_decay: float = 0.8
    lr_decay_every: int = 100_000
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    max_bad_steps: int = 5  # non-finite steps in a row that stop the run
    ema_decay: float = 0.999  # BasicSR's model_ema; 0 = no EMA (validate and export the raw weights)
    dcn_offset_warning: float = 50.0  # mean |offset| in pixels above which alignment is reported as astray
    charbonnier_eps: float = 1e-3
    ssim_weight: float = 0.1
    degradation: dict = field(default_factory=dict)  # changes to DegradationConfig.for_task(task), e.g. jpeg_prob
    init_weights: str = ""  # start the network from these weights (fine-tuning); optimizer and count start afresh
    seed: int = 0
    workers: int = 0
    bf16: bool = True  # autocast on CUDA and on CPUs with AMX/AVX512-BF16 (edpn_core/inference/precision.py)
    val_every: int = 5_000
    checkpoint_every: int = 1_000
    out_dir: str = "runs/edpn"
    tensorboard: bool = True
    keep_validated: bool = False  # every validated EMA as weights in out_dir/validated, so any can be shipped

    def __post_init__(self) -> None:
        """Every setting of the right type and within sane bounds, and the network buildable within the bounds a
        weights file is held to, before anything is allocated."""
        from ..model_io import config_from_mapping

        for name, choices in (("preset", tuple(PRESETS)), ("task", TASKS), ("data_kind", DATA_KINDS),
                              ("lr_schedule", SCHEDULES), ("val_crops", VAL_CROPS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name, (whole, test, bounds) in NUMBER_RULES.items():
            value = getattr(self, name)
            if not (whole_number(value) if whole else finite_number(value)) or not test(value):
                raise ValueError(f"{name} must be a {'whole ' if whole else ''}number {bounds}, got {value!r}")
        for name, (low, high) in OPTIONAL_PATCH_RULES.items():
            value = getattr(self, name)
            if value is not None and (not whole_number(value) or not low <= value <= high):
                raise ValueError(f"{name} must be a whole number of pixels from {low} to {high}, got {value!r}")
        patch = self.lq_patch or DEFAULT_LQ_PATCH[self.task]
        if patch**2 * self.batch_size > MAX_BATCH_PIXELS:
            raise ValueError(f"batch_size {self.batch_size} of {patch} px crops (lq_patch) is over "
                             f"{MAX_BATCH_PIXELS} pixels a batch: lower one of them")
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2 or not all(
                finite_number(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers from 0 to below 1, got {self.betas!r}")
        for name in ("data", "lq_dir", "val_data", "init_weights", "out_dir"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a path, got {getattr(self, name)!r}")
        for name in ("bf16", "tensorboard", "keep_validated"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.model_overrides, dict) or not isinstance(self.degradation, dict):
            raise ValueError("model_overrides and degradation must be mappings of settings")
        config_from_mapping("model_overrides", {**PRESETS[self.preset], **self.model_overrides, "task": self.task})
        self.degradation_config()

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls().updated(**cls.read_settings(path))

    @classmethod
    def read_settings(cls, path: str | Path) -> dict:
        """The settings a TOML file gives (checked), apart from the defaults, so a resume can tell them apart."""
        with open(path, "rb") as f:
            settings = tomllib.load(f)
        cls().updated(**settings)
        return settings

    @classmethod
    def from_checkpoint_json(cls, text: str) -> "TrainConfig":
        """A checkpoint's settings; checkpoints from before schedules were chosen ran the paper's StepLR."""
        saved = json.loads(text)
        saved.setdefault("lr_schedule", "step")
        saved.setdefault("warmup_iterations", 0)
        return cls().updated(**saved)

    def updated(self, **changes) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        if "betas" in changes:
            changes["betas"] = tuple(changes["betas"])
        return dataclasses.replace(self, **changes)

    def degradation_config(self) -> DegradationConfig:
        """The task's documented mix with this run's changes (TOML and JSON give lists where ranges are tuples)."""
        base = DegradationConfig.for_task(self.task)
        known = {f.name for f in dataclasses.fields(base)}
        unknown = set(self.degradation) - known
        if unknown:
            raise ValueError(f"unknown degradation settings: {sorted(unknown)}; known: {sorted(known)}")
        changes: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in self.degradation.items()}
        return dataclasses.replace(base, **changes)

    def learning_rate(self, iteration: int, schedule_start: int = 0) -> float:
        """The learning rate of the update that makes iteration `iteration` + 1, for a schedule that began at
        `schedule_start` (0, or where a resume chose a new schedule) and ends at `iterations`."""
        t = iteration - schedule_start
        if t < self.warmup_iterations:
            return self.lr * (t + 1) / self.warmup_iterations
        if self.lr_schedule == "constant":
            return self.lr
        if self.lr_schedule == "step":
            return self.lr * self.lr_decay ** ((t - self.warmup_iterations) // self.lr_decay_every)
        span = max(self.iterations - schedule_start - self.warmup_iterations, 1)
        progress = min((t - self.warmup_iterations) / span, 1.0)
        if self.lr_schedule == "linear":
            return self.lr + (self.lr_min - self.lr) * progress
        return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1 + math.cos(math.pi * progress))


def resumed_config(saved: TrainConfig, requested: dict, new_schedule: bool) -> tuple[TrainConfig, list[str]]:
    """The checkpoint's settings with the requested changes, and a line per decision: a different network is
    refused; schedule changes apply only with new_schedule (else they are named as ignored); anything else
    changes as asked."""
    differ = [f"{k} {getattr(saved, k)!r} (asked {requested[k]!r})" for k in NETWORK_SETTINGS
              if k in requested and requested[k] != getattr(saved, k)]
    if differ:
        raise ValueError(f"the checkpoint trains another network: {', '.join(differ)}; start a new --out-dir")
    notes, changes = [], {}
    for key, value in requested.items():
        old = getattr(saved, key)
        value = tuple(value) if key == "betas" else value
        if key in NETWORK_SETTINGS or value == old:
            continue
        if key in SCHEDULE_SETTINGS and not new_schedule:
            notes.append(f"kept {key} {old!r} from the checkpoint, ignored {value!r} (--new-schedule follows it)")
            continue
        notes.append(f"changed {key} {old!r} -> {value!r}")
        changes[key] = value
    return saved.updated(**changes), notes
