"""The paper's training loss: Charbonnier (eps 1e-3) + 0.1 x (1 - SSIM), SSIM consistent with the metric."""
import math

import numpy as np
import pytest
import torch

from edpn_core.metrics.psnr_ssim import ssim
from edpn_core.training.losses import EDPNLoss, charbonnier, ssim_torch


def test_charbonnier_hand_computed():
    pred = torch.tensor([0.0, 0.5, 1.0, 0.25])
    target = torch.tensor([0.0, 0.2, 0.6, 0.25])
    eps = 0.1
    # diffs 0, 0.3, 0.4, 0 -> sqrt(0.01), sqrt(0.1), sqrt(0.17), sqrt(0.01)
    expected = (0.1 + math.sqrt(0.1) + math.sqrt(0.17) + 0.1) / 4
    assert charbonnier(pred, target, eps=eps).item() == pytest.approx(expected, abs=1e-7)


def test_ssim_torch_agrees_with_metric(rng):
    a = rng.random((2, 3, 24, 20))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    got = ssim_torch(torch.from_numpy(a).float(), torch.from_numpy(b).float()).item()
    expected = np.mean([ssim(x.transpose(1, 2, 0), y.transpose(1, 2, 0)) for x, y in zip(a, b)])
    assert got == pytest.approx(expected, abs=1e-4)


def test_edpn_loss_gradient_flows(rng):
    target = torch.from_numpy(rng.random((1, 3, 16, 16))).float()
    pred = (target + 0.05 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    loss_fn = EDPNLoss()
    total, parts = loss_fn(pred, target)
    total.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert total.item() == pytest.approx(parts["charbonnier"].item() + 0.1 * (1 - parts["ssim"].item()), abs=1e-6)
    assert not parts["charbonnier"].requires_grad and not parts["ssim"].requires_grad


def test_edpn_loss_identical_inputs():
    img = torch.rand(1, 3, 16, 16)
    total, parts = EDPNLoss(ssim_weight=0.1, eps=1e-3)(img, img.clone())
    assert parts["charbonnier"].item() == pytest.approx(1e-3, rel=1e-4)
    assert parts["ssim"].item() == pytest.approx(1.0, abs=1e-5)
    assert total.item() == pytest.approx(1e-3, abs=1e-5)
