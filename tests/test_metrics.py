"""PSNR / SSIM follow BasicSR's conventions and agree with scikit-image where the conventions coincide."""
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edpn_core.metrics.psnr_ssim import psnr, rgb_to_y, ssim, to_float255


def _pair(rng: np.random.Generator, shape=(40, 36, 3)) -> tuple[np.ndarray, np.ndarray]:
    ref = rng.integers(0, 256, shape, dtype=np.uint8)
    noisy = np.clip(ref.astype(np.int64) + rng.integers(-40, 41, shape), 0, 255).astype(np.uint8)
    return noisy, ref


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """skimage with BasicSR's settings. Its 11-tap Gaussian (truncate 3.5 x sigma 1.5 -> radius 5) and its
    final crop of 5 pixels average exactly the window positions that BasicSR's 'valid' filtering keeps,
    so the two agree to rounding error, not just approximately."""
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=-1 if a.ndim == 3 else None)


def test_psnr_matches_skimage(rng):
    a, b = _pair(rng)
    expected = peak_signal_noise_ratio(b.astype(np.float64), a.astype(np.float64), data_range=255)
    assert psnr(a, b) == pytest.approx(expected, abs=1e-6)


def test_ssim_matches_skimage_rgb_and_y(rng):
    a, b = _pair(rng)
    assert ssim(a, b) == pytest.approx(_sk_ssim(a.astype(np.float64), b.astype(np.float64)), abs=1e-9)
    assert ssim(a, b, test_y=True) == pytest.approx(_sk_ssim(rgb_to_y(a), rgb_to_y(b)), abs=1e-9)


def test_float_and_integer_inputs_are_the_same_image(rng):
    a, b = _pair(rng)
    assert psnr(a / 255.0, b / 255.0) == pytest.approx(psnr(a, b), abs=1e-9)
    a16, b16 = a.astype(np.uint16) * 257, b.astype(np.uint16) * 257  # 257 * 255 = 65535
    assert ssim(a16, b16) == pytest.approx(ssim(a, b), abs=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_float255(a.astype(np.float32))


def test_rgb_to_y_formula():
    img = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    y = rgb_to_y(img)
    assert y.shape == (1, 5)
    np.testing.assert_allclose(y[0], [16 + 65.481, 16 + 128.553, 16 + 24.966, 16, 235.0], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(np.array([[[255, 128, 0]]], dtype=np.uint8)),
                               [[16 + 65.481 + 128.553 * 128 / 255]], atol=1e-9)


def test_crop_border_ignores_the_border(rng):
    a, b = _pair(rng)
    damaged = a.copy()
    damaged[:4] = 255 - damaged[:4]
    damaged[:, -4:] = 0
    assert psnr(damaged, b, crop_border=4) == pytest.approx(psnr(a[4:-4, 4:-4], b[4:-4, 4:-4]), abs=1e-12)
    assert ssim(damaged, b, crop_border=4) == pytest.approx(ssim(a[4:-4, 4:-4], b[4:-4, 4:-4]), abs=1e-12)
    assert psnr(damaged, b) < psnr(damaged, b, crop_border=4)


def test_identical_images(rng):
    a, _ = _pair(rng)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a, test_y=True) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a, crop_border=4, test_y=True) == pytest.approx(1.0, abs=1e-12)


def test_shape_mismatch_is_a_clear_error(rng):
    a, b = _pair(rng)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, b[:-1])
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, b[..., :2])
