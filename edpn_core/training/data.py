"""PyTorch datasets of (blurry low-quality, sharp) pairs.

``SyntheticPairDataset`` degrades sharp photos on the fly; ``PairedFolderDataset`` and ``RedsDataset``
read ready-made pairs. Every item is a dict {"lq": 3 x h x w, "gt": 3 x H x W float32 tensors in [0, 1],
"name": str} with H = 4h for sr and H = h for deblock. Item i depends only on (seed, i), never on the
epoch or the worker, so runs are reproducible; a ``length`` longer than the number of images gives more
distinct crops per epoch.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import TASK_SCALES, Task
from ..inference.imageio import IMAGE_EXTENSIONS, ImageError, code_values, load_image
from .degradations import DegradationConfig, degrade

DEFAULT_LQ_PATCH = {"sr": 64, "deblock": 160}  # the paper's LR patch sizes

logger = logging.getLogger("edpn.data")


def _scale(task: Task) -> int:
    if task not in TASK_SCALES:
        raise ValueError(f"task must be one of {tuple(TASK_SCALES)}, got {task!r}")
    return TASK_SCALES[task]


def list_images(folder: Path | str) -> list[Path]:
    """Image files under folder, recursively, in a stable (sorted) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: Path | str) -> np.ndarray:
    """H x W x 3 uint8 RGB (kept as uint8 so caches stay four times smaller than float), read as `edpn restore`
    reads photos (imageio.load_image: upright by EXIF, sizes checked first, every failure an ImageError)."""
    return code_values(load_image(path).rgb, 8)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H x W x 3 array (uint8 or float in [0, 1]) -> 3 x H x W float32 tensor."""
    arr = np.asarray(img)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def crop_and_augment(lq: np.ndarray, gt: np.ndarray, scale: int, lq_patch: int | None,
                     rng: np.random.Generator, augment: bool) -> tuple[np.ndarray, np.ndarray]:
    """Aligned random crop (the gt crop is the lq crop times scale) and one of the eight flips/rotations,
    applied identically to both so every lq pixel keeps covering the same gt pixels.

    lq_patch None keeps the whole images (validation).
    """
    h, w = lq.shape[:2]
    if gt.shape[:2] != (h * scale, w * scale):
        raise ValueError(f"gt is {gt.shape[1]}x{gt.shape[0]} but lq x {scale} is {w * scale}x{h * scale}")
    if lq_patch is not None:
        if h < lq_patch or w < lq_patch:
            raise ValueError(f"lq image {w}x{h} is smaller than the patch {lq_patch}")
        top, left = int(rng.integers(0, h - lq_patch + 1)), int(rng.integers(0, w - lq_patch + 1))
        lq = lq[top:top + lq_patch, left:left + lq_patch]
        gt = gt[top * scale:(top + lq_patch) * scale, left * scale:(left + lq_patch) * scale]
    if augment:
        turns, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        lq, gt = np.rot90(lq, turns), np.rot90(gt, turns)
        if flip:
            lq, gt = lq[:, ::-1], gt[:, ::-1]
    return np.ascontiguousarray(lq), np.ascontiguousarray(gt)


def degradation_margin(task: Task, degradation: DegradationConfig) -> int:
    """Lq pixels of surroundings a patch is degraded with, so blur and resize see real content past its edges."""
    scale = _scale(task)
    reach = degradation.kernel_size // 2 + (2 * scale if scale > 1 else 0)  # blur + bicubic
    margin = math.ceil(reach / scale)
    if task == "deblock":
        margin = -(-margin // 16) * 16  # patch on the JPEG 16 x 16 block grid (away from photo edges)
    return margin


def degrade_patch(photo: np.ndarray, top: int, left: int, size: int, task: Task, rng: np.random.Generator,
                  degradation: DegradationConfig, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """(lq, gt) for the size x size gt patch at (top, left) of a uint8 photo, degraded together with up to
    `margin` lq pixels of its surroundings, then cut out."""
    s = _scale(task)
    # Margins in whole lq pixels, clipped to the photo, so the lq grid stays aligned with the patch.
    m_top, m_left = min(margin, top // s) * s, min(margin, left // s) * s
    m_bottom = min(margin, (photo.shape[0] - top - size) // s) * s
    m_right = min(margin, (photo.shape[1] - left - size) // s) * s
    region = photo[top - m_top:top + size + m_bottom, left - m_left:left + size + m_right]
    lq = degrade(region.astype(np.float32) / 255.0, task, rng, degradation)
    lq_size = size // s
    lq = lq[m_top // s:m_top // s + lq_size, m_left // s:m_left // s + lq_size]
    return lq, photo[top:top + size, left:left + size]


class SyntheticPairDataset(Dataset):
    """Pairs made on the fly from sharp photos with ``degradations.degrade``.

    The gt crop is degraded together with a margin of its surroundings (as far as the photo reaches),
    then the margin is cut away, so blur and resize see real content past the crop's edges. Decoded
    photos are cached in memory (per DataLoader worker).
    """

    def __init__(self, folder_or_files: Path | str | Iterable[Path | str], task: Task, lq_patch: int | None = None,
                 degradation: DegradationConfig | None = None, seed: int = 0, length: int | None = None,
                 augment: bool = True) -> None:
        self.scale = _scale(task)
        self.task = task
        if isinstance(folder_or_files, (str, Path)):
            source = Path(folder_or_files)
            self.files = list_images(source) if source.is_dir() else [source]
        else:
            self.files = [Path(p) for p in folder_or_files]
        if not self.files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder_or_files}")
        self.lq_patch = lq_patch or DEFAULT_LQ_PATCH[task]
        self.degradation = degradation or DegradationConfig()
        self.margin = degradation_margin(task, self.degradation)
        self.gt_patch = self.lq_patch * self.scale
        small, unreadable = [], {}
        for path in self.files:
            try:
                height, width = read_image(path).shape[:2]  # decodes the whole file: it fails here, not mid-training
            except ImageError as exc:
                unreadable[path] = exc.reason
                continue
            if min(height, width) < self.gt_patch:
                small.append(f"{path} ({width}x{height})")
        if unreadable:
            listing = ", ".join(f"{path.name} ({reason})" for path, reason in unreadable.items())
            if len(unreadable) == len(self.files):
                raise ValueError(f"no readable images in {folder_or_files}: {listing}")
            logger.warning("skipping %d unreadable image(s) in %s: %s", len(unreadable), folder_or_files, listing)
            self.files = [path for path in self.files if path not in unreadable]
        if small:
            raise ValueError(f"photos smaller than the {self.gt_patch}-pixel gt patch (lq_patch {self.lq_patch}"
                             f" x {self.scale}): {', '.join(small)}")
        self.seed = seed
        self.length = length or len(self.files)
        self.augment = augment
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _photo(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = read_image(self.files[index])
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        photo_index = index % len(self.files)
        photo = self._photo(photo_index)
        p = self.gt_patch
        top = int(rng.integers(0, photo.shape[0] - p + 1))
        left = int(rng.integers(0, photo.shape[1] - p + 1))
        lq, gt = degrade_patch(photo, top, left, p, self.task, rng, self.degradation, self.margin)
        lq, gt = crop_and_augment(lq, gt, self.scale, None, rng, self.augment)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "name": f"{self.files[photo_index].stem}_{index:06d}"}


def pair_folders(lq_dir: Path | str, gt_dir: Path | str) -> list[tuple[str, Path, Path]]:
    """(key, lq, gt) for files with the same relative path minus extension (lq .jpg may pair a gt .png)."""
    sides = []
    for folder in (Path(lq_dir), Path(gt_dir)):
        keyed: dict[str, Path] = {}
        for path in list_images(folder):
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in keyed:
                raise ValueError(f"two images share the name {key} in {folder}: {keyed[key].name}, {path.name}")
            keyed[key] = path
        sides.append(keyed)
    lq, gt = sides
    only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
    if only_lq or only_gt:
        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
        raise ValueError(f"unmatched files: {len(only_lq)} only in {lq_dir} [{listing(only_lq)}]; "
                         f"{len(only_gt)} only in {gt_dir} [{listing(only_gt)}]")
    if not lq:
        raise ValueError(f"no images in {lq_dir} and {gt_dir}")
    return [(key, lq[key], gt[key]) for key in sorted(lq)]


def _reds_dirs(root: Path | str, task: Task, split: str) -> tuple[Path, Path]:
    root = Path(root)
    _scale(task)
    lq_dir = root / f"{split}_blur_bicubic" / "X4" if task == "sr" else root / f"{split}_blur_jpeg"
    gt_dir = root / f"{split}_sharp"
    for folder in (lq_dir, gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"REDS folder missing: {folder}")
    return lq_dir, gt_dir


def reds_pairs(root: Path | str, task: Task, split: str = "train") -> list[tuple[Path, Path]]:
    """REDS (lq, gt) pairs: the same clip AND the same frame index (the authors' code is off by two)."""
    return [(lq, gt) for _, lq, gt in pair_folders(*_reds_dirs(root, task, split))]


class PairedFolderDataset(Dataset):
    """Ready-made pairs from two folders with matching relative names; lq_patch None = whole images."""

    def __init__(self, lq_dir: Path | str, gt_dir: Path | str, task: Task, lq_patch: int | None = None,
                 augment: bool = True, seed: int = 0, length: int | None = None) -> None:
        self.scale = _scale(task)
        self.pairs = pair_folders(lq_dir, gt_dir)
        self.lq_patch = lq_patch
        self.augment = augment
        self.seed = seed
        self.length = length or len(self.pairs)
        self._unreadable: set[str] = set()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        """A pair whose file cannot be decoded is reported by name once and the next pair stands in for it."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        for attempt in range(len(self.pairs)):
            key, lq_path, gt_path = self.pairs[(index + attempt) % len(self.pairs)]
            try:
                lq, gt = read_image(lq_path), read_image(gt_path)
                break
            except ImageError as exc:
                if key not in self._unreadable:
                    self._unreadable.add(key)
                    logger.warning("skipping unreadable pair %s / %s (%s)", lq_path, gt_path, exc)
        else:
            raise ValueError(f"no readable pairs in {self.pairs[0][1].parent} / {self.pairs[0][2].parent}")
        try:
            lq, gt = crop_and_augment(lq, gt, self.scale, self.lq_patch, rng, self.augment)
        except ValueError as exc:
            raise ValueError(f"{lq_path} / {gt_path}: {exc}") from exc
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "name": key}


class RedsDataset(PairedFolderDataset):
    """REDS in its published layout (see ``reds_pairs``)."""

    def __init__(self, root: Path | str, task: Task, split: str = "train", lq_patch: int | None = None,
                 augment: bool = True, seed: int = 0, length: int | None = None) -> None:
        super().__init__(*_reds_dirs(root, task, split), task, lq_patch=lq_patch, augment=augment, seed=seed,
                         length=length)

