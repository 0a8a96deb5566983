"""The fixed validation set that picks checkpoints, scored as a user's saved 8-bit image would be."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..config import TASK_SCALES, Task
from ..inference.imageio import code_values
from ..metrics.detail import detail_map
from ..metrics.psnr_ssim import psnr, ssim
from .config import DEFAULT_VAL_PATCH, TrainConfig
from .data import SyntheticPairDataset, list_images, to_tensor
from .degradations import baseline

DETAILED_CANDIDATES = 4  # candidate crops per detailed validation crop


def texture(img: torch.Tensor) -> float:
    """Mean detail (`detail_map`) of a 3 x H x W crop, as evaluation measures its crops."""
    return float(detail_map(img.float().permute(1, 2, 0).numpy()).mean())


def build_val_items(cfg: TrainConfig) -> list[dict]:
    """A fixed validation set: the same crops and degradations at every validation. "detailed" draws several
    candidate crops per photo and keeps the most textured ones, photo by photo in turn, so flat sky (where a
    tiny colour offset swings PSNR by a dB) does not decide which checkpoint is best. "grid" lays the crops out
    as the shipping report does (grid_items)."""
    if not cfg.val_data:
        return []
    data, val = Path(cfg.data).resolve(), Path(cfg.val_data).resolve()
    if cfg.data and (val == data or data in val.parents):
        raise ValueError(f"validation photos {cfg.val_data} lie in the training data {cfg.data}: checkpoints would "
                         f"be picked on photos the network trains on")
    if cfg.val_crops == "grid":
        return grid_items(cfg)
    candidates = cfg.val_items * (DETAILED_CANDIDATES if cfg.val_crops == "detailed" else 1)
    ds = SyntheticPairDataset(cfg.val_data, cfg.task, lq_patch=cfg.val_patch or DEFAULT_VAL_PATCH[cfg.task],
                              degradation=cfg.degradation_config(), seed=cfg.seed + 10_007, length=candidates,
                              augment=False)
    items = [ds[i] for i in range(len(ds))]
    if cfg.val_crops == "random":
        return items
    photos = len(ds.files)
    per_photo = [sorted(items[p::photos], key=lambda item: -texture(item["gt"])) for p in range(photos)]
    in_turn = [group[rank] for rank in range(max(map(len, per_photo))) for group in per_photo if rank < len(group)]
    return in_turn[:cfg.val_items]


def grid_items(cfg: TrainConfig) -> list[dict]:
    """`val_items` crops, the most detailed of each photo in turn, each degraded as `edpn eval` degrades the
    report's crops (every blur family, the task's input formats, no noise), one format per family rotating from
    crop to crop: the groups the shipping rule judges, scored while training (`groups` names an item's)."""
    from ..evaluate import eval_items

    photos = len(list_images(cfg.val_data))
    per_photo = -(-cfg.val_items // photos) if photos else 1
    scale = TASK_SCALES[cfg.task]
    crop = (cfg.val_patch or DEFAULT_VAL_PATCH[cfg.task]) * scale
    items = eval_items(cfg.val_data, cfg.task, crop=crop, crops_per_photo=per_photo, seed=cfg.seed + 10_007,
                       max_crops=cfg.val_items, rotate_formats=True)
    return [{"lq": to_tensor(item.lq), "gt": to_tensor(item.gt), "name": item.name,
             "groups": (f"family {item.condition.family}", f"input {item.condition.input_format}")}
            for item in items]


def items_digest(items: list[dict]) -> str:
    """A fingerprint of the validation crops and their degraded inputs: gains are comparable only between runs
    whose digests agree (other photos, another crop picker or another degradation mix change it)."""
    digest = hashlib.sha256()
    for item in items:
        for key in ("lq", "gt"):
            digest.update(item[key].numpy().tobytes())
    return digest.hexdigest()[:12]


def score_8bit(out: torch.Tensor, gt: torch.Tensor, scale: int) -> dict[str, float]:
    """Scores of 3 x H x W in [0, 1] rounded as a saved PNG is: the image a user gets is scored."""
    out8, gt8 = (code_values(t.detach().float().permute(1, 2, 0).cpu().numpy(), 8) for t in (out, gt))
    return {"psnr_y": psnr(out8, gt8, crop_border=scale, test_y=True),
            "ssim_y": ssim(out8, gt8, crop_border=scale, test_y=True)}


def mean_scores(rows: list[dict[str, float]], items: list[dict]) -> dict[str, float]:
    """Means over all items, and Y-PSNR per group of grid items under "psnr_y GROUP" (e.g. "psnr_y family none")."""
    means = {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
    groups = sorted({group for item in items for group in item.get("groups", ())})
    for group in groups:
        means[f"psnr_y {group}"] = float(np.mean([row["psnr_y"] for row, item in zip(rows, items)
                                                  if group in item.get("groups", ())]))
    return means


def gains_over(scores: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Each Y-PSNR mean's gain over the baseline's: "psnr_y" -> "gain_y", "psnr_y family none" -> "gain_y family
    none"."""
    return {"gain_y" + key[len("psnr_y"):]: value - baseline[key] for key, value in scores.items()
            if key.startswith("psnr_y")}


def group_gains(scores: dict[str, float]) -> dict[str, float]:
    """{group: gain} with "all" first, from scores with per-group gains (grid crops); empty without groups."""
    groups = {key[len("gain_y "):]: value for key, value in scores.items() if key.startswith("gain_y ")}
    return {"all": scores["gain_y"], **groups} if groups else {}


@torch.no_grad()
def validate(model: torch.nn.Module, items: list[dict], device: torch.device, scale: int) -> dict[str, float]:
    """Y-PSNR and Y-SSIM of the model's 8-bit outputs (BasicSR's conventions, border crop = scale)."""
    was_training = model.training
    model.eval()
    rows = [score_8bit(model(item["lq"][None].to(device))[0], item["gt"], scale) for item in items]
    model.train(was_training)
    return mean_scores(rows, items)


def baseline_scores(items: list[dict], task: Task, scale: int) -> dict[str, float]:
    """The same scores for the task's baseline (bicubic x4 for sr, the degraded input for deblock), so
    validation reports a gain."""
    rows = [score_8bit(torch.from_numpy(np.ascontiguousarray(
        baseline(item["lq"].permute(1, 2, 0).numpy(), task).transpose(2, 0, 1))), item["gt"], scale)
        for item in items]
    return mean_scores(rows, items)
