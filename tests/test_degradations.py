import math

import numpy as np
import pytest
from PIL import Image

from edpn_core.training.degradations import (
    DegradationConfig,
    apply_blur,
    degrade,
    disk_kernel,
    gaussian_kernel,
    imresize,
    jpeg_compress,
    motion_kernel,
    random_kernel,
    shake_kernel,
)


def _second_moments(kernel):
    """Covariance of the kernel mass with x to the right and y up."""
    half = kernel.shape[0] // 2
    y, x = np.mgrid[half:-half - 1:-1, -half:half + 1]
    mx, my = (kernel * x).sum(), (kernel * y).sum()
    return ((kernel * (x - mx) ** 2).sum(), (kernel * (y - my) ** 2).sum(),
            (kernel * (x - mx) * (y - my)).sum(), (mx, my))


def _smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    return np.ascontiguousarray(imresize(img, 8)[:h, :w].clip(0, 1))


def _psnr(a, b):
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("kernel", [
    gaussian_kernel(15, 2.0), gaussian_kernel(21, 3.0, 0.7, 0.6), disk_kernel(3.3), disk_kernel(0.2),
    motion_kernel(9.5, 30.0), shake_kernel(np.random.default_rng(0), 21)])
def test_kernels_are_normalised_odd_and_float32(kernel):
    assert kernel.dtype == np.float32 and kernel.ndim == 2
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.min() >= 0 and abs(kernel.sum() - 1) < 1e-5


def test_gaussian_isotropic_is_centred_and_symmetric():
    k = gaussian_kernel(13, 1.5)
    assert k.shape == (13, 13) and k.argmax() == k.size // 2
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    vx, vy, cxy, _ = _second_moments(k)
    assert vx == pytest.approx(1.5**2, rel=0.02) and abs(cxy) < 1e-6


def test_anisotropic_gaussian_is_elongated_along_theta():
    flat = _second_moments(gaussian_kernel(21, 3.0, 0.8, 0.0))
    assert flat[0] > 5 * flat[1]  # wide along x
    upright = _second_moments(gaussian_kernel(21, 3.0, 0.8, math.pi / 2))
    assert upright[1] > 5 * upright[0]
    diagonal = _second_moments(gaussian_kernel(21, 3.0, 0.8, math.pi / 4))
    assert diagonal[2] > 0.5 * (3.0**2 - 0.8**2) / 2  # mass along y = x (up-right)
    anti = _second_moments(gaussian_kernel(21, 3.0, 0.8, 3 * math.pi / 4))
    assert anti[2] < -0.5 * (3.0**2 - 0.8**2) / 2


def test_motion_kernel_lies_along_its_angle():
    horizontal = motion_kernel(11, 0.0)
    centre = horizontal.shape[0] // 2
    assert horizontal[centre].sum() == pytest.approx(1.0, abs=1e-6)
    vertical = motion_kernel(11, 90.0)
    assert vertical[:, centre].sum() == pytest.approx(1.0, abs=1e-5)
    vx, vy, cxy, _ = _second_moments(motion_kernel(11, 45.0))
    assert cxy > 0.9 * math.sqrt(vx * vy)  # bottom-left to top-right
    assert _second_moments(motion_kernel(11, 135.0))[2] < 0
    vx, vy, _, _ = _second_moments(horizontal)
    assert vx == pytest.approx(11**2 / 12, rel=0.1)  # uniform segment of length 11


def test_disk_kernel_is_round_with_soft_edge():
    k = disk_kernel(4.0)
    assert k.shape == (9, 9)
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    np.testing.assert_allclose(k, k[::-1], atol=1e-7)
    y, x = np.mgrid[-4:5, -4:5]
    corner_distance = np.hypot(np.abs(x) + 0.5, np.abs(y) + 0.5)
    inner = k[corner_distance <= 4.0]
    np.testing.assert_allclose(inner, k[4, 4])  # fully covered pixels weigh the same
    assert 0 < k[4, 8] < k[4, 4]  # the rim is partly covered
    assert k[0, 0] == 0


def test_shake_kernel_deterministic_per_generator_and_connected():
    a = shake_kernel(np.random.default_rng(5), 21, length=15.0)
    b = shake_kernel(np.random.default_rng(5), 21, length=15.0)
    c = shake_kernel(np.random.default_rng(6), 21, length=15.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    support = a > 1e-4
    assert 8 <= support.sum() < a.size / 2
    assert not support[0].any() and not support[-1].any()  # path fits inside the kernel


def test_apply_blur_keeps_float32_shape_and_mean_and_convolves():
    img = _smooth_image(32, 40)
    out = apply_blur(img, gaussian_kernel(7, 1.2))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert abs(out.mean() - img.mean()) < 2e-3
    delta = np.zeros((15, 15), np.float32)
    delta[7, 7] = 1
    kernel = np.zeros((3, 3), np.float32)
    kernel[0, 2] = 1  # convolution, not correlation: the impulse moves up-right
    moved = apply_blur(np.dstack([delta] * 3), kernel)[..., 0]
    assert moved[6, 8] == 1


def test_imresize_shape_is_ceiling():
    img = np.zeros((37, 50, 3), np.float32)
    assert imresize(img, 0.25).shape == (10, 13, 3)
    assert imresize(img, 4).shape == (148, 200, 3)
    assert imresize(img[..., 0], 0.5).shape == (19, 25)


def test_imresize_keeps_constant_and_linear_ramp():
    const = np.full((40, 44, 3), 0.37, np.float32)
    np.testing.assert_allclose(imresize(const, 0.25), 0.37, atol=1e-6)
    ramp = np.tile((0.01 * np.arange(64, dtype=np.float32) + 0.1)[None, :, None], (24, 1, 3))
    small = imresize(ramp, 0.25)
    # Output pixel j covers input pixels 4j .. 4j + 3: its centre sits at x = 4j + 1.5.
    expected = 0.01 * (4 * np.arange(16) + 1.5) + 0.1
    np.testing.assert_allclose(small[3:-3, 3:-3, 1], np.tile(expected[3:-3], (small.shape[0] - 6, 1)), atol=1e-4)


def test_imresize_interior_matches_pillow_antialiased_bicubic():
    # Pillow's BICUBIC uses the same a = -0.5 kernel widened by 1 / scale; only borders differ.
    img = np.random.default_rng(3).random((64, 80)).astype(np.float32)
    pil = np.asarray(Image.fromarray(img, "F").resize((20, 16), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(imresize(img, 0.25)[3:-3, 3:-3], pil[3:-3, 3:-3], atol=1e-5)
    pil_up = np.asarray(Image.fromarray(img, "F").resize((160, 128), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(imresize(img, 2)[4:-4, 4:-4], pil_up[4:-4, 4:-4], atol=1e-5)


def test_jpeg_lower_quality_loses_more():
    img = _smooth_image(64, 64, seed=1)
    img = np.clip(img + 0.05 * np.random.default_rng(2).standard_normal(img.shape), 0, 1).astype(np.float32)
    psnrs = [_psnr(jpeg_compress(img, q), img) for q in (10, 30, 60, 95)]
    assert psnrs == sorted(psnrs)
    out = jpeg_compress(img, 30)
    assert out.dtype == np.float32 and out.shape == img.shape and 0 <= out.min() and out.max() <= 1


def test_degrade_jpeg_quality_range_is_respected():
    img = _smooth_image(48, 48, seed=4)
    img = np.clip(img + 0.05 * np.random.default_rng(5).standard_normal(img.shape), 0, 1).astype(np.float32)
    no_blur = dict(no_blur_prob=1.0)
    low = np.mean([_psnr(degrade(img, "deblock", np.random.default_rng(s), DegradationConfig(
        jpeg_quality=(5, 10), **no_blur)), img) for s in range(3)])
    high = np.mean([_psnr(degrade(img, "deblock", np.random.default_rng(s), DegradationConfig(
        jpeg_quality=(80, 90), **no_blur)), img) for s in range(3)])
    assert low + 3 < high
    fixed = degrade(img, "deblock", np.random.default_rng(0), DegradationConfig(jpeg_quality=(40, 40), **no_blur))
    np.testing.assert_array_equal(fixed, jpeg_compress(img, 40))


def test_degrade_shapes_and_determinism():
    img = _smooth_image(64, 48)
    lq = degrade(img, "sr", np.random.default_rng(0))
    assert lq.shape == (16, 12, 3) and lq.dtype == np.float32
    np.testing.assert_array_equal(lq * 255, np.rint(lq * 255))  # stored as 8-bit, like REDS's PNGs
    np.testing.assert_array_equal(lq, degrade(img, "sr", np.random.default_rng(0)))
    different = [degrade(img, "sr", np.random.default_rng(s)) for s in (1, 2, 3)]
    assert any(not np.array_equal(lq, d) for d in different)
    db = degrade(img, "deblock", np.random.default_rng(7))
    assert db.shape == img.shape
    np.testing.assert_array_equal(db, degrade(img, "deblock", np.random.default_rng(7)))
    assert not np.array_equal(db, degrade(img, "deblock", np.random.default_rng(8)))


def test_degrade_sr_without_blur_is_bicubic_downscale():
    img = _smooth_image(64, 64, seed=9)
    lq = degrade(img, "sr", np.random.default_rng(0), DegradationConfig(no_blur_prob=1.0))
    np.testing.assert_allclose(lq, np.clip(imresize(img, 0.25), 0, 1), atol=0.5 / 255 + 1e-6)


def test_random_kernel_covers_families_and_fits_size():
    cfg = DegradationConfig()
    rng = np.random.default_rng(0)
    kernels = [random_kernel(rng, cfg) for _ in range(40)]
    assert all(k.shape[0] <= cfg.kernel_size and abs(k.sum() - 1) < 1e-5 for k in kernels)
    assert any(k.shape == (1, 1) for k in kernels)  # no-blur draws
    assert len({k.shape for k in kernels}) >= 3
    only_motion = DegradationConfig(no_blur_prob=0.0, blur_probs={"motion": 1.0})
    k = random_kernel(np.random.default_rng(1), only_motion)
    assert (k > 0).sum() < k.size / 2


def test_config_validation():
    with pytest.raises(ValueError):
        DegradationConfig(kernel_size=20)
    with pytest.raises(ValueError):
        DegradationConfig(blur_probs={"zoom": 1.0})
    with pytest.raises(ValueError):
        DegradationConfig(jpeg_quality=(60, 10))
    with pytest.raises(ValueError):
        DegradationConfig(motion_length=(3.0, 40.0))
    assert DegradationConfig().jpeg_quality == (10, 60) and DegradationConfig().noise_prob == 0


def test_sr_inputs_can_be_jpegs_like_the_small_photos_people_have():
    img = _smooth_image(64, 64, seed=11)
    always = DegradationConfig(no_blur_prob=1.0, jpeg_prob=1.0, jpeg_quality=(50, 50))
    lq = degrade(img, "sr", np.random.default_rng(0), always)
    np.testing.assert_array_equal(lq, jpeg_compress(imresize(img, 0.25), 50))
    never = DegradationConfig(no_blur_prob=1.0)
    np.testing.assert_allclose(degrade(img, "sr", np.random.default_rng(0), never),
                               np.clip(imresize(img, 0.25), 0, 1), atol=0.5 / 255 + 1e-6)


def test_training_mix_per_task():
    sr, deblock = DegradationConfig.for_task("sr"), DegradationConfig.for_task("deblock")
    assert sr.jpeg_prob == 0.5 and sr.jpeg_quality[1] >= 90  # half PNG-like, half JPEG up to light compression
    assert deblock.jpeg_quality[0] <= 10 and deblock.jpeg_quality[1] >= 90
    assert 0 < sr.noise_prob < 0.5 and sr.noise_sigma[1] <= 5 / 255  # mild sensor noise on some inputs
    with pytest.raises(ValueError, match="jpeg_prob"):
        DegradationConfig(jpeg_prob=1.5)
    with pytest.raises(ValueError, match="task"):
        DegradationConfig.for_task("denoise")
