"""Restoring images: the one tiled, cancellable path (engine), its tiles, device and precision choices, image
files in and out with their metadata (imageio), and folders of files (batch). GUI, CLI and eval call this."""
from .batch import BatchSettings, Job, collect_inputs, plan_jobs, restore_file, run_batch
from .engine import Cancelled, CancelToken, Progress, ProgressCallback, Restorer, RunSettings
from .imageio import ImageError, LoadedImage, load_image, save_image

__all__ = ["BatchSettings", "Cancelled", "CancelToken", "ImageError", "Job", "LoadedImage", "Progress",
           "ProgressCallback", "Restorer", "RunSettings", "collect_inputs", "load_image", "plan_jobs", "restore_file",
           "run_batch", "save_image"]
