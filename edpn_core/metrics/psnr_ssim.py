"""PSNR and SSIM with BasicSR's conventions, so our numbers compare with the ones papers report.

Input convention (every function here): a numpy H x W x C array (C = 3 for RGB, or H x W for one channel).
Floats are read as [0, 1]; uint8 and uint16 as 0..dtype max. Everything is converted to float64 on
0..255 before any arithmetic, as BasicSR does. Floats are not clipped (an unclamped network output is
measured as it is); for paper-comparable numbers pass the uint8 image you would save, as BasicSR does.
"""
from __future__ import annotations

import cv2
import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_RANGE = 255.0
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])  # R, G, B in [0, 1] -> Y on 16..235 (ITU-R BT.601)


def to_float255(img: np.ndarray) -> np.ndarray:
    """The one input convention of this module: float [0, 1] or uint8/uint16 -> float64 on 0..255."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    if img.dtype == np.uint16:
        return img.astype(np.float64) * (_RANGE / 65535.0)
    if np.issubdtype(img.dtype, np.floating):
        # A float image on 0..255 would silently give nonsense; a slightly unclamped output is fine.
        if img.size and (np.nanmax(img) > 1.5 or np.nanmin(img) < -0.5):
            raise ValueError(f"float images must be in [0, 1] (got values in [{np.nanmin(img):.3g}, "
                             f"{np.nanmax(img):.3g}]); pass uint8 for 0..255 data")
        return img.astype(np.float64) * _RANGE
    raise ValueError(f"unsupported image dtype {img.dtype}: use float in [0, 1], uint8 or uint16")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BasicSR's Y channel (H x W, float64 on 0..255) of an RGB image: Y = 16 + 65.481 R + 128.553 G + 24.966 B."""
    rgb = to_float255(img)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_y needs an H x W x 3 RGB image, got shape {rgb.shape}")
    return 16.0 + (rgb / _RANGE) @ _Y_WEIGHTS


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shared checks and conversion: same shape, float64 0..255, optional Y, border crop; returns H x W x C."""
    img, ref = np.asarray(img), np.asarray(ref)
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {ref.shape}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C image, got shape {img.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if test_y:
        a, b = rgb_to_y(img), rgb_to_y(ref)
    else:
        a, b = to_float255(img), to_float255(ref)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {img.shape[:2]} image")
    return a, b


def psnr(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, test_y: bool = False) -> float:
    """PSNR in dB with peak 255 (inf for identical images); test_y measures BasicSR's Y channel only."""
    a, b = _prepare(img, ref, crop_border, test_y)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(_RANGE**2 / mse))


def _gaussian_window() -> np.ndarray:
    """The 1-D factor of the separable 11 x 11 Gaussian window (same as cv2.getGaussianKernel(11, 1.5))."""
    x = np.arange(SSIM_WINDOW, dtype=np.float64) - SSIM_WINDOW // 2
    g = np.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean over the positions where the whole window fits (BasicSR's [5:-5, 5:-5])."""
    half = SSIM_WINDOW // 2
    return cv2.sepFilter2D(x, cv2.CV_64F, g, g)[half:-half, half:-half]  # the border mode never reaches these


def _ssim_channel(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> float:
    c1 = (SSIM_K1 * _RANGE) ** 2
    c2 = (SSIM_K2 * _RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, test_y: bool = False) -> float:
    """SSIM (Wang et al. 2004) as BasicSR computes it: 11 x 11 Gaussian (sigma 1.5), K1 0.01, K2 0.03,
    only window positions fully inside the (cropped) image, mean over channels for RGB."""
    a, b = _prepare(img, ref, crop_border, test_y)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels after cropping, "
                         f"got {a.shape[0]} x {a.shape[1]}")
    g = _gaussian_window()
    return float(np.mean([_ssim_channel(a[..., c], b[..., c], g) for c in range(a.shape[2])]))
