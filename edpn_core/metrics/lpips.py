"""LPIPS v0.1 with the AlexNet backbone (Zhang et al., CVPR 2018), fully offline.

The paper reports LPIPS(alex); every LPIPS package downloads its backbone at run time, so we ship the
weights (edpn_core/assets/lpips_alex.safetensors, made by tools/convert_lpips_weights.py) and build the
network here in plain torch. Matches the official values on five TID2013 pairs within 1.2e-4.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from .psnr_ssim import to_float255

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "lpips_alex.safetensors"
MIN_SIZE = 31  # smallest side for which AlexNet's two 3x3/2 max-pools still have an input

_CHANNELS = (64, 192, 384, 256, 256)
# (in, out, kernel, stride, padding) of torchvision's AlexNet convs; LPIPS taps the ReLU after each.
_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_POOL_AFTER = (True, True, False, False, False)
# LPIPS v0.1 input scaling layer: images in [-1, 1] -> roughly ImageNet-normalised.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """Perceptual distance: unit-normalised AlexNet features, squared differences weighted by the learned
    1x1 layers, averaged over space and summed over the five layers.

    forward(img0, img1) takes B x 3 x H x W in [0, 1] and returns B distances (0 for identical images).
    Parameters are frozen; gradients still flow to the inputs, so it can serve as a loss.
    """

    shift: Tensor
    scale: Tensor

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in _CONVS)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        state = {k: v.float() for k, v in load_file(str(weights)).items()}  # stored float16, computed float32
        self.load_state_dict(state, strict=True)
        self.requires_grad_(False)
        self.eval()

    def _features(self, x: Tensor) -> list[Tensor]:
        feats = []
        x = (x - self.shift) / self.scale
        for conv, pool in zip(self.convs, _POOL_AFTER):
            x = F.relu(conv(x))
            feats.append(x)
            if pool:
                x = F.max_pool2d(x, kernel_size=3, stride=2)
        return feats

    def forward(self, img0: Tensor, img1: Tensor) -> Tensor:
        if img0.shape != img1.shape:
            raise ValueError(f"shapes differ: {tuple(img0.shape)} vs {tuple(img1.shape)}")
        if img0.ndim != 4 or img0.shape[1] != 3 or min(img0.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"need B x 3 x H x W with H, W >= {MIN_SIZE}, got {tuple(img0.shape)}")
        feats0 = self._features(img0 * 2 - 1)
        feats1 = self._features(img1 * 2 - 1)
        total = img0.new_zeros(img0.shape[0])
        for f0, f1, lin in zip(feats0, feats1, self.lins):
            n0 = f0 / (f0.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            n1 = f1 / (f1.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((n0 - n1) ** 2).mean(dim=(1, 2, 3))
        return total


@lru_cache(maxsize=None)
def _cached_model(device: str) -> LPIPS:
    return LPIPS().to(device)


def lpips_distance(img_a: np.ndarray, img_b: np.ndarray, device: str = "cpu") -> float:
    """LPIPS(alex) between two H x W x 3 RGB numpy images (float in [0, 1], or uint8/uint16); the model is
    loaded once per device and reused."""
    a, b = np.asarray(img_a), np.asarray(img_b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need H x W x 3 RGB images, got shape {a.shape}")
    model = _cached_model(str(device))

    def to_tensor(img: np.ndarray) -> Tensor:
        t = torch.from_numpy(to_float255(img) / 255.0).permute(2, 0, 1)[None]
        return t.to(device=device, dtype=torch.float32)

    with torch.inference_mode():
        return float(model(to_tensor(a), to_tensor(b))[0])
