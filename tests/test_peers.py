"""SRMD x4 through ncnn: runs on the CPU, keeps sizes, and beats bicubic on real photos.

Beating bicubic by a clear margin is the check that the input is prepared as the port prepares it: a
wrong value range or missing degradation channels give garbage far below bicubic.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edpn_core import peers
from edpn_core.inference.imageio import code_values
from edpn_core.metrics.psnr_ssim import psnr
from edpn_core.training.degradations import imresize

needs_srmd = pytest.mark.skipif(not peers.srmd_available(), reason="optional extra 'peers' is not installed")
PHOTOS = Path(__file__).parent / "data" / "tid2013"


def _photo_crop(name: str, top: int, left: int, size: int = 128) -> np.ndarray:
    img = np.asarray(Image.open(PHOTOS / f"{name}_ref.png").convert("RGB"), dtype=np.float32) / 255.0
    return img[top:top + size, left:left + size]


@needs_srmd
@pytest.mark.parametrize("noise_level", [-1, peers.SRMD_DEFAULT_NOISE])
def test_srmd_keeps_size_and_range_for_any_input_size(rng, noise_level):
    lq = rng.random((13, 18, 3), dtype=np.float32)
    out = peers.srmd_x4(lq, noise_level)
    assert out.shape == (52, 72, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


@needs_srmd
@pytest.mark.parametrize("name, top, left", [("I03", 0, 0), ("I08", 128, 192)])
@pytest.mark.parametrize("noise_level, margin_db", [(-1, 1.0), (peers.SRMD_DEFAULT_NOISE, 0.5)])
def test_srmd_beats_bicubic_on_photo_crops(name, top, left, noise_level, margin_db):
    gt = _photo_crop(name, top, left)
    lq = code_values(imresize(gt, 0.25), 8).astype(np.float32) / 255.0  # 8-bit, as the port reads its input
    bicubic = psnr(np.clip(imresize(lq, 4), 0, 1), gt, crop_border=4, test_y=True)
    srmd = psnr(peers.srmd_x4(lq, noise_level), gt, crop_border=4, test_y=True)
    assert srmd > bicubic + margin_db


def test_srmd_rejects_bad_arguments_before_needing_the_extra():
    with pytest.raises(ValueError, match="H x W x 3"):
        peers.srmd_x4(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="noise_level"):
        peers.srmd_x4(np.zeros((8, 8, 3), np.float32), noise_level=11)


def test_missing_ncnn_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ncnn", None)
    assert not peers.srmd_available()
    with pytest.raises(peers.PeerUnavailableError, match="pip install"):
        peers.srmd_x4(np.zeros((8, 8, 3), np.float32))


def test_missing_model_files_make_srmd_unavailable(monkeypatch):
    monkeypatch.setattr(peers, "_srmd_model_dir", lambda: None)
    assert not peers.srmd_available()
