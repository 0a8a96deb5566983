"""`edpn eval`: scores that cannot flatter.

Crops are chosen for detail (flat sky restores well under any method and hides what fails), every crop is
degraded once per blur family and input format, and the task's baseline and a published peer (SRMD x4, when
its optional extra is installed) are scored beside EDPN in the same run. Outputs are rounded to 8 bits first,
as a user saves them; metrics follow BasicSR (Y and RGB PSNR/SSIM with a border crop of the scale, LPIPS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .config import TASK_SCALES, Task
from .inference.engine import Restorer, RunSettings, TileSize
from .inference.imageio import code_values
from .metrics.detail import detail_map
from .metrics.lpips import lpips_distance
from .metrics.psnr_ssim import psnr, ssim
from .training.data import PairedFolderDataset, degradation_margin, degrade_patch, list_images, read_image
from .training.degradations import DegradationConfig, baseline, baseline_name

METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "lpips")
# Blur families as users meet them; each family draws its kernel from DegradationConfig's default ranges.
FAMILY_BLURS: dict[str, dict[str, float]] = {
    "none": {},
    "gaussian": {"iso_gaussian": 1.0, "aniso_gaussian": 1.0},
    "defocus": {"disk": 1.0},
    "motion": {"motion": 1.0},
    "shake": {"shake": 1.0},
}
# sr inputs are small photos, saved losslessly or as JPEGs of the qualities phones and the web use; deblock
# inputs are JPEGs from heavy to light compression.
INPUT_FORMATS = {"sr": ("png", "jpeg90", "jpeg80", "jpeg70"), "deblock": ("jpeg20", "jpeg40", "jpeg60", "jpeg90")}
PAIRED = "paired"


@dataclass(frozen=True)
class Condition:
    family: str
    input_format: str  # "png", "jpegNN", or "paired" for ready-made pairs

    @property
    def jpeg_quality(self) -> int | None:
        return int(self.input_format[4:]) if self.input_format.startswith("jpeg") else None

    def degradation(self) -> DegradationConfig:
        blurs = FAMILY_BLURS[self.family]
        quality = self.jpeg_quality
        return DegradationConfig(
            no_blur_prob=0.0 if blurs else 1.0, blur_probs=blurs or DegradationConfig().blur_probs,
            jpeg_prob=1.0 if quality else 0.0, jpeg_quality=(quality, quality) if quality else (10, 60))


@dataclass
class EvalItem:
    condition: Condition
    name: str
    lq: np.ndarray
    gt: np.ndarray


def detail_boxes(photo: np.ndarray, size: int, count: int) -> list[tuple[int, int]]:
    """(top, left) of up to `count` non-overlapping size x size crops with the most detail (`detail_map`),
    searched on a half-crop grid; deterministic."""
    h, w = photo.shape[:2]
    if h < size or w < size:
        return []
    integral = cv2.integral(detail_map(photo), sdepth=cv2.CV_64F)
    step = max(size // 2, 1)
    candidates = []
    for top in sorted({*range(0, h - size + 1, step), h - size}):
        for left in sorted({*range(0, w - size + 1, step), w - size}):
            total = (integral[top + size, left + size] - integral[top, left + size]
                     - integral[top + size, left] + integral[top, left])
            candidates.append((total, top, left))
    chosen: list[tuple[int, int]] = []
    for _, top, left in sorted(candidates, reverse=True):
        if all(abs(top - t) >= size or abs(left - x) >= size for t, x in chosen):
            chosen.append((top, left))
            if len(chosen) == count:
                break
    return chosen


def eval_items(data: str | Path, task: Task, lq_dir: str | Path | None = None, crop: int = 384,
               crops_per_photo: int = 2, seed: int = 2021, families: tuple[str, ...] = tuple(FAMILY_BLURS),
               input_formats: tuple[str, ...] | None = None, max_crops: int | None = None,
               rotate_formats: bool = False) -> list[EvalItem]:
    """Ready-made pairs as they are, or the most detailed crops of sharp photos (the first `max_crops` of
    them) degraded once per condition. `rotate_formats` degrades each crop once per family, in one input format
    that rotates from crop to crop and family to family: every family meets every format equally often over
    whole rounds of crops, at a fraction of the cost (validation during training); each kept item is the one the
    full grid draws."""
    if lq_dir:
        ds = PairedFolderDataset(lq_dir, data, task, lq_patch=None, augment=False)
        samples = (ds[i] for i in range(len(ds)))
        return [EvalItem(Condition(PAIRED, PAIRED), s["name"], s["lq"].permute(1, 2, 0).numpy(),
                         s["gt"].permute(1, 2, 0).numpy()) for s in samples]
    scale = TASK_SCALES[task]
    if crop < 16 * scale or crop % scale:
        raise ValueError(f"--crop must be a multiple of {scale} and at least {16 * scale} px")
    formats = tuple(input_formats or INPUT_FORMATS[task])
    valid = {"png"} if task == "sr" else set()
    valid |= {f"jpeg{q}" for q in range(1, 101)}
    if not set(formats) <= valid:
        raise ValueError(f"input formats for {task} are {'png or ' if task == 'sr' else ''}jpeg1..jpeg100, "
                         f"got {' '.join(sorted(set(formats) - valid))}")
    conditions = [Condition(f, fmt) for f in families for fmt in formats]
    items: list[EvalItem] = []
    crops = 0
    for photo_index, path in enumerate(list_images(data)):
        photo = read_image(path)
        for crop_index, (top, left) in enumerate(detail_boxes(photo, crop, crops_per_photo)):
            if max_crops is not None and crops >= max_crops:
                return items
            crops += 1
            for cond_index, cond in enumerate(conditions):
                if rotate_formats and formats.index(cond.input_format) != (
                        crops + families.index(cond.family)) % len(formats):
                    continue
                rng = np.random.default_rng([seed, photo_index, crop_index, cond_index])
                degradation = cond.degradation()
                lq, gt = degrade_patch(photo, top, left, crop, task, rng, degradation,
                                       degradation_margin(task, degradation))
                items.append(EvalItem(cond, f"{path.stem}@{left},{top}", lq, gt.astype(np.float32) / 255.0))
    if not items:
        raise ValueError(f"no photo in {data} is at least {crop} px on each side")
    return items


def published_peers(task: Task) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Published methods to score beside EDPN: SRMD x4 for sr when the optional `peers` extra is installed.
    Its noise-free network: the evaluation adds no noise, and it is the stronger of the two on such inputs."""
    from .peers import srmd_available, srmd_x4

    if task != "sr" or not srmd_available():
        return {}
    return {"SRMD x4": lambda lq: srmd_x4(lq, noise_level=-1)}


def score(out: np.ndarray, gt: np.ndarray, crop: int) -> dict[str, float]:
    """Scores of the output as saved: rounded to 8 bits first."""
    saved = code_values(out, 8).astype(np.float32) / 255.0
    return {
        "psnr_rgb": psnr(saved, gt, crop_border=crop),
        "ssim_rgb": ssim(saved, gt, crop_border=crop),
        "psnr_y": psnr(saved, gt, crop_border=crop, test_y=True),
        "ssim_y": ssim(saved, gt, crop_border=crop, test_y=True),
        "lpips": lpips_distance(saved, gt),
    }


@dataclass
class EvalReport:
    """Mean scores per group of items (all, each family, each input format, each condition) and method."""

    task: Task
    methods: list[str]
    groups: dict[str, dict]  # group name -> {"items": n, "scores": {method: {metric: mean}}}
    # photo -> "all" or "family F" -> method -> mean Y-PSNR: which photos a gain or a loss comes from
    photos: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def gain(self, group: str, method: str = "EDPN", over: str | None = None, metric: str = "psnr_y") -> float:
        scores = self.groups[group]["scores"]
        return scores[method][metric] - scores[over or baseline_name(self.task)][metric]

    def as_dict(self) -> dict:
        return {"task": self.task, "methods": self.methods, "groups": self.groups, "photos": self.photos}


def group_names(condition: Condition, task: Task) -> list[str]:
    """Every summary group an item of this condition counts in."""
    if condition.family == PAIRED:
        return ["all"]
    names = ["all", f"family {condition.family}", f"input {condition.input_format}",
             f"{condition.family} / {condition.input_format}"]
    quality = condition.jpeg_quality
    if task == "sr" and quality is not None and 70 <= quality <= 90:
        names.append("input jpeg70-90")
    return names


def _group_rank(group: str) -> int:
    """Summaries first (all, then by input, then by family), each condition after them."""
    for rank, prefix in enumerate(("all", "input jpeg70-90", "input ", "family ")):
        if group.startswith(prefix):
            return rank
    return 4


def evaluate(
    restorer: Restorer,
    items: list[EvalItem],
    tile: TileSize = "auto",
    ensemble: bool = False,
    others: dict[str, Restorer] | None = None,
    peers: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    on_item: Callable[[str, int, int], None] | None = None,
) -> EvalReport:
    """Scores EDPN, optionally its self-ensemble x4, other weights (`others`, by name), published peers
    (`peers`, e.g. SRMD x4) and the task's baseline on every item."""
    task, crop = restorer.task, restorer.scale
    plain = RunSettings(tile)
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {"EDPN": partial(restorer.restore_array, run=plain)}
    if ensemble:
        methods["EDPN + self-ensemble x4"] = partial(restorer.restore_array, run=RunSettings(tile, "x4"))
    methods.update({name: partial(other.restore_array, run=plain) for name, other in (others or {}).items()})
    methods.update(peers or {})
    methods[baseline_name(task)] = lambda lq: baseline(lq, task)
    sums: dict[str, dict] = {}
    photo_sums: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, method in methods.items():
        for i, item in enumerate(items):
            scores = score(method(item.lq), item.gt, crop)
            photo = photo_sums.setdefault(item.name.split("@")[0], {})
            for group in ("all", f"family {item.condition.family}"):
                photo.setdefault(group, {}).setdefault(name, []).append(scores["psnr_y"])
            for group in group_names(item.condition, task):
                entry = sums.setdefault(group, {"items": 0, "scores": {}})
                totals = entry["scores"].setdefault(name, dict.fromkeys(METRICS, 0.0))
                for metric in METRICS:
                    totals[metric] += scores[metric]
                if name == "EDPN":
                    entry["items"] += 1
            if on_item is not None:
                on_item(name, i + 1, len(items))
    groups = {group: {"items": entry["items"],
                      "scores": {m: {k: v / entry["items"] for k, v in s.items()} for m, s in entry["scores"].items()}}
              for group, entry in sorted(sums.items(), key=lambda kv: _group_rank(kv[0]))}
    photos = {photo: {group: {name: float(np.mean(values)) for name, values in by_method.items()}
                      for group, by_method in by_group.items()} for photo, by_group in sorted(photo_sums.items())}
    return EvalReport(task, list(methods), groups, photos)


def format_photo_table(report: EvalReport, over: str | None = None) -> str:
    """EDPN's Y-PSNR gain over `over` (default: the baseline) per photo, overall and per blur family, worst photo
    first: a mean over many crops can hide one photo that loses a lot."""
    over = over or baseline_name(report.task)
    present = {group for by_group in report.photos.values() for group in by_group}
    groups = ["all", *(f"family {f}" for f in (*FAMILY_BLURS, PAIRED) if f"family {f}" in present)]
    lines = [f"EDPN gain over {over} per photo (Y-PSNR dB)", "| photo | " + " | ".join(groups) + " |",
             "|---|" + "---|" * len(groups)]

    def gain(by_group: dict, group: str) -> float:
        return by_group[group]["EDPN"] - by_group[group][over]

    for photo, by_group in sorted(report.photos.items(), key=lambda kv: gain(kv[1], "all")):
        cells = [f"{gain(by_group, g):+.2f}" if g in by_group else "-" for g in groups]
        lines.append(f"| {photo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(report: EvalReport) -> str:
    """PSNR-Y of every method per group, and EDPN's gain over the baseline and over each other method."""
    base = baseline_name(report.task)
    others = [m for m in report.methods if m not in ("EDPN", base)]
    header = ["group", "crops", *(f"{m} PSNR Y" for m in report.methods), f"EDPN gain over {base}",
              *(f"EDPN - {m}" for m in others), "EDPN SSIM Y", "EDPN LPIPS", f"{base} LPIPS"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, entry in report.groups.items():
        s = entry["scores"]
        cells = [group, str(entry["items"]), *(f"{s[m]['psnr_y']:.2f}" for m in report.methods),
                 f"{report.gain(group):+.2f}", *(f"{report.gain(group, over=m):+.2f}" for m in others),
                 f"{s['EDPN']['ssim_y']:.4f}", f"{s['EDPN']['lpips']:.4f}", f"{s[base]['lpips']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
