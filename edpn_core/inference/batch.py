"""Files in, files out, around the engine: shared by the CLI, the app and its batch dialog."""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import cv2
import numpy as np
from PIL import Image

from ..heap import release_freed_memory
from .engine import Cancelled, CancelToken, ProgressCallback, Restorer, RunSettings
from .imageio import (
    IMAGE_EXTENSIONS,
    SAVE_FORMATS,
    FileMetadata,
    ImageError,
    LoadedImage,
    check_size_fits,
    file_metadata,
    has_alpha,
    load_image,
    metadata_left_out,
    save_format_named,
    save_image,
    stored_bit_depth,
)
from .imageio.exif import exif_with_resolution_scaled
from .strength import blend

# What a batch does with outputs already on disk: refuse to start, skip their inputs, or write over them.
ExistingOutputs = Literal["refuse", "skip", "overwrite"]
EXISTING_OUTPUTS: tuple[ExistingOutputs, ...] = ("refuse", "skip", "overwrite")


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs, taken once where it is asked for (the CLI's options, the app's batch dialog) and passed
    unchanged to `plan_batch` and `run_batch`."""

    file_format: str = "png"
    quality: int = 95
    existing: ExistingOutputs = "refuse"
    recursive: bool = False
    run: RunSettings = RunSettings()
    max_pixels: int | None = None  # None: imageio.pixel_limit()
    # Not a run setting: it blends the finished restoration with the input (strength.py), so the app changes it
    # on a shown result without running the network again.
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.existing not in EXISTING_OUTPUTS:
            raise ValueError(f"existing outputs must be one of {EXISTING_OUTPUTS}, got {self.existing!r}")
        if not 0.0 <= self.strength <= 1.0:  # said once, before the first file, not as every file's failure
            raise ValueError(f"strength must be between 0 and 1, got {self.strength}")


@dataclass(frozen=True)
class PhotoHeader:
    """What a batch needs of a photo before restoring it, from its header alone."""

    pixels: int  # 0 when the header cannot be read (the file will fail fast)
    alpha: bool
    metadata: FileMetadata | None = None  # as far as the header has it


def read_header(path: Path) -> PhotoHeader:
    """Size, transparency and metadata from the file's header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():  # a peek: the restore itself checks the pixel limit and says so
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return PhotoHeader(im.width * im.height, has_alpha(im), file_metadata(im))
    except Exception:  # noqa: BLE001 - any unreadable file weighs nothing; restoring it reports why
        return PhotoHeader(0, False)


def format_warnings(headers: Sequence[PhotoHeader], file_format: str) -> list[str]:
    """What the batch's output format will drop from some photos, counted and worded before any work is done:
    transparency, and metadata it cannot hold (metadata_left_out)."""
    chosen = SAVE_FORMATS[file_format]
    messages = []
    transparent = sum(header.alpha for header in headers)
    if transparent and not chosen.alpha:
        messages.append(f"{transparent} photo(s) have transparency, which {chosen.label} cannot store: it will be "
                        "dropped. Choose PNG, WebP or TIFF to keep it.")
    left_out = [metadata_left_out(chosen.pillow, **header.metadata) if header.metadata else [] for header in headers]
    if any(left_out):
        kinds = sorted({kind.split()[0] for kinds in left_out for kind in kinds})
        messages.append(f"{sum(map(bool, left_out))} photo(s) carry {' and '.join(kinds)} that {chosen.label} "
                        "cannot hold: left out of their restored files.")
    return messages


def restore_image(
    restorer: Restorer,
    image: LoadedImage,
    run: RunSettings = RunSettings(),
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    bit_depth: int | None = None,
    strength: float = 1.0,
) -> LoadedImage:
    """Restore colour with the network, blended with the input at `strength` (strength.py); alpha is resized
    plainly (sr) or kept (deblock); metadata carried. With `bit_depth` (8 or 16) the colour comes back as code
    values, the way to restore large sr outputs without a full-size float32 buffer."""
    restored = restorer.restore_array(image.rgb, run, progress=progress, cancel=cancel, bit_depth=bit_depth)
    rgb = blend(restored, image.rgb, restorer.scale, strength, out=restored)
    alpha = image.alpha
    if alpha is not None and restorer.scale != 1:
        h, w = rgb.shape[:2]
        alpha = np.clip(cv2.resize(alpha, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    scale = restorer.scale  # more pixels for the same print: the resolution grows with them
    exif = exif_with_resolution_scaled(image.exif, scale) if image.exif else None
    dpi = (image.dpi[0] * scale, image.dpi[1] * scale) if image.dpi else None
    return dataclasses.replace(image, rgb=rgb, alpha=alpha, exif=exif, dpi=dpi, jpeg_quality=None)


def save_restored(image: LoadedImage, dst: Path, *, quality: int = 95, overwrite: bool = False,
                  protect: Iterable[Path] = ()) -> Path:
    return save_image(dst, image.rgb, alpha=image.alpha, bit_depth=image.bit_depth, grey=image.grey,
                      exif=image.exif, icc_profile=image.icc_profile, xmp=image.xmp, text=image.text,
                      iptc=image.iptc, dpi=image.dpi, quality=quality, overwrite=overwrite, protect=protect)


def restore_file(
    restorer: Restorer,
    src: Path,
    dst: Path,
    run: RunSettings = RunSettings(),
    *,
    quality: int = 95,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    max_pixels: int | None = None,
    strength: float = 1.0,
) -> Path:
    """Load (refusing inputs over `max_pixels`, default imageio.pixel_limit(), and outputs the format of `dst`
    cannot hold), restore, save atomically. A cancel or error leaves no output behind; the input is never
    touched."""
    src, dst = Path(src), Path(dst)
    image = load_image(src, max_pixels)
    check_size_fits(dst, image.width * restorer.scale, image.height * restorer.scale)
    bits = stored_bit_depth(dst.suffix, image.bit_depth)
    restored = restore_image(restorer, image, run, progress=progress, cancel=cancel, bit_depth=bits,
                             strength=strength)
    return save_restored(restored, dst, quality=quality, overwrite=overwrite, protect=[src])


@dataclass
class Job:
    src: Path
    dst: Path


def collect_inputs(inputs: Sequence[str | Path], recursive: bool = False,
                   output: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image named or found in a named folder, once however
    often it is named (`photos photos/a.png`). A folder scan leaves out `output` when it lies inside the scanned
    folder: rerunning `photos -o photos/restored --recursive` must not take the last run's results for new
    photos."""
    found: dict[Path, tuple[Path, Path]] = {}  # by resolved path, in the order first met
    output = Path(output).resolve() if output is not None else None
    for item in map(Path, inputs):
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            left_out = output if output != item.resolve() else None
            for path in sorted(item.glob(pattern)):
                if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                    continue
                resolved = path.resolve()
                if left_out is None or not resolved.is_relative_to(left_out):
                    found.setdefault(resolved, (path, path.relative_to(item)))
        else:
            found.setdefault(item.resolve(), (item, Path(item.name)))
    return list(found.values())


def plan_jobs(inputs: Sequence[tuple[Path, Path]], outdir: Path, fmt: str = "png") -> list[Job]:
    """OUTDIR/<relative folder>/<stem>.<fmt>; refuses plans that would write over an input or collide."""
    key = save_format_named(fmt)
    if key is None:
        raise ValueError(f"unsupported output format {fmt!r}; choose one of {sorted(SAVE_FORMATS)}")
    ext = SAVE_FORMATS[key].extension
    jobs = [Job(src, Path(outdir) / rel.with_suffix(ext)) for src, rel in inputs]
    sources = {j.src.resolve() for j in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        target = job.dst.resolve()
        if target in sources:
            raise ValueError(f"{job.dst}: output would overwrite an input; choose another output folder")
        if target in seen:
            raise ValueError(f"{seen[target]} and {job.src} would both be written to {job.dst}; rename one of them, "
                             "or restore them in two runs to separate output folders")
        seen[target] = job.src
    return jobs


def existing_outputs(jobs: Sequence[Job]) -> list[Path]:
    """Outputs already on disk: callers refuse to start, or skip them, rather than replace them silently."""
    return [job.dst for job in jobs if job.dst.exists()]


class OutputsExist(ValueError):
    """A batch would replace files already there; the caller adds how its user skips or replaces them."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(f"{len(paths)} output file(s) exist already, e.g. {paths[0]}")
        self.paths = paths


def plan_batch(inputs: Sequence[str | Path], output: Path, settings: BatchSettings) -> list[Job]:
    """The plan `edpn restore` and the app's batch run: every image named or found and its output, refused
    before anything runs (ValueError, one line) when there is nothing to restore, when outputs would collide
    or overwrite an input, or (OutputsExist) when outputs are already there and `settings` refuses them."""
    jobs = plan_jobs(collect_inputs(inputs, settings.recursive, output), output, settings.file_format)
    if not jobs:
        raise ValueError(f"no images found in {', '.join(str(p) for p in inputs)}")
    clashes = existing_outputs(jobs) if settings.existing == "refuse" else []
    if clashes:
        raise OutputsExist(clashes)
    return jobs


@dataclass
class BatchReport:
    restored: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, one-line message naming it)
    cancelled: bool = False
    seconds: float = 0.0


FileCallback = Callable[[int, int, Job], None]


def run_batch(
    restorer: Restorer,
    jobs: Sequence[Job],
    settings: BatchSettings = BatchSettings(),
    *,
    on_file: FileCallback | None = None,
    on_failure: Callable[[Path, str], None] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> BatchReport:
    """Restore every job; a bad file is reported (`on_failure` at once, the report at the end) and the rest go
    on. Cancel discards the file in progress. An output already there is skipped, replaced or (refuse) reported
    as that file's failure, as `settings.existing` says."""
    report = BatchReport()
    started = time.monotonic()
    for index, job in enumerate(jobs):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        if on_file is not None:
            on_file(index, len(jobs), job)
        if settings.existing == "skip" and job.dst.exists():
            report.skipped.append(job.src)
            continue
        try:
            restore_file(restorer, job.src, job.dst, settings.run, quality=settings.quality,
                         overwrite=settings.existing == "overwrite", progress=progress, cancel=cancel,
                         max_pixels=settings.max_pixels, strength=settings.strength)
        except Cancelled:
            report.cancelled = True
            break
        except ImageError as exc:
            reason = str(exc) if exc.path == job.src else f"{job.src}: cannot save {exc.path}: {exc.reason}"
        except (ValueError, OSError, MemoryError) as exc:
            reason = f"{job.src}: {' '.join(str(exc).split()) or type(exc).__name__}"
        else:
            report.restored.append(job.dst)
            continue
        finally:
            release_freed_memory()  # what this photo's tiles kept for reuse (edpn_core.heap), before the next size
        report.failed.append((job.src, reason))
        if on_failure is not None:
            on_failure(job.src, reason)
    report.seconds = time.monotonic() - started
    return report

