"""Synthetic degradations that turn sharp photos into blurry low-quality inputs like REDS's.

Images are float32 numpy arrays H x W x 3 (RGB, [0, 1]). Every random choice comes from a
``numpy.random.Generator`` passed in, so a degradation is reproducible from its seed.

Angles: ``theta`` (radians) and ``angle_deg`` are measured counter-clockwise from the image's +x axis as
seen on screen (y up), so 45 degrees runs from bottom-left to top-right.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from ..config import TASK_SCALES, Task
from ..inference.imageio import code_values

BLUR_FAMILIES = ("iso_gaussian", "aniso_gaussian", "disk", "motion", "shake")


# ----------------------------------------------------------------------------------------------- kernels
def _normalise(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from the kernel centre: x to the right, y upwards (screen convention)."""
    half = size // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    return offsets[None, :], -offsets[:, None]


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Gaussian blur (out-of-focus lens, atmosphere); anisotropic when sigma_y differs from sigma_x.

    sigma_x is the spread along the direction theta (radians), sigma_y across it.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError("kernel size must be a positive odd number")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError("sigmas must be positive")
    x, y = _grid(size)
    along = x * math.cos(theta) + y * math.sin(theta)
    across = -x * math.sin(theta) + y * math.cos(theta)
    return _normalise(np.exp(-0.5 * ((along / sigma_x) ** 2 + (across / sigma_y) ** 2)))


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Defocus blur: a uniform disk whose edge pixels are weighted by the fraction of them it covers."""
    if radius < 0:
        raise ValueError("radius must be non-negative")
    half = max(int(math.ceil(radius + 0.5)) - 1, 0)
    size = 2 * half + 1
    sub = (np.arange(size * supersample) + 0.5) / supersample - half - 0.5
    inside = (sub[None, :] ** 2 + sub[:, None] ** 2) <= radius**2
    coverage = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    if coverage.sum() == 0:  # radius below a sub-sample: no blur
        coverage[half, half] = 1.0
    return _normalise(coverage)


def _splat(x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Rasterise points (x right, y up, origin at the kernel centre) with bilinear weights: sub-pixel
    positions spread over their four neighbours, so thin lines and paths are antialiased."""
    half = size // 2
    col = x + half
    row = half - y
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = col - c0, row - r0
    kernel = np.zeros((size, size), np.float64)
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        np.add.at(kernel, (rr[ok], cc[ok]), w[ok])
    return kernel


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Linear motion blur: a straight antialiased segment of the given length (pixels) and angle."""
    if length <= 0:
        raise ValueError("length must be positive")
    half = max(int(math.ceil(length / 2)), 1)
    size = 2 * half + 1
    t = np.linspace(-length / 2, length / 2, max(int(math.ceil(length * 16)), 2))
    angle = math.radians(angle_deg)
    return _normalise(_splat(t * math.cos(angle), t * math.sin(angle), size))


def shake_kernel(rng: np.random.Generator, size: int = 21, length: float | None = None, steps: int = 1000,
                 jerk_prob: float = 0.005, anxiety: float = 0.25, centripetal: float = 0.15) -> np.ndarray:
    """Camera shake in the style of Boracchi and Foi (2012): a random walk with inertia.

    The velocity keeps its direction (inertia) but receives Gaussian perturbations (anxiety), a pull
    towards the start (centripetal, hand-held cameras return) and, rarely, an impulsive jerk that turns
    it sharply. The path (length pixels, drawn when None) is centred, shrunk to fit the kernel if needed
    and rasterised sub-pixel at uniform time steps.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError("kernel size must be an odd number of at least 3")
    if length is None:
        length = rng.uniform(0.4, 1.2) * size
    step = length / steps
    direction = rng.uniform(0.0, 2.0 * math.pi)
    jerks = rng.random(steps) < jerk_prob
    jerk_turns = math.pi + rng.uniform(-0.5, 0.5, steps)
    noise = rng.standard_normal((steps, 2)) @ np.array([1.0, 1j])
    v = step * complex(math.cos(direction), math.sin(direction))
    pos = 0j
    path = np.empty(steps, np.complex128)
    for t in range(steps):
        dv = anxiety * step * noise[t] - centripetal * step * pos / max(length, 1e-9)
        if jerks[t]:
            dv += 2.0 * v * complex(math.cos(jerk_turns[t]), math.sin(jerk_turns[t]))
        v += dv
        v *= step / max(abs(v), 1e-12)
        pos += v
        path[t] = pos
    x, y = path.real, path.imag
    x = x - (x.max() + x.min()) / 2
    y = y - (y.max() + y.min()) / 2
    extent = max(x.max() - x.min(), y.max() - y.min(), 1e-9)
    fit = min(1.0, (size - 3) / extent)
    return _normalise(_splat(x * fit, y * fit, size))


# ----------------------------------------------------------------------------------------------- operations
def apply_blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with the kernel (mirrored borders, so edges do not darken)."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)  # filter2D correlates
    out = cv2.filter2D(np.ascontiguousarray(img, dtype=np.float32), -1, flipped, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's bicubic)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense out_len x in_len matrix of MATLAB imresize weights along one axis (mirrored borders)."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel centre
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - indices
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), cols.ravel()), weights.ravel())
    return matrix.astype(np.float32)


def _apply_axis(img: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(img, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    out = (matrix @ flat).reshape((matrix.shape[0],) + moved.shape[1:])
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` bicubic with antialiasing: the resize SR benchmarks use for x4 LR.

    Output size is ceil(input * scale). Works on H x W or H x W x C float arrays, returns float32
    without clipping (bicubic overshoots slightly, as MATLAB's does on floating-point images).
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    out = np.asarray(img, dtype=np.float32)
    for axis in (0, 1):  # MATLAB resizes rows first when both axes share one scale
        in_len = out.shape[axis]
        out_len = int(math.ceil(in_len * scale - 1e-9))
        out = _apply_axis(out, _resize_matrix(in_len, out_len, scale), axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as baseline JPEG with 4:2:0 chroma, as cameras and the web do."""
    if not 1 <= quality <= 100:
        raise ValueError("JPEG quality must be in 1..100")
    buffer = io.BytesIO()
    Image.fromarray(code_values(img, 8), "RGB").save(buffer, format="JPEG", quality=int(quality), subsampling="4:2:0")
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


# ----------------------------------------------------------------------------------------------- pipeline
def _default_blur_probs() -> dict[str, float]:
    # REDS blur comes from averaged video frames, i.e. mostly motion and camera shake.
    return {"iso_gaussian": 0.15, "aniso_gaussian": 0.15, "disk": 0.1, "motion": 0.25, "shake": 0.35}


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges of the random degradation; values are drawn uniformly within each (low, high) range."""

    kernel_size: int = 21  # Gaussian and shake kernels; disk and motion must fit inside it
    no_blur_prob: float = 0.1
    blur_probs: dict[str, float] = field(default_factory=_default_blur_probs)
    gaussian_sigma: tuple[float, float] = (0.4, 3.0)
    disk_radius: tuple[float, float] = (1.0, 4.0)
    motion_length: tuple[float, float] = (3.0, 15.0)
    shake_length: tuple[float, float] = (5.0, 20.0)
    jpeg_quality: tuple[int, int] = (10, 60)
    jpeg_prob: float = 0.0  # sr only: share of inputs saved as JPEG (deblock inputs always are)
    noise_prob: float = 0.0
    noise_sigma: tuple[float, float] = (1 / 255, 10 / 255)

    @classmethod
    def for_task(cls, task: Task) -> "DegradationConfig":
        """The training mix for the photos people have (model card): most small photos are JPEGs, so half
        the sr inputs are too, at qualities from heavy to light; deblock covers light compression as well,
        so a lightly compressed file is helped rather than harmed; mild sensor noise on a fifth of inputs."""
        if task not in TASK_SCALES:
            raise ValueError(f"task must be one of {tuple(TASK_SCALES)}, got {task!r}")
        noise_prob, noise_sigma = 0.2, (1 / 255, 4 / 255)
        if task == "sr":
            return cls(jpeg_prob=0.5, jpeg_quality=(40, 95), noise_prob=noise_prob, noise_sigma=noise_sigma)
        return cls(jpeg_quality=(10, 95), noise_prob=noise_prob, noise_sigma=noise_sigma)

    def __post_init__(self) -> None:
        size = self.kernel_size
        if not whole_number(size) or not 3 <= size <= MAX_KERNEL_SIZE or size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd whole number from 3 to {MAX_KERNEL_SIZE}, "
                             f"got {self.kernel_size!r}")
        self._check_types()
        unknown = set(self.blur_probs) - set(BLUR_FAMILIES)
        if unknown:
            raise ValueError(f"unknown blur families {sorted(unknown)}; known: {BLUR_FAMILIES}")
        if any(p < 0 for p in self.blur_probs.values()) or not 0 <= self.no_blur_prob <= 1:
            raise ValueError("probabilities must be non-negative (no_blur_prob at most 1)")
        if not 0 <= self.jpeg_prob <= 1 or not 0 <= self.noise_prob <= 1:
            raise ValueError("jpeg_prob and noise_prob must lie in 0..1")
        if self.no_blur_prob < 1 and sum(self.blur_probs.values()) <= 0:
            raise ValueError("at least one blur family needs a positive probability")
        for name in RANGE_SETTINGS:
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(low, high)}")
        if self.jpeg_quality[1] > 100:
            raise ValueError("jpeg_quality must lie in 1..100")
        if disk_kernel(self.disk_radius[1]).shape[0] > self.kernel_size:
            raise ValueError("disk_radius is too large for kernel_size")
        if motion_kernel(self.motion_length[1], 0.0).shape[0] > self.kernel_size:
            raise ValueError("motion_length is too large for kernel_size")

    def _check_types(self) -> None:
        """Numbers where numbers go, so a setting such as jpeg_prob "x" is named rather than failing mid-run."""
        for name in ("no_blur_prob", "jpeg_prob", "noise_prob"):
            if not finite_number(getattr(self, name)):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        if not isinstance(self.blur_probs, dict) or not all(map(finite_number, self.blur_probs.values())):
            raise ValueError(f"blur_probs must map blur families to numbers, got {self.blur_probs!r}")
        for name in RANGE_SETTINGS:
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(map(finite_number, value)):
                raise ValueError(f"{name} must be a range [low, high] of two numbers, got {value!r}")


# Larger kernels blur a training patch into flat colour and cost seconds per crop.
MAX_KERNEL_SIZE = 101
RANGE_SETTINGS = ("gaussian_sigma", "disk_radius", "motion_length", "shake_length", "jpeg_quality", "noise_sigma")


def whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def random_kernel(rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Draw one blur kernel (or the identity, with probability no_blur_prob)."""
    if rng.random() < cfg.no_blur_prob:
        return np.ones((1, 1), np.float32)
    names = [name for name in BLUR_FAMILIES if cfg.blur_probs.get(name, 0) > 0]
    probs = np.array([cfg.blur_probs[name] for name in names], np.float64)
    family = names[rng.choice(len(names), p=probs / probs.sum())]
    if family == "iso_gaussian":
        return gaussian_kernel(cfg.kernel_size, rng.uniform(*cfg.gaussian_sigma))
    if family == "aniso_gaussian":
        return gaussian_kernel(cfg.kernel_size, rng.uniform(*cfg.gaussian_sigma), rng.uniform(*cfg.gaussian_sigma),
                               rng.uniform(0.0, math.pi))
    if family == "disk":
        return disk_kernel(rng.uniform(*cfg.disk_radius))
    if family == "motion":
        return motion_kernel(rng.uniform(*cfg.motion_length), rng.uniform(0.0, 180.0))
    return shake_kernel(rng, cfg.kernel_size, rng.uniform(*cfg.shake_length))


def degrade(sharp: np.ndarray, task: Task, rng: np.random.Generator,
            cfg: DegradationConfig | None = None) -> np.ndarray:
    """Blurry low-quality input for a sharp image.

    sr: blur, MATLAB bicubic x4 downscale, optional noise, then JPEG with probability cfg.jpeg_prob, else
    8-bit rounding (REDS's LR frames are PNGs).
    deblock: blur, optional noise, JPEG at a quality drawn from cfg.jpeg_quality.
    """
    if task not in TASK_SCALES:
        raise ValueError(f"task must be one of {tuple(TASK_SCALES)}, got {task!r}")
    cfg = cfg or DegradationConfig()
    img = apply_blur(sharp, random_kernel(rng, cfg))
    if task == "sr":
        img = imresize(img, 1 / TASK_SCALES["sr"])
    if rng.random() < cfg.noise_prob:
        img = img + rng.normal(0.0, rng.uniform(*cfg.noise_sigma), img.shape).astype(np.float32)
    if task == "deblock" or (cfg.jpeg_prob > 0 and rng.random() < cfg.jpeg_prob):
        low, high = cfg.jpeg_quality
        return jpeg_compress(img, int(rng.integers(low, high + 1)))
    return code_values(img, 8).astype(np.float32) / 255.0


def baseline(lq: np.ndarray, task: Task) -> np.ndarray:
    """What restoring is measured against (evaluation and validation): bicubic x4 (MATLAB-style) for sr, the
    degraded input itself for deblock."""
    return np.clip(imresize(lq, 4), 0, 1) if task == "sr" else lq


def baseline_name(task: Task) -> str:
    return "bicubic" if task == "sr" else "degraded input"
