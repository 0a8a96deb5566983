"""How much detail an image holds: what evaluation's crops and validation's crops are picked by."""
from __future__ import annotations

import cv2
import numpy as np


def detail_map(rgb: np.ndarray) -> np.ndarray:
    """Absolute Laplacian of the luma, per pixel (float32): high on edges and texture, near zero on sky and bokeh,
    where a tiny colour offset would swing PSNR by a dB. Its mean over a crop ranks crops by detail."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.abs(cv2.Laplacian(gray, cv2.CV_32F))
