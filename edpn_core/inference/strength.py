"""Strength: the restored photo blended back towards its input (for sr, the input upscaled exactly as the
network's own bicubic base is), so a restoration too strong for a photo is taken part of the way back without
running the network again. The one blend of the app's view, its saved files, its batch and `edpn restore
--strength`."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .imageio.writing import code_values

BAND_ROWS = 256  # input rows blended at a time: the base of a large sr output is never held whole
BICUBIC_REACH = 2  # input rows a bicubic output row reads beyond its own


def network_base(rgb: np.ndarray, scale: int) -> np.ndarray:
    """What EDPN adds its sr output to: bicubic x `scale` of the input (align_corners False; the replicate padding
    the network adds first is what bicubic does at the border anyway); the input itself for deblock."""
    if scale == 1:
        return np.asarray(rgb, np.float32)
    image = torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).permute(2, 0, 1)[None]
    up = F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).numpy()


def blend(restored: np.ndarray, source: np.ndarray, scale: int, strength: float,
          out: np.ndarray | None = None) -> np.ndarray:
    """`restored` (floats in [0, 1], or 8/16-bit code values) at `strength` over `source`'s base, in the same
    form: 1 gives `restored` itself, 0 the base (clipped, or as code values). `out` may be `restored` itself (a
    caller's own output, blended band by band without a second full-size array)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    if strength == 1.0:
        return restored
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(restored.dtype)
    top = np.float32((1 << bits) - 1) if bits else np.float32(1)
    out = np.empty_like(restored) if out is None else out
    height = source.shape[0]
    for y0 in range(0, height, BAND_ROWS):  # bicubic is local: a band with its reach is exactly the whole's rows
        y1 = min(height, y0 + BAND_ROWS)
        c0, c1 = max(0, y0 - BICUBIC_REACH), min(height, y1 + BICUBIC_REACH)
        base = network_base(source[c0:c1], scale)[(y0 - c0) * scale:(y1 - c0) * scale]
        rows = slice(y0 * scale, y1 * scale)
        mixed = base + np.float32(strength) * (restored[rows].astype(np.float32) / top - base)
        out[rows] = code_values(mixed, bits) if bits else np.clip(mixed, 0.0, 1.0)
    return out
