"""Image quality with the papers' conventions: PSNR and SSIM as BasicSR computes them, and LPIPS (AlexNet)."""
from .lpips import lpips_distance
from .psnr_ssim import psnr, rgb_to_y, ssim

__all__ = ["lpips_distance", "psnr", "rgb_to_y", "ssim"]
