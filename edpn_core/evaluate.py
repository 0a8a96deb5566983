"""`edpn eval`: the model, its self-ensemble and the plain baseline, scored with the papers' conventions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data import PairedFolderDataset, SyntheticPairDataset
from .degradations import DegradationConfig, imresize
from .engine import Restorer
from .lpips import lpips_distance
from .metrics import psnr, ssim

METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "lpips")


@dataclass
class EvalRow:
    method: str
    scores: dict[str, float]

    def as_dict(self) -> dict:
        return {"method": self.method, **self.scores}


def score(out: np.ndarray, gt: np.ndarray, crop: int) -> dict[str, float]:
    return {
        "psnr_rgb": psnr(out, gt, crop_border=crop),
        "ssim_rgb": ssim(out, gt, crop_border=crop),
        "psnr_y": psnr(out, gt, crop_border=crop, test_y=True),
        "ssim_y": ssim(out, gt, crop_border=crop, test_y=True),
        "lpips": lpips_distance(out, gt),
    }


def eval_pairs(data: str | Path, task: str, lq_dir: str | Path | None = None, crop: int = 512, seed: int = 2021,
               items: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(lq, gt) arrays: paired folders as they are, or sharp photos degraded with a fixed seed."""
    if lq_dir:
        ds = PairedFolderDataset(lq_dir, data, task, lq_patch=None, augment=False)
    else:
        scale = 4 if task == "sr" else 1
        if crop < 4 * scale:
            raise ValueError(f"--crop must be at least {4 * scale} px for photos degraded on the fly")
        ds = SyntheticPairDataset(data, task, lq_patch=crop // scale,
                                  degradation=DegradationConfig(), seed=seed, augment=False, length=items)
    count = len(ds) if items is None else min(items, len(ds))
    samples = (ds[i] for i in range(count))  # each sample degrades its photo: build it once
    return [(sample["lq"].permute(1, 2, 0).numpy(), sample["gt"].permute(1, 2, 0).numpy()) for sample in samples]


def baseline(lq: np.ndarray, task: str) -> np.ndarray:
    """Bicubic x4 (MATLAB-style) for sr, the degraded input itself for deblock."""
    return np.clip(imresize(lq, 4), 0, 1) if task == "sr" else lq


def evaluate(
    plain: Restorer,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    on_item: Callable[[str, int, int], None] | None = None,
) -> list[EvalRow]:
    """Scores `plain` (no ensemble), the same models with self-ensemble x4, and the task's baseline."""
    task, crop = plain.task, plain.scale
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "EDPN": plain.restore_array,
        "EDPN + self-ensemble x4": Restorer(models=plain.models, device=str(plain.device), tile=plain.tile,
                                            ensemble="x4").restore_array,
        "bicubic" if task == "sr" else "degraded input": lambda lq: baseline(lq, task),
    }
    rows = []
    for name, method in methods.items():
        per_item = []
        for i, (lq, gt) in enumerate(pairs):
            per_item.append(score(method(lq), gt, crop))
            if on_item is not None:
                on_item(name, i + 1, len(pairs))
        rows.append(EvalRow(name, {k: float(np.mean([s[k] for s in per_item])) for k in METRICS}))
    return rows


def format_table(rows: list[EvalRow]) -> str:
    header = "| method | PSNR RGB | SSIM RGB | PSNR Y | SSIM Y | LPIPS | gain Y (dB) |"
    lines = [header, "|" + "---|" * 7]
    base = rows[-1].scores["psnr_y"]
    for row in rows:
        s = row.scores
        lines.append(f"| {row.method} | {s['psnr_rgb']:.2f} | {s['ssim_rgb']:.4f} | {s['psnr_y']:.2f} | "
                     f"{s['ssim_y']:.4f} | {s['lpips']:.4f} | {s['psnr_y'] - base:+.2f} |")
    return "\n".join(lines)
