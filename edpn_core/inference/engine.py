"""The one restoration path for the app, the CLI and batch runs: tiled, feather-blended, cancellable.

Tiles overlap and are blended with a raised-cosine window, so no seam shows; each finished tile is
accumulated into a band one tile row high, and rows no later tile touches leave the band for the output at
once (as 8/16-bit code values when asked), so working memory is bounded by the tile row, not the photo.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from ..archs import EDPN, pad_to_multiple
from ..config import EDPNConfig, Task
from ..model_io import WeightsError, load_model
from .device import available_memory_bytes, describe_device, is_out_of_memory, select_device
from .imageio import code_values
from .precision import Precision, resolve_precision, use_channels_last
from .tiling import Band, balanced_tile, blend_window, tile_starts

Ensemble = Literal["off", "x4", "x8"]
ENSEMBLES: dict[Ensemble, int] = {"off": 1, "x4": 4, "x8": 8}  # passes per tile
MIN_TILE = 32
# Input pixels per tile side; "auto" sizes tiles from free memory (and on a CPU for speed), "whole" is one tile.
TileWord = Literal["auto", "whole"]
TILE_WORDS: tuple[TileWord, ...] = ("auto", "whole")
TileSize = int | TileWord
PREVIEW_CONTEXT = 32  # input pixels around a previewed region restored with it, so the preview matches the full run
DEFAULT_OVERLAP = 24
# Bytes of a tile's largest activation at which CPU restores ran fastest per output pixel (edpn bench --tile-sweep).
CPU_TILE_WORKING_SET = 150_000_000
TilePolicy = Literal["speed", "memory"]
TILE_POLICIES: tuple[TilePolicy, ...] = ("speed", "memory")


class Cancelled(Exception):
    """The user cancelled; nothing was written."""


class OutputTooLarge(MemoryError):
    """The restored image itself does not fit in memory: smaller tiles cannot help."""


class CancelToken:
    """Thread-safe flag the engine checks between tiles."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class RunSettings:
    """How one restore runs, given with each call. A Restorer holds only what is expensive to set up (the loaded
    models, the device, the number format), so the one an app caches is never changed for a job."""

    tile: TileSize = "auto"
    ensemble: Ensemble = "off"

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {sorted(ENSEMBLES)}, got {self.ensemble!r}")
        if self.tile not in TILE_WORDS and not (isinstance(self.tile, int) and self.tile > 0):
            raise ValueError(f"tile must be 'auto', 'whole' or a positive size in pixels, got {self.tile!r}")


def parse_tile(text: str) -> TileSize:
    """A tile as people write it (the CLI's --tile, the app's settings file): 'auto', 'whole' or at least MIN_TILE
    pixels, smaller tiles showing seams."""
    word = text.strip().lower()
    for tile_word in TILE_WORDS:
        if word == tile_word:
            return tile_word
    try:
        size = int(word)
    except ValueError:
        size = 0
    if size < MIN_TILE:
        raise ValueError(f"tile must be 'auto', 'whole' or a size of at least {MIN_TILE} px, got {text!r}")
    return size


@dataclass(frozen=True)
class Fallback:
    """A run that ran out of GPU memory even at the smallest tile and finished on the CPU: why, and on what."""

    reason: str
    device_name: str


@dataclass
class Progress:
    fraction: float
    tiles_done: int
    tiles_total: int
    eta_s: float | None
    message: str = ""
    passes_done: int = 0  # network passes finished in the tile in progress (ensembles run several per tile)
    passes_total: int = 1
    fallback: Fallback | None = None  # set on the report that this run moved to the CPU


ProgressCallback = Callable[[Progress], None]


def largest_activation_channels(cfg: EDPNConfig) -> int:
    """Channels per input pixel of the biggest tensor a tile makes: the DCN's 9 sampled taps per channel (the sr
    tail, folded, never builds its scale^2 x C expansion)."""
    return 9 * cfg.channels


def _ensemble_transforms(level: Ensemble) -> list[tuple[int, bool]]:
    """(quarter turns, horizontal flip) pairs: x4 is the paper's four rotations, x8 adds their mirrors."""
    turns = [(k, False) for k in range(4)] if level != "off" else [(0, False)]
    return turns + [(k, True) for k in range(4)] if level == "x8" else turns


class Restorer:
    """Loads one or several weight files of the same task and restores images of any size."""

    def __init__(
        self,
        weights: Sequence[str | Path] | str | Path | None = None,
        *,
        models: Sequence[EDPN] | None = None,
        device: str = "auto",
        overlap: int = DEFAULT_OVERLAP,
        precision: Precision = "auto",
        task: Task | None = None,
    ) -> None:
        """`task`, when given, is what the caller means to do; weights trained for the other one are refused.
        `precision` 'auto' picks by device (inference/precision.py). Tile and ensemble are each call's
        RunSettings."""
        if (weights is None) == (models is None):
            raise ValueError("give either weight files or models")
        if weights is not None:
            paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
            if not paths:
                raise ValueError("no weights given")
            models = [load_model(p)[0] for p in paths]
        self.models: list[EDPN] = [m.eval() for m in models or ()]
        tasks = {(m.cfg.task, m.cfg.scale) for m in self.models}
        if len(tasks) > 1:
            raise WeightsError(f"model-ensemble needs weights of one task, got {sorted(tasks)}")
        self.task, self.scale = tasks.pop()
        if task is not None and task != self.task:
            source = ", ".join(str(p) for p in paths) if weights is not None else "these models"
            raise WeightsError(f"{source}: trained for {self.task!r}, not {task!r}")
        self.device = select_device(device)
        self.precision = resolve_precision(self.device, precision)
        self.overlap = overlap
        self._place_models()

    def _place_models(self) -> None:
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        for m in self.models:
            m.to(self.device, dtype)
            if self.device.type == "cpu":
                use_channels_last(m)

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    def passes_per_tile(self, ensemble: Ensemble) -> int:
        return ENSEMBLES[ensemble] * len(self.models)

    def on_cpu(self) -> "Restorer":
        """The same weights in fp32 copies on the CPU, built without touching the device's memory: where a run
        goes on when the GPU has too little memory even for the smallest tile."""
        return Restorer(models=[_cpu_copy(m) for m in self.models], device="cpu", overlap=self.overlap)

    def auto_tile(self, policy: TilePolicy = "speed") -> int:
        """Largest tile whose activations fit in a quarter of the available memory; on a CPU also the fastest size.

        A CPU's cost per pixel climbs once a tile's largest activation outgrows the caches (measured: a
        512 px lite sr tile costs 2.5x per pixel what a 192 px one does), while small tiles waste time
        on their overlap; CPU_TILE_WORKING_SET is where the measured optimum lies (docs/BENCHMARKS.md).
        The "memory" policy is the one before that measurement (CPU tiles capped at 512 px), kept so
        `edpn bench --compare` can show the difference."""
        if policy not in TILE_POLICIES:
            raise ValueError(f"tile policy must be one of {TILE_POLICIES}, got {policy!r}")
        cfg = self.models[0].cfg
        copies = 1 if cfg.replica_shortcut else cfg.copies
        # Feature maps of the input's size, plus four 3-channel ones of the output's (tail, shuffled, base, sum).
        bytes_per_px = 4 * (cfg.channels * (24 + 6 * copies) + 4 * 3 * cfg.scale**2)
        side = int(math.sqrt(available_memory_bytes(self.device) / 4 / bytes_per_px))
        if self.device.type != "cpu":
            cap = 1024
        elif policy == "speed":
            cap = int(math.sqrt(CPU_TILE_WORKING_SET / (4 * largest_activation_channels(cfg))))
        else:
            cap = 512
        m = cfg.size_multiple
        return max(MIN_TILE, min(cap, side) // m * m)

    @torch.inference_mode()
    def _run_model(self, model: EDPN, tile: torch.Tensor) -> torch.Tensor:
        x = tile.to(self.device, next(model.parameters()).dtype)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = model(x)
        return y.float().clamp_(0, 1).cpu().contiguous()

    def _restore_tile(self, tile: torch.Tensor, ensemble: Ensemble, cancel: CancelToken | None,
                      on_pass: Callable[[int], None] | None = None) -> torch.Tensor:
        """Average of every model over every ensemble transform; `on_pass(n)` after each of the n passes."""
        acc = None
        passes = 0
        for model in self.models:
            for turns, flip in _ensemble_transforms(ensemble):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                x = torch.rot90(tile, turns, (-2, -1))
                x = torch.flip(x, (-1,)) if flip else x
                y = self._run_model(model, x)
                y = torch.flip(y, (-1,)) if flip else y
                y = torch.rot90(y, -turns, (-2, -1))
                acc = y if acc is None else acc.add_(y)
                passes += 1
                if on_pass is not None:
                    on_pass(passes)
        assert acc is not None, "a restorer holds at least one model"
        return acc / self.passes_per_tile(ensemble)

    def restore_array(
        self,
        rgb: np.ndarray,
        run: RunSettings = RunSettings(),
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        bit_depth: int | None = None,
    ) -> np.ndarray:
        """float32 H x W x 3 in [0, 1] -> (sH) x (sW) x 3: float32 in [0, 1], or with `bit_depth` 8 or 16 the
        uint8/uint16 code values save_image would write (no full-size float buffer is ever held then).
        Halves the tile and retries on out-of-memory; below the smallest tile on a GPU this run goes on with CPU
        copies of the models (`on_cpu`), and `progress` receives a report saying so (its `fallback`). The restorer
        itself is unchanged: the next run tries the GPU again."""
        if bit_depth not in (None, 8, 16):
            raise ValueError(f"bit_depth must be None, 8 or 16, got {bit_depth!r}")
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
        image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        tile: int | Literal["whole"] = self.auto_tile() if run.tile == "auto" else run.tile
        restorer = self
        while True:
            try:
                return restorer._restore_tiled(image, tile, run.ensemble, progress, cancel, bit_depth)
            except (Cancelled, OutputTooLarge):
                raise
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                if restorer.device.type == "cuda":
                    torch.cuda.empty_cache()
                current = max(rgb.shape[:2]) if tile == "whole" else tile
                fallback = None
                if current // 2 >= MIN_TILE:
                    tile = current // 2
                    message = f"out of memory; retrying with {tile}px tiles"
                elif restorer.device.type != "cpu":
                    restorer = restorer.on_cpu()
                    message = f"out of GPU memory even with {current}px tiles; using the CPU"
                    fallback = Fallback(message, restorer.device_name)
                else:
                    raise MemoryError(f"not enough memory to restore a tile even {current}px wide") from exc
                if progress is not None:
                    progress(Progress(0.0, 0, 0, None, message, fallback=fallback))

    def restore_region(
        self,
        rgb: np.ndarray,
        box: tuple[int, int, int, int],
        run: RunSettings = RunSettings(),
        *,
        context: int = PREVIEW_CONTEXT,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """Restore only box = (x, y, width, height) of the input, with `context` pixels of surroundings so
        the preview matches what the full run gives there. Returns the box's output (scaled for sr)."""
        x, y, w, h = box
        height, width = rgb.shape[:2]
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise ValueError(f"region {box} is not inside the {width}x{height} image")
        x0, y0 = max(0, x - context), max(0, y - context)
        x1, y1 = min(width, x + w + context), min(height, y + h + context)
        out = self.restore_array(rgb[y0:y1, x0:x1], run, progress=progress, cancel=cancel)
        s = self.scale
        return out[(y - y0) * s:(y - y0 + h) * s, (x - x0) * s:(x - x0 + w) * s]

    def _restore_tiled(
        self, image: torch.Tensor, tile: int | Literal["whole"], ensemble: Ensemble,
        progress: ProgressCallback | None, cancel: CancelToken | None, bit_depth: int | None,
    ) -> np.ndarray:
        _, _, h, w = image.shape
        s, m = self.scale, self.models[0].cfg.size_multiple
        # Pad once, as the network would pad the whole image, so border tiles see the same surroundings.
        image = pad_to_multiple(image, m)
        ph, pw = image.shape[-2:]
        if tile == "whole":
            tile_h, tile_w = ph, pw
        else:
            side = max(m, tile // m * m)
            tile_h, tile_w = min(side, ph), min(side, pw)
        overlap = min(self.overlap, tile_h // 2, tile_w // 2) // m * m
        tile_h, tile_w = balanced_tile(ph, tile_h, overlap, m), balanced_tile(pw, tile_w, overlap, m)
        ys, xs = tile_starts(ph, tile_h, overlap, m), tile_starts(pw, tile_w, overlap, m)
        out = _output_array(h * s, w * s, bit_depth)
        band = Band(tile_h * s, pw * s)
        total = len(ys) * len(xs)
        passes = self.passes_per_tile(ensemble)
        started = time.monotonic()
        done = 0

        def report_pass(passes_done: int) -> None:
            """Progress inside a tile, so a slow ensemble never sits on an empty bar; the tile's end reports below."""
            if progress is not None and passes_done < passes:
                tiles = done + passes_done / passes
                eta = (time.monotonic() - started) / tiles * (total - tiles)
                progress(Progress(tiles / total, done, total, eta, "", passes_done, passes))

        for iy, y0 in enumerate(ys):
            win_y = blend_window(ys, iy, tile_h, s)
            for ix, x0 in enumerate(xs):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                result = self._restore_tile(image[..., y0:y0 + tile_h, x0:x0 + tile_w], ensemble, cancel,
                                            report_pass)
                win_x = blend_window(xs, ix, tile_w, s)
                band.add(result[0].permute(1, 2, 0).numpy(), win_y[:, None] * win_x[None, :], x0 * s)
                done += 1
                if progress is not None:
                    elapsed = time.monotonic() - started
                    progress(Progress(done / total, done, total, elapsed / done * (total - done), "", passes, passes))
            finished = (ys[iy + 1] - y0) * s if iy + 1 < len(ys) else tile_h * s
            rows = band.finish(finished)[: max(0, h * s - y0 * s), : w * s]
            out[y0 * s:y0 * s + len(rows)] = rows if bit_depth is None else code_values(rows, bit_depth)
        return out


def _output_array(height: int, width: int, bit_depth: int | None) -> np.ndarray:
    dtype = {None: np.float32, 8: np.uint8, 16: np.uint16}[bit_depth]
    try:
        return np.empty((height, width, 3), dtype)
    except MemoryError:
        size = height * width * 3 * np.dtype(dtype).itemsize
        raise OutputTooLarge(f"not enough memory for the {width} x {height} output itself ({size / 2**30:.1f} GiB "
                             f"as {np.dtype(dtype).name}); smaller tiles would not help") from None


def _cpu_copy(model: EDPN) -> EDPN:
    """An fp32 copy of `model` on the CPU, built on the meta device so no random init runs and nothing is
    allocated where `model` lives."""
    with torch.device("meta"):
        twin = EDPN(model.cfg)
    twin.to_empty(device="cpu")
    twin.load_state_dict({name: value.detach().to("cpu", torch.float32) for name, value in model.state_dict().items()})
    return twin.eval()
