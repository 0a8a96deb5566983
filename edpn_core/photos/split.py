"""Split the photos by whole photo into disjoint sets, and pack training crops small enough to carry."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def _load_manifest(manifest: Sequence[dict] | Path | str) -> list[dict]:
    if isinstance(manifest, (str, Path)):
        return json.loads(Path(manifest).read_text())
    return list(manifest)


def split_photos(manifest: Sequence[dict] | Path | str, val_fraction: float = 0.1,
                 seed: int = 0) -> tuple[list[str], list[str]]:
    """Split whole photos (never crops of one photo) into disjoint train and validation file lists.

    Deterministic for a seed and independent of the manifest's order, so a run can be reproduced.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    files = sorted({entry["file"] for entry in _load_manifest(manifest)})
    n_val = int(round(val_fraction * len(files)))
    if val_fraction > 0 and len(files) > 1:
        n_val = min(max(n_val, 1), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def arrange_split(dest: Path, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Move the photos of dest into dest/train and dest/val, each with its own manifest.json, so that training
    pointed at dest/train can never see a validation photo."""
    dest = Path(dest)
    entries = _load_manifest(dest / "manifest.json")
    train, val = split_photos(entries, val_fraction, seed)
    for split, names in (("train", train), ("val", val)):
        folder = dest / split
        folder.mkdir(exist_ok=True)
        chosen = [dict(e, split=split) for e in entries if e["file"] in set(names)]
        for entry in chosen:
            if (dest / entry["file"]).exists():
                (dest / entry["file"]).replace(folder / entry["file"])
        (folder / "manifest.json").write_text(json.dumps(chosen, indent=1))
    (dest / "manifest.json").unlink()
    return train, val


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
