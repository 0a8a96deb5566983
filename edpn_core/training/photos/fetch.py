"""Download the photo packages with ``apt-get download``, keep their photographs halved, record their licences.

Halving (exactly by 2, Lanczos) makes the JPEG blocks of the originals vanish from the training targets.
No root install is needed: each .deb is only unpacked with ``dpkg-deb -x``.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageOps

from .eet import largest_jpeg
from .licences import license_for_file
from .sources import SOURCES, PhotoSource

MIN_PIXELS = 1_000_000


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
        entry = {
            "file": name,
            "source_package": source.package,
            "original_path": installed,
            "license": license_for_file(copyright_text, installed),
            "original_size": original_size,
            "saved_size": [small.width, small.height],
        }
        if source.license_note:
            entry["license_note"] = source.license_note
        entries.append(entry)
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
