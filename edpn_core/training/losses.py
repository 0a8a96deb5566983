"""Training losses: the paper's Charbonnier (eps 1e-3) + 0.1 x (1 - SSIM).

The authors' code trains with Charbonnier alone and eps 1e-12 (effectively L1 with an unstable gradient
at zero); we follow the paper. Tensors are B x C x H x W in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics.psnr_ssim import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of sqrt(diff^2 + eps^2): L1-like for large errors, smooth (finite gradient) near zero."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def _gaussian_kernel(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """channels x 1 x 11 x 11 Gaussian window for a depthwise (groups=channels) conv."""
    x = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim_torch(pred: Tensor, target: Tensor) -> Tensor:
    """Differentiable mean SSIM of images in [0, 1], with the same conventions as metrics.ssim
    (11 x 11 Gaussian, sigma 1.5, K1 0.01, K2 0.03, no padding, per channel then averaged).

    Computed in at least float32 with autocast off: E[x^2] - E[x]^2 loses everything in float16.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 4 or min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"need B x C x H x W with H, W >= {SSIM_WINDOW}, got {tuple(pred.shape)}")
    dtype = torch.promote_types(pred.dtype, torch.float32)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        x, y = pred.to(dtype), target.to(dtype)
        channels = x.shape[1]
        window = _gaussian_kernel(channels, dtype, x.device)

        def local_mean(t: Tensor) -> Tensor:
            return F.conv2d(t, window, groups=channels)

        mu_x, mu_y = local_mean(x), local_mean(y)
        var_x = local_mean(x * x) - mu_x**2
        var_y = local_mean(y * y) - mu_y**2
        cov = local_mean(x * y) - mu_x * mu_y
        c1, c2 = SSIM_K1**2, SSIM_K2**2
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        return ssim_map.mean()


class EDPNLoss(nn.Module):
    """The paper's loss: charbonnier + ssim_weight * (1 - SSIM).

    forward returns (total, parts) where parts holds detached "charbonnier" and "ssim" (SSIM itself, not
    1 - SSIM) for logging without a device sync.
    """

    def __init__(self, ssim_weight: float = 0.1, eps: float = 1e-3) -> None:
        super().__init__()
        self.ssim_weight = ssim_weight
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        char = charbonnier(pred, target, self.eps)
        sim = ssim_torch(pred, target)
        total = char + self.ssim_weight * (1 - sim)
        return total, {"charbonnier": char.detach(), "ssim": sim.detach()}

    def extra_repr(self) -> str:
        return f"ssim_weight={self.ssim_weight}, eps={self.eps}"
