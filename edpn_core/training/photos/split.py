"""Split the photos by whole photo into disjoint sets, and pack training crops small enough to carry."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ...config import TASK_SCALES
from ..config import DEFAULT_VAL_PATCH


def _load_manifest(manifest: Sequence[dict] | Path | str) -> list[dict]:
    if isinstance(manifest, (str, Path)):
        return json.loads(Path(manifest).read_text())
    return list(manifest)


# The validation photos of the first shipped models and lxqt-themes cloud: the six photos no shipped weights
# have seen (the model card's report-clean), kept in the report set so that their figures stay comparable.
REPORT_PHOTOS = ("enlightenment-data__Spruce-Needles.png", "enlightenment-data__Sunset-Clouds.png",
                 "lomiri-wallpapers-16.04__Wine_by_Jakkub_Mede.png",
                 "lomiri-wallpapers-16.04__greentock_by_Peter_Nerlich.png", "mate-backgrounds__Storm.png",
                 "lxqt-themes__cloud.png")
# The shipped weights were trained on every photo of these packages but REPORT_PHOTOS and lxqt-themes beam.
# report draws none of those, so that the figures of weights continued from the shipped files are on photos
# they have never seen; select may (it only picks checkpoints).
SHIPPED_TRAINING_PACKAGES = ("enlightenment-data", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
                             "lxqt-themes", "mate-backgrounds", "plasma-workspace-wallpapers", "sddm-theme-maldives")
UNSEEN_BY_SHIPPED_WEIGHTS = (*REPORT_PHOTOS, "lxqt-themes__beam.png")
# Photos blurred by design over most of the frame: what a restoration is scored against, or learns to produce,
# must be sharp. Found on 2026-12-04 by `edpn eval --by-photo` (docs/TRAINING_CAMPAIGN.md, "Two report photos
# that are not sharp"); they train nothing and are scored nowhere.
NOT_SHARP = {
    "mate-backgrounds__Storm.png": "taken from a moving car: the road and its rails are streaked by motion blur "
                                   "across the frame, nothing in it is sharp",
    "lxqt-themes__cloud.png": "tilt-shift: only a narrow band of clouds is in focus, the rest is defocus blur",
}


# The shortest side a held-out photo needs: select feeds training's validation, whose crops are
# DEFAULT_VAL_PATCH times the scale (512 px for sr); report feeds `edpn eval --crop 384`, the model card's sr crop.
HELD_OUT_MIN_SIDE = {"select": max(DEFAULT_VAL_PATCH[task] * scale for task, scale in TASK_SCALES.items()),
                     "report": 384}


class PhotoSplit(NamedTuple):
    """Disjoint sorted file lists: train to learn from, select to pick checkpoints, report for the model card, and
    set_aside: photos that are not sharp (NOT_SHARP), in none of the others."""

    train: list[str]
    select: list[str]
    report: list[str]
    set_aside: list[str] = []


def _fits(entry: dict, held_out_set: str) -> bool:
    """Large enough for the set's crops (a manifest without sizes is taken at its word), and for report
    never seen by the shipped weights."""
    if held_out_set == "report" and entry.get("source_package") in SHIPPED_TRAINING_PACKAGES:
        return entry["file"] in UNSEEN_BY_SHIPPED_WEIGHTS
    size = entry.get("saved_size")
    return size is None or min(size) >= HELD_OUT_MIN_SIDE[held_out_set]


def split_photos(manifest: Sequence[dict] | Path | str, val_fraction: float = 0.2, seed: int = 0,
                 pinned_report: Sequence[str] = REPORT_PHOTOS, not_sharp: Sequence[str] = tuple(NOT_SHARP)
                 ) -> PhotoSplit:
    """Hold whole photos (never crops of one photo) out of training, in two sets that never overlap.

    val_fraction of the photos are held out (at least two when it is not 0): half for select, which picks
    checkpoints during training, the other half (and any more that pinned_report forces) for report,
    which the model card quotes, so the choice of checkpoint never flatters the reported figures. Each set
    draws in turn the photo whose kind of content (the manifest's "content") and then package it has
    fewest of, so both span every kind that has photos that fit them (``_fits``); every
    package keeps a photo for training and every kind at least half of its photos (a rare kind is not
    drained). A set with no photo left to draw stays smaller.
    Deterministic for a seed and independent of the manifest's order, so a run can be reproduced.
    Photos that are not sharp are set aside: out of the draw, or, when pinned, drawn as before and then taken
    out of report, so that every other photo stays where the split of the campaign's start put it.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    photos = {entry["file"]: entry for entry in _load_manifest(manifest)}
    set_aside = sorted(set(not_sharp) & set(photos))
    photos = {name: entry for name, entry in photos.items() if name not in set_aside or name in pinned_report}
    n_held = int(round(val_fraction * len(photos)))
    if val_fraction > 0:
        n_held = max(n_held, 2)
    n_held = max(0, min(n_held, len(photos) - 1))
    report = sorted(set(pinned_report) & set(photos))
    n_select = n_held // 2
    n_report = max(n_held - n_select, len(report))
    if n_select + n_report >= len(photos):
        raise ValueError(f"{len(report)} pinned report photos leave no photo for training")

    def package(name: str) -> str:
        return photos[name].get("source_package", "")

    def kind(name: str) -> str:
        return photos[name].get("content", "")

    rng = np.random.default_rng(seed)
    names = sorted(set(photos) - set(report))
    candidates = [names[i] for i in rng.permutation(len(names))]
    packages_left, kinds_left = Counter(map(package, candidates)), Counter(map(kind, candidates))  # in training
    # Half of each kind stays in training; untagged photos (older manifests) keep one, as a package does.
    kinds_kept = {content: count / 2 if content else 1 for content, count in kinds_left.items()}
    select: list[str] = []
    targets = {"select": (select, n_select), "report": (report, n_report)}
    while True:
        open_sets = [(name, chosen) for name, (chosen, size) in targets.items() if len(chosen) < size]
        if not open_sets:
            break
        set_name, chosen = min(open_sets, key=lambda item: len(item[1]))  # the smaller set draws next
        drawable = [name for name in candidates if _fits(photos[name], set_name)
                    and packages_left[package(name)] > 1 and kinds_left[kind(name)] - 1 >= kinds_kept[kind(name)]]
        if not drawable:
            targets[set_name] = (chosen, len(chosen))
            continue
        kinds_in, packages_in = Counter(map(kind, chosen)), Counter(map(package, chosen))
        name = min(drawable, key=lambda candidate: (kinds_in[kind(candidate)], packages_in[package(candidate)]))
        candidates.remove(name)
        packages_left[package(name)] -= 1
        kinds_left[kind(name)] -= 1
        chosen.append(name)
    held = set(select) | set(report)
    return PhotoSplit(sorted(set(photos) - held), sorted(select), sorted(set(report) - set(set_aside)), set_aside)


def arrange_split(dest: Path, val_fraction: float = 0.2, seed: int = 0,
                  pinned_report: Sequence[str] = REPORT_PHOTOS, not_sharp: Mapping[str, str] = NOT_SHARP) -> PhotoSplit:
    """Move the photos of dest into dest/train, dest/select, dest/report and dest/set_aside (with why), each with
    its own manifest.json, so that training pointed at dest/train can never see a held-out photo."""
    dest = Path(dest)
    entries = _load_manifest(dest / "manifest.json")
    split = split_photos(entries, val_fraction, seed, pinned_report, tuple(not_sharp))
    for split_name, names in split._asdict().items():
        folder = dest / split_name
        folder.mkdir(exist_ok=True)
        chosen = [dict(e, split=split_name) for e in entries if e["file"] in set(names)]
        for entry in chosen:
            if entry["file"] in not_sharp:
                entry["not_sharp"] = not_sharp[entry["file"]]
            if (dest / entry["file"]).exists():
                (dest / entry["file"]).replace(folder / entry["file"])
        (folder / "manifest.json").write_text(json.dumps(chosen, indent=1))
    (dest / "manifest.json").unlink()
    return split


def pack_photos(src_dir: Path, pack_path: Path, max_mib: float = 40.0, patch: int = 512,
                seed: int = 0) -> list[dict]:
    """Write lossless PNG crops of the photos in src_dir into the folder pack_path, within max_mib.

    A GPU machine receives only a few tens of MiB, so crops are chosen round-robin across photos (every
    photo is represented) from non-overlapping tiles in random order until the budget is spent. The
    pack's manifest.json holds the photo entries of src_dir/manifest.json and, per crop, its source and
    box, so splits by source photo stay possible. Returns the crop entries.
    """
    src_dir, pack_path = Path(src_dir), Path(pack_path)
    manifest_path = src_dir / "manifest.json"
    photos = _load_manifest(manifest_path) if manifest_path.exists() else [
        {"file": p.name} for p in sorted(src_dir.glob("*.png"))]
    if not photos:
        raise ValueError(f"no photos in {src_dir}")
    rng = np.random.default_rng(seed)
    crops_dir = pack_path / "crops"
    shutil.rmtree(crops_dir, ignore_errors=True)
    crops_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="edpn-pack-") as staging:
        # Encode every tile once (each photo decoded once), then choose by size, then move the chosen.
        candidates: list[list[dict]] = []
        for entry in photos:
            with Image.open(src_dir / entry["file"]) as img:
                rgb = img.convert("RGB")
            pw, ph = min(patch, rgb.width), min(patch, rgb.height)
            boxes = [(x, y) for y in range(0, rgb.height - ph + 1, ph) for x in range(0, rgb.width - pw + 1, pw)]
            tiles = []
            for k, i in enumerate(rng.permutation(len(boxes))):
                x, y = boxes[i]
                name = f"{Path(entry['file']).stem}__{k:03d}.png"
                rgb.crop((x, y, x + pw, y + ph)).save(Path(staging) / name)
                tiles.append({"file": f"crops/{name}", "source": entry["file"], "box": [x, y, pw, ph],
                              "bytes": (Path(staging) / name).stat().st_size})
            candidates.append(tiles)
        budget = int(max_mib * 2**20)
        used = len(json.dumps({"photos": photos, "crops": []}))  # the manifest counts too
        crops: list[dict] = []
        for k in range(max(len(t) for t in candidates)):
            for tiles in candidates:
                if k >= len(tiles):
                    continue
                tile = tiles[k]
                size = tile.pop("bytes")
                entry_size = len(json.dumps(tile)) + 2  # with its ", " separator
                if used + size + entry_size <= budget:
                    shutil.move(str(Path(staging) / Path(tile["file"]).name), str(pack_path / tile["file"]))
                    used += size + entry_size
                    crops.append(tile)
    (pack_path / "manifest.json").write_text(json.dumps({"photos": photos, "crops": crops}))
    return crops
