"""Real training photos from Debian wallpaper packages, with their licences, plus packing and splitting.

REDS is not reachable offline, but several Debian packages ship freely licensed photographs of 1 MP and
more. ``fetch_photos`` downloads them with ``apt-get download`` (no root install), keeps the
photographs (not the drawn artwork), halves them so JPEG blocks of the originals vanish from the
training targets, and records where each came from and under which licence.
"""
from __future__ import annotations

import fnmatch
import io
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

MIN_PIXELS = 1_000_000


@dataclass(frozen=True)
class PhotoSource:
    """Which files of a package are photographs and how to name them."""

    package: str
    patterns: tuple[str, ...]  # globs relative to the package root (the installed tree)
    exclude: tuple[str, ...] = ()  # file stems that are drawings or patterns, not photographs
    edj: bool = False  # Enlightenment backgrounds: the photo is a JPEG stream inside an Eet archive
    name_parent: int | None = None  # take the name from path.parents[n] (plasma: the wallpaper folder)


# Photographs only: the other backgrounds of these packages are drawings, gradients or patterns.
_ENLIGHTENMENT_PHOTOS = ("Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain",
                         "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles",
                         "Sunset-Clouds", "White-Flower", "Yellow-Flower")
_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                  "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")

SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("enlightenment-data",
                tuple(f"usr/share/enlightenment/data/backgrounds/{name}.edj" for name in _ENLIGHTENMENT_PHOTOS),
                edj=True),
    PhotoSource("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*.jpg",)),
    PhotoSource("lomiri-wallpapers-20.04", ("usr/share/backgrounds/*.jpg",),
                exclude=("Fossa_by_Jasper_Roks", "Infinite-Sea_by_Aury88", "Painting-Colors_by__herobrine7gamer")),
    PhotoSource("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",)),
    PhotoSource("plasma-workspace-wallpapers",
                tuple(f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg" for name in _PLASMA_PHOTOS),
                name_parent=2),
)


# ----------------------------------------------------------------------------------------------- JPEG in Eet
_MARKER_AFTER_ENTROPY = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # not stuffing (00), RST (D0-D7) or fill


def _jpeg_end(blob: bytes, start: int) -> int | None:
    """End offset of the JPEG stream whose SOI is at ``start``, walking its segments; None if malformed.

    Walking segment lengths (rather than taking the first FFD9) steps over EXIF thumbnails, whose own
    EOI would otherwise cut the photo short.
    """
    pos = start + 2
    n = len(blob)
    while pos + 4 <= n:
        if blob[pos] != 0xFF:
            return None
        code = blob[pos + 1]
        if code == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if code == 0xD9:
            return pos + 2
        if code == 0xD8 or code == 0x00:
            return None
        if code == 0x01 or 0xD0 <= code <= 0xD7:
            pos += 2
            continue
        length = (blob[pos + 2] << 8) | blob[pos + 3]
        if length < 2:
            return None
        pos += 2 + length
        if code == 0xDA:  # start of scan: entropy-coded data runs up to the next real marker
            match = _MARKER_AFTER_ENTROPY.search(blob, pos)
            if match is None:
                return None
            pos = match.start()
    return None


def jpeg_streams(blob: bytes) -> list[bytes]:
    """Every well-formed JPEG stream (SOI ... EOI) embedded in a byte blob, in order of appearance."""
    streams = []
    start = blob.find(b"\xff\xd8\xff")
    while start != -1:
        end = _jpeg_end(blob, start)
        if end is not None:
            streams.append(blob[start:end])
        start = blob.find(b"\xff\xd8\xff", start + 2)
    return streams


def largest_jpeg(blob: bytes) -> bytes | None:
    """The largest embedded JPEG that decodes: an .edj background keeps its photo as the biggest stream."""
    for stream in sorted(jpeg_streams(blob), key=len, reverse=True):
        try:
            with Image.open(io.BytesIO(stream)) as img:
                img.load()
            return stream
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return None


# ----------------------------------------------------------------------------------------------- licences
def parse_copyright(text: str) -> tuple[str | None, list[tuple[list[str], str]]]:
    """Parse a machine-readable debian/copyright (DEP-5) into (main licence, [(file patterns, licence)]).

    The main licence is the header's License field, else that of ``Files: *``, else the first stanza's.
    """
    header_license = None
    stanzas: list[tuple[list[str], str]] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t"):
                if key is not None:
                    fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        licence = fields.get("license", "").split("\n", 1)[0].strip()
        if "files" in fields and licence:
            stanzas.append((fields["files"].split(), licence))
        elif "format" in fields and licence:
            header_license = licence
    main = header_license
    if main is None:
        main = next((lic for pats, lic in stanzas if "*" in pats), stanzas[0][1] if stanzas else None)
    return main, stanzas


def _pattern_matches(pattern: str, path: PurePosixPath) -> bool:
    """DEP-5 patterns are relative to the upstream tree, not the installed one: match any path suffix,
    and a pattern naming one exact file also by its file name (packages flatten upstream folders)."""
    parts = path.parts
    for i in range(len(parts)):
        if fnmatch.fnmatchcase("/".join(parts[i:]), pattern):
            return True
    name = PurePosixPath(pattern).name
    return not any(c in name for c in "*?[") and name == path.name


def license_for_file(copyright_text: str, installed_path: str) -> str:
    """Licence short name covering one installed file: the last matching stanza wins, as DEP-5 says."""
    main, stanzas = parse_copyright(copyright_text)
    path = PurePosixPath(installed_path.lstrip("/"))
    found = None
    for patterns, licence in stanzas:
        if any(_pattern_matches(p, path) for p in patterns):
            found = licence
    return found or main or "unknown (see the package's copyright file)"


# ----------------------------------------------------------------------------------------------- fetching
def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)


def _download(package: str, workdir: Path, log: Callable[[str], None]) -> Path:
    """``apt-get download`` into workdir (reusing an earlier download); ``apt-get update`` only on failure."""
    existing = sorted(workdir.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    result = _run(["apt-get", "download", package], workdir)
    if result.returncode != 0:
        log(f"apt-get download {package} failed ({result.stderr.strip()[-200:]}); running apt-get update")
        update = _run(["apt-get", "update"], workdir)
        if update.returncode != 0:
            raise RuntimeError(f"apt-get update failed: {update.stderr.strip()[-500:]}")
        result = _run(["apt-get", "download", package], workdir)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {package} produced no .deb in {workdir}")
    return debs[-1]


def _open_photo(path: Path, edj: bool) -> Image.Image | None:
    if edj:
        stream = largest_jpeg(path.read_bytes())
        return None if stream is None else Image.open(io.BytesIO(stream))
    return Image.open(path)


def halve(img: Image.Image) -> Image.Image:
    """Downscale by exactly 2 (Lanczos, odd edge dropped) so source JPEG blocks do not reach targets."""
    img = ImageOps.exif_transpose(img).convert("RGB")
    w, h = img.size
    img = img.crop((0, 0, w - w % 2, h - h % 2))
    return img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _collect(source: PhotoSource, root: Path, dest: Path, used: set[str],
             log: Callable[[str], None]) -> list[dict]:
    copyright_path = root / "usr/share/doc" / source.package / "copyright"
    copyright_text = copyright_path.read_text(errors="replace") if copyright_path.exists() else ""
    paths = sorted({p for pattern in source.patterns for p in root.glob(pattern)
                    if p.is_file() and not p.is_symlink() and p.stem not in source.exclude})
    entries = []
    for path in paths:
        installed = "/" + path.relative_to(root).as_posix()
        img = _open_photo(path, source.edj)
        if img is None:
            log(f"  skip {installed}: no decodable JPEG inside")
            continue
        with img:
            if img.width * img.height < MIN_PIXELS:
                log(f"  skip {installed}: {img.width}x{img.height} is under 1 MP")
                continue
            original_size = [img.width, img.height]
            small = halve(img)
        base = _safe_name(path.parents[source.name_parent].name if source.name_parent is not None else path.stem)
        name = f"{source.package}__{base}.png"
        suffix = 2
        while name in used:
            name = f"{source.package}__{base}_{suffix}.png"
            suffix += 1
        used.add(name)
        small.save(dest / name)
        entries.append({
            "file": name,
            "source_package": source.package,
            "original_path": installed,
            "license": license_for_file(copyright_text, installed),
            "original_size": original_size,
            "saved_size": [small.width, small.height],
        })
        log(f"  {name}: {original_size[0]}x{original_size[1]} -> {small.width}x{small.height}")
    return entries


def fetch_photos(dest: Path, workdir: Path | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Download the wallpaper packages, save their photographs halved as PNG in dest, write manifest.json.

    workdir keeps the .deb files and extracted trees (so a re-run downloads nothing); without it a
    temporary folder is used and removed. Returns the manifest entries.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edpn-photos-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        entries: list[dict] = []
        used: set[str] = set()
        for source in SOURCES:
            log(f"{source.package}:")
            try:
                deb = _download(source.package, work, log)
            except RuntimeError as exc:
                log(f"  skipped: {exc}")
                continue
            root = work / f"{source.package}.extracted"
            shutil.rmtree(root, ignore_errors=True)
            result = _run(["dpkg-deb", "-x", str(deb), str(root)], work)
            if result.returncode != 0:
                log(f"  skipped: dpkg-deb -x failed: {result.stderr.strip()[-300:]}")
                continue
            entries += _collect(source, root, dest, used, log)
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    if not entries:
        raise RuntimeError("no photos were obtained; see the log for why each package failed")
    (dest / "manifest.json").write_text(json.dumps(entries, indent=1))
    return entries


# ----------------------------------------------------------------------------------------------- split, pack
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
