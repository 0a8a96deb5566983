"""EDPN Restore core: network, degradations, data, losses, metrics, training and inference. No Qt here.

The public API is below; `edpn_core.inference`, `edpn_core.training` and `edpn_core.metrics` hold the rest.
"""
from .config import PRESETS, TASKS, EDPNConfig, make_config
from .inference import Cancelled, CancelToken, ImageError, Progress, Restorer, RunSettings, load_image, save_image
from .metrics import psnr, ssim
from .model_io import (
    WeightsError,
    build_model,
    load_model,
    parameter_breakdown,
    parameter_count,
    read_weights_info,
    save_weights,
)

__all__ = ["PRESETS", "TASKS", "Cancelled", "CancelToken", "EDPNConfig", "ImageError", "Progress", "Restorer",
           "RunSettings", "WeightsError", "build_model", "load_image", "load_model", "make_config",
           "parameter_breakdown", "parameter_count", "psnr", "read_weights_info", "save_image", "save_weights", "ssim"]
