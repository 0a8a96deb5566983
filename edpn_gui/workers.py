"""Worker objects that call the engine from a QThread, so the window never waits on a photo or a network.

Each worker lives in its own thread (`start_in_thread`); the window talks to it through queued signals and
cancels through the job's `CancelToken`, which the engine checks between tiles.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage

from edpn_core.heap import release_freed_memory
from edpn_core.inference.batch import (
    BatchReport,
    BatchSettings,
    Job,
    OutputsExist,
    format_warnings,
    plan_batch,
    read_header,
    restore_image,
    run_batch,
    save_restored,
)
from edpn_core.inference.device import is_out_of_memory
from edpn_core.inference.engine import Cancelled, CancelToken, Fallback, Progress, Restorer, RunSettings
from edpn_core.inference.imageio import (
    ImageError,
    LoadedImage,
    code_values,
    load_image,
    stored_bit_depth,
)
from edpn_core.inference.strength import blend
from edpn_core.model_io import WeightsError

from .restorer_cache import ModelChoice, RestorerCache

SourceId = tuple  # (path, size in bytes, modification time in ns): a photo changed on disk is a new photo


def source_id(path: Path) -> SourceId:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class RestoreSettings:
    """Everything the engine needs besides the photo: what to load (the cached restorer's key) and how to run."""

    model: ModelChoice
    run: RunSettings

    def cache_key(self, source: SourceId) -> tuple:
        """What a result's pixels depend on: the photo's content and the settings. The device and the tile size
        only change speed and memory (tiles are blended so that any size gives the same picture)."""
        return source, self.model.task, str(self.model.weights), dataclasses.replace(self.run, tile="auto")


@dataclass
class RestoreJob:
    image: LoadedImage
    settings: RestoreSettings
    region: tuple[int, int, int, int] | None = None  # (x, y, width, height) in input pixels: a preview
    source: SourceId = ()  # which version of the photo file `image` was read from
    cancel: CancelToken = field(default_factory=CancelToken)

    @property
    def cache_key(self) -> tuple:
        return self.settings.cache_key(self.source)


@dataclass
class RestoreResult:
    job: RestoreJob
    after: QImage  # what the compare view shows: the whole output, or only the region of a preview
    restored: LoadedImage | None  # full runs only: pixels plus the metadata Save writes back
    device_name: str
    fallback_reason: str | None
    seconds: float

    @property
    def nbytes(self) -> int:
        pixels = self.restored.rgb.nbytes if self.restored is not None else 0
        return pixels + self.after.sizeInBytes()


@dataclass
class OpenedImage:
    image: LoadedImage
    before: QImage
    source: SourceId


@dataclass
class SaveJob:
    image: LoadedImage
    destination: Path
    quality: int
    overwrite: bool
    protect: tuple[Path, ...]
    source: LoadedImage | None = None  # the input, to blend `image` with at `strength` (strength.py)
    strength: float = 1.0


@dataclass
class BatchRequest:
    """A batch as its dialog's Start took it: nothing is read from the window or the dialog after that."""

    inputs: list[Path]
    output: Path
    model: ModelChoice
    batch: BatchSettings
    cancel: CancelToken = field(default_factory=CancelToken)


def to_qimage(rgb: np.ndarray, alpha: np.ndarray | None = None) -> QImage:
    """float32 H x W x 3 (and H x W alpha) in [0, 1], or 8-bit code values -> an 8-bit QImage that owns its pixels
    (safe to hand across threads); with alpha it is RGBA, so the view can show the transparency."""
    channels = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    pixels = code_values(channels, 8)
    height, width, depth = pixels.shape
    fmt = QImage.Format.Format_RGB888 if alpha is None else QImage.Format.Format_RGBA8888
    return QImage(pixels.data, width, height, depth * width, fmt).copy()


def region_alpha(image: LoadedImage, region: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray | None:
    """The photo's alpha inside `region`, resized to the preview's (width, height) as a full run would."""
    if image.alpha is None:
        return None
    x, y, w, h = region
    crop = image.alpha[y:y + h, x:x + w]
    return crop if (w, h) == size else np.clip(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), 0, 1)


def format_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds >= 3600:  # "253 min" reads slower than "4 h 13 min"
        minutes = round(seconds / 60)
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def describe_progress(progress: Progress) -> str:
    if progress.message:
        return progress.message
    if progress.passes_done < progress.passes_total:  # inside a tile, between ensemble passes
        text = (f"Tile {progress.tiles_done + 1}/{progress.tiles_total}, pass "
                f"{progress.passes_done}/{progress.passes_total}")
    else:
        text = f"Tile {progress.tiles_done}/{progress.tiles_total}"
    return text + (f", about {format_seconds(progress.eta_s)} left" if progress.eta_s is not None else "")


def describe_error(exc: BaseException) -> str:
    """One line a user can act on; the engine's own errors already name the file."""
    if isinstance(exc, MemoryError) or is_out_of_memory(exc):
        return (f"Out of memory ({' '.join(str(exc).split()) or 'no details'}). Try a smaller tile size, "
                "ensemble off, or a smaller image.")
    if isinstance(exc, (ImageError, WeightsError, ValueError, FileNotFoundError)):
        return " ".join(str(exc).split())
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def start_in_thread(worker: QObject, name: str) -> QThread:
    """Move `worker` to a new running thread. When the thread finishes, the worker goes back to the
    application's thread and is deleted there: a Python-made QObject destroyed in its own thread takes the GIL
    while holding Qt's connection lock, which deadlocked against the GUI thread connecting signals (a window
    being built while the closed one's worker was deleted)."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("start_in_thread needs a running QApplication")
    home = app.thread()
    thread.finished.connect(lambda: worker.moveToThread(home), Qt.ConnectionType.DirectConnection)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread


class RestoreWorker(QObject):
    """Opens, restores (a region or the whole photo) and saves, one job at a time. The loaded weights come from the
    cache it shares with batches, so a second preview or run starts at once."""

    progress = Signal(float, str)
    finished = Signal(object)  # RestoreResult
    failed = Signal(str)
    cancelled = Signal()
    loaded = Signal(object)  # OpenedImage
    load_failed = Signal(str)
    saved = Signal(object)  # Path
    save_failed = Signal(str)

    def __init__(self, restorers: RestorerCache) -> None:
        super().__init__()
        self._restorers = restorers

    @Slot(object)
    def open_image(self, path: Path) -> None:
        try:
            source = source_id(path)  # before reading: a change while reading makes it a new photo next time
            image = load_image(path)
            self.loaded.emit(OpenedImage(image, to_qimage(image.rgb, image.alpha), source))
        except Exception as exc:  # noqa: BLE001 - the thread must survive any bad file and report it
            self.load_failed.emit(describe_error(exc))

    @Slot(object)
    def restore(self, job: RestoreJob) -> None:
        started = time.monotonic()

        fallbacks: list[Fallback] = []

        def report(progress: Progress) -> None:
            if progress.fallback is not None:
                fallbacks.append(progress.fallback)
            self.progress.emit(progress.fraction, describe_progress(progress))

        try:
            job.cancel.raise_if_cancelled()
            restorer = self._restorers.restorer_for(job.settings.model)
            run = job.settings.run
            self.progress.emit(0.0, f"Restoring on {restorer.device_name}…")
            if job.region is not None:
                rgb = restorer.restore_region(job.image.rgb, job.region, run, progress=report, cancel=job.cancel)
                after = to_qimage(rgb, region_alpha(job.image, job.region, (rgb.shape[1], rgb.shape[0])))
                restored = None
            else:
                restored = restore_image(restorer, job.image, run, progress=report, cancel=job.cancel)
                after = to_qimage(restored.rgb, restored.alpha)
            fallback = fallbacks[-1] if fallbacks else None
            result = RestoreResult(job, after, restored, fallback.device_name if fallback else restorer.device_name,
                                   fallback.reason if fallback else None, time.monotonic() - started)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - reported to the user, never a dead thread
            self.failed.emit(describe_error(exc))
        else:
            self.finished.emit(result)
        finally:
            release_freed_memory()

    @Slot(object)
    def save(self, job: SaveJob) -> None:
        try:
            image = job.image
            if job.source is not None:  # here, not in the window: a large output takes seconds to blend
                scale = image.width // job.source.width
                bits = stored_bit_depth(job.destination.suffix, image.bit_depth)  # as a batch blends: the same file
                image = dataclasses.replace(image, rgb=blend(code_values(image.rgb, bits), job.source.rgb, scale,
                                                             job.strength))
            path = save_restored(image, job.destination, quality=job.quality, overwrite=job.overwrite,
                                 protect=job.protect)
            self.saved.emit(path)
        except Exception as exc:  # noqa: BLE001
            self.save_failed.emit(describe_error(exc))


class PixelProgress:
    """Batch progress counted in pixels, not files, so one big photo after many small ones is not "almost done"
    and the time left follows the pixels still to restore. Skipped and unreadable files weigh nothing."""

    def __init__(self, pixels: list[int]) -> None:
        self._pixels = pixels
        self._before = [sum(pixels[:i]) for i in range(len(pixels))]
        self._total = max(1, sum(pixels))

    def fraction(self, index: int, within: float) -> float:
        """Overall fraction with file `index` done to `within`."""
        return min(1.0, (self._before[index] + within * self._pixels[index]) / self._total)

    def seconds_left(self, index: int, within: float, elapsed: float) -> float | None:
        done = self.fraction(index, within)
        return elapsed / done * (1.0 - done) if done > 0 else None


class BatchWorker(QObject):
    """Plans and runs a batch with the engine's batch functions; a bad file is logged, the rest go on."""

    planned = Signal(int, str)  # number of files, output folder
    warning = Signal(str)  # something the user should know before the results arrive
    file_started = Signal(int, int, str)  # index, count, file name
    file_failed = Signal(str, str)  # file name, one-line reason
    progress = Signal(float, float, str)  # overall fraction, current file fraction, text with the ETA
    finished = Signal(object)  # BatchReport
    failed = Signal(str)

    def __init__(self, restorers: RestorerCache) -> None:
        super().__init__()
        self._restorers = restorers

    @Slot(object)
    def run(self, request: BatchRequest) -> None:
        try:
            try:
                jobs = plan_batch(request.inputs, request.output, request.batch)
            except OutputsExist as exc:
                raise ValueError(f"{exc}; choose to skip or replace existing files, or another output "
                                 "folder") from None
            self.planned.emit(len(jobs), str(request.output))
            headers = [read_header(job.src) for job in jobs]
            for warning in format_warnings(headers, request.batch.file_format):
                self.warning.emit(warning)
            restorer = self._restorers.restorer_for(request.model)
            skipped = request.batch.existing == "skip"
            pixels = [0 if skipped and job.dst.exists() else header.pixels for job, header in zip(jobs, headers)]
            report = self._run(restorer, jobs, request, PixelProgress(pixels))
        except Exception as exc:  # noqa: BLE001
            self.failed.emit(describe_error(exc))
        else:
            self.finished.emit(report)

    def _run(self, restorer: Restorer, jobs: list[Job], request: BatchRequest,
             pixels: PixelProgress) -> BatchReport:
        started = time.monotonic()
        current = {"index": 0}

        def on_file(index: int, count: int, job: Job) -> None:
            current["index"] = index
            self.file_started.emit(index, count, job.src.name)
            self.progress.emit(pixels.fraction(index, 0.0), 0.0, "")

        def on_progress(progress: Progress) -> None:
            index = current["index"]
            left = pixels.seconds_left(index, progress.fraction, time.monotonic() - started)
            text = progress.message or (f"about {format_seconds(left)} left" if left is not None else "")
            self.progress.emit(pixels.fraction(index, progress.fraction), progress.fraction, text)

        report = run_batch(restorer, jobs, request.batch, on_file=on_file,
                           on_failure=lambda src, reason: self.file_failed.emit(src.name, reason),
                           progress=on_progress, cancel=request.cancel)
        if report.cancelled:  # the file in progress was discarded: the bar shows what is really done
            self.progress.emit(pixels.fraction(current["index"], 0.0), 0.0, "")
        return report
