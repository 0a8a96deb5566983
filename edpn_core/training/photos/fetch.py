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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from PIL import Image, ImageOps

from .eet import largest_jpeg
from .licences import license_for_file, stanza_for_file
from .rcc import QtResources
from .sources import SOURCES, PhotoSource

MIN_SIDE = 256  # after halving: sr's training crop (64 px x 4); SyntheticPairDataset refuses smaller photos
RCC_LICENCE_FILE = "README"  # GCompris keeps each folder's licences in a README beside its photos


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


def halve(img: Image.Image) -> Image.Image:
    """Downscale by exactly 2 (Lanczos, odd edge dropped) so source JPEG blocks do not reach targets."""
    img = ImageOps.exif_transpose(img).convert("RGB")
    w, h = img.size
    img = img.crop((0, 0, w - w % 2, h - h % 2))
    return img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


class _Candidate(NamedTuple):
    name: str  # what the saved file is named after
    photo: str  # the photo's own name, by which PhotoSource.content_of knows it
    record: dict  # where the photo comes from and its licence, as the manifest keeps them
    open: Callable[[], Image.Image | None]


def _package_files(source: PhotoSource, root: Path) -> list[Path]:
    return sorted({p for pattern in source.patterns for p in root.glob(pattern)
                   if p.is_file() and not p.is_symlink() and p.stem not in source.exclude})


def _file_candidates(source: PhotoSource, root: Path) -> Iterator[_Candidate]:
    """Photos that are files of the package (or the JPEG inside an Enlightenment background)."""
    copyright_path = root / "usr/share/doc" / source.package / "copyright"
    copyright_text = copyright_path.read_text(errors="replace") if copyright_path.exists() else ""
    for path in _package_files(source, root):
        installed = "/" + path.relative_to(root).as_posix()
        record = {"original_path": installed,
                  "license": source.license or license_for_file(copyright_text, installed)}

        def open_photo(path: Path = path) -> Image.Image | None:
            if source.edj:
                stream = largest_jpeg(path.read_bytes())
                return None if stream is None else Image.open(io.BytesIO(stream))
            return Image.open(path)

        name = path.parents[source.name_parent].name if source.name_parent is not None else path.stem
        yield _Candidate(name, name, record, open_photo)


def _rcc_licence(archive: QtResources, entry: PurePosixPath) -> tuple[str, dict[str, str] | None]:
    """The nearest README, in the photo's folder or above (explore_monuments keeps one for its country
    folders), with a stanza naming the photo, and that stanza."""
    for folder in entry.parents:
        readme = (folder / RCC_LICENCE_FILE).as_posix()
        if readme in archive:
            stanza = stanza_for_file(archive.read(readme).decode("utf-8", "replace"), entry.as_posix())
            if stanza is not None:
                return readme, stanza
    return "", None


def _rcc_candidates(source: PhotoSource, root: Path, log: Callable[[str], None]) -> Iterator[_Candidate]:
    """Photos inside Qt resource files, each with the licence that a README beside it gives; a photo
    that no README names is left out."""
    for path in _package_files(source, root):
        installed = "/" + path.relative_to(root).as_posix()
        archive = QtResources.open(path)
        for entry in archive.paths():
            entry_path = PurePosixPath(entry)
            if entry_path.stem in source.exclude or not any(entry_path.match(p) for p in source.rcc_entries):
                continue
            readme, stanza = _rcc_licence(archive, entry_path)
            if stanza is None:
                log(f"  skip {installed}:{entry}: no {RCC_LICENCE_FILE} in its folder or above names it")
                continue
            record = {"original_path": installed, "path_in_archive": entry, "license_file": readme,
                      "license": stanza["license"]}
            record.update({key: stanza[key] for key in ("copyright", "source") if key in stanza})

            def open_photo(entry: str = entry, archive: QtResources = archive) -> Image.Image:
                return Image.open(io.BytesIO(archive.read(entry)))

            yield _Candidate(f"{path.stem}__{entry_path.stem}", entry_path.stem, record, open_photo)


def _collect(source: PhotoSource, root: Path, dest: Path, used: set[str],
             log: Callable[[str], None]) -> list[dict]:
    candidates = _rcc_candidates(source, root, log) if source.rcc_entries else _file_candidates(source, root)
    entries = []
    for candidate in candidates:
        where = ":".join(filter(None, (candidate.record["original_path"], candidate.record.get("path_in_archive"))))
        img = candidate.open()
        if img is None:
            log(f"  skip {where}: no decodable JPEG inside")
            continue
        with img:
            if img.width * img.height < source.min_pixels or min(img.size) // 2 < MIN_SIDE:
                log(f"  skip {where}: {img.width}x{img.height} is under {source.min_pixels / 1e6:g} MP "
                    f"or its short side under {2 * MIN_SIDE} px")
                continue
            original_size = [img.width, img.height]
            small = halve(img)
        base = _safe_name(candidate.name)
        name = f"{source.package}__{base}.png"
        suffix = 2
        while name in used:
            name = f"{source.package}__{base}_{suffix}.png"
            suffix += 1
        used.add(name)
        small.save(dest / name)
        entry = {"file": name, "source_package": source.package, **candidate.record,
                 "content": source.content_of.get(candidate.photo, source.content),
                 "original_size": original_size, "saved_size": [small.width, small.height]}
        if source.license_note:
            entry["license_note"] = source.license_note
        entries.append(entry)
        log(f"  {name}: {original_size[0]}x{original_size[1]} -> {small.width}x{small.height}")
    return entries


def fetch_photos(dest: Path, workdir: Path | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Download the photo packages, save their photographs halved as PNG in dest, write manifest.json.

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
        for package in dict.fromkeys(source.package for source in SOURCES):
            log(f"{package}:")
            try:
                deb = _download(package, work, log)
            except RuntimeError as exc:
                log(f"  skipped: {exc}")
                continue
            root = work / f"{package}.extracted"
            shutil.rmtree(root, ignore_errors=True)
            result = _run(["dpkg-deb", "-x", str(deb), str(root)], work)
            if result.returncode != 0:
                log(f"  skipped: dpkg-deb -x failed: {result.stderr.strip()[-300:]}")
                continue
            for source in SOURCES:
                if source.package == package:
                    entries += _collect(source, root, dest, used, log)
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    if not entries:
        raise RuntimeError("no photos were obtained; see the log for why each package failed")
    (dest / "manifest.json").write_text(json.dumps(entries, indent=1))
    return entries
