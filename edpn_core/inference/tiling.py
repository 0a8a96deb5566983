"""Cutting an image into overlapping tiles and blending the restored tiles back without seams.

Tiles overlap by at least the engine's overlap, start on the network's size multiple so every tile's feature
pyramid lies on the whole image's grid, and are blended with raised-cosine windows over the shared strips.
"""
from __future__ import annotations

import math

import numpy as np


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Tile origins covering [0, length) with at least `overlap` shared pixels between neighbours.

    Origins are multiples of `align` (length and tile must be too), so every tile's feature pyramid sits on
    the same grid as the whole image's."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    while True:
        step = (length - tile) / (count - 1)
        starts = [round(i * step / align) * align for i in range(count)]
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
            return starts
        count += 1


def balanced_tile(length: int, tile: int, overlap: int, align: int = 1) -> int:
    """The smallest tile side (a multiple of `align`, at most `tile`) that needs no more tiles than `tile` does:
    a 384 px side in 360 px tiles becomes two 204 px tiles, not a full tile plus a mostly recomputed one."""
    if length <= tile:
        return tile
    count = len(tile_starts(length, tile, overlap, align))
    even = math.ceil((length + (count - 1) * overlap) / count / align) * align
    return min(tile, even) if len(tile_starts(length, min(tile, even), overlap, align)) <= count else tile


def feather_window(length: int, ramp_before: int, ramp_after: int) -> np.ndarray:
    """1-D raised-cosine weights: rising over `ramp_before`, flat, falling over `ramp_after`."""
    w = np.ones(length, np.float32)
    for ramp, sl in ((ramp_before, slice(0, ramp_before)), (ramp_after, slice(length - ramp_after, length))):
        if ramp > 0:
            rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp, dtype=np.float32) + 0.5) / ramp)
            w[sl] = rise if sl.start == 0 else rise[::-1]
    return w


class Band:
    """The rows of output the current tile row covers: weighted sums and weights, in float32."""

    def __init__(self, height: int, width: int) -> None:
        self.sums = np.zeros((height, width, 3), np.float32)
        self.weights = np.zeros((height, width, 1), np.float32)

    def add(self, pixels: np.ndarray, window: np.ndarray, x: int) -> None:
        region = np.s_[:, x:x + pixels.shape[1]]
        self.sums[region] += pixels * window[..., None]
        self.weights[region] += window[..., None]

    def finish(self, count: int) -> np.ndarray:
        """The blended top `count` rows, which no later tile touches; the rest move up to start the next row."""
        rows = self.sums[:count] / self.weights[:count]
        for buffer in (self.sums, self.weights):
            buffer[: len(buffer) - count] = buffer[count:].copy()
            buffer[len(buffer) - count:] = 0
        return rows


def _shared(starts: list[int], i: int, tile: int, side: int) -> int:
    """Pixels tile i shares with its neighbour on `side` (-1 before, +1 after); 0 at the image border."""
    j = i + side
    if j < 0 or j >= len(starts):
        return 0
    return max(0, tile - abs(starts[j] - starts[i]))


def blend_window(starts: list[int], i: int, tile: int, scale: int = 1) -> np.ndarray:
    """1-D blending weights of tile i along one axis, in output pixels: ramps only where a neighbour overlaps."""
    return feather_window(tile * scale, _shared(starts, i, tile, -1) * scale, _shared(starts, i, tile, 1) * scale)
