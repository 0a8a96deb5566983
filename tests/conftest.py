import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)

TINY = dict(channels=8, extractor_blocks=1, ptbs_per_level=1, deformable_groups=2,
            reconstruction_blocks=2, attention_reduction=4, copies=3)


@pytest.fixture
def tiny_overrides() -> dict:
    """A network small enough for CPU tests but with every module of the paper present."""
    return dict(TINY)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_sr_weights(tmp_path):
    """A weights file of the tiny network, as `edpn train --export` writes it."""
    from edpn_core import build_model, save_weights

    torch.manual_seed(0)
    return save_weights(build_model("lite", "sr", **TINY), tmp_path / "w.safetensors", "lite")


@pytest.fixture
def photo(tmp_path):
    """A small noisy RGB photo alone in its own folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)).save(path)
    return path
