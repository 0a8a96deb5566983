import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch

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
