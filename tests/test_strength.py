"""Strength blends the restored photo with its input the same way wherever it is used."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edpn_core.archs.edpn_arch import pad_to_multiple
from edpn_core.inference.batch import BatchSettings
from edpn_core.inference.imageio.writing import code_values
from edpn_core.inference.strength import BAND_ROWS, blend, network_base


def test_the_sr_base_is_the_networks_own_bicubic_base(rng):
    rgb = rng.random((BAND_ROWS + 13, 21, 3)).astype(np.float32)  # odd sizes: the network pads them
    padded = pad_to_multiple(torch.from_numpy(rgb).permute(2, 0, 1)[None], 4)
    network = F.interpolate(padded, scale_factor=4, mode="bicubic", align_corners=False)
    expected = network[0, :, :rgb.shape[0] * 4, :rgb.shape[1] * 4].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(network_base(rgb, 4), expected)


@pytest.mark.parametrize("scale", [1, 4])
def test_no_strength_gives_the_input_or_its_upscale_and_full_strength_the_output(rng, scale):
    source = rng.random((2 * BAND_ROWS + 5, 9, 3)).astype(np.float32)  # three bands
    restored = rng.random((source.shape[0] * scale, 9 * scale, 3)).astype(np.float32)
    unclipped = network_base(source, scale)  # bicubic overshoots a little
    base = np.clip(unclipped, 0, 1)
    np.testing.assert_array_equal(blend(restored, source, scale, 0.0), base)
    assert blend(restored, source, scale, 1.0) is restored
    half = blend(restored, source, scale, 0.5)
    np.testing.assert_allclose(half, np.clip((unclipped + restored) / 2, 0, 1), atol=1e-6)
    for bits in (8, 16):  # code values, as large outputs are restored
        codes = code_values(restored, bits)
        np.testing.assert_array_equal(blend(codes, source, scale, 0.0), code_values(base, bits))
        assert blend(codes, source, scale, 1.0) is codes
    with pytest.raises(ValueError, match="between 0 and 1"):
        blend(restored, source, scale, 1.5)


def test_blending_into_the_restored_array_itself_gives_the_same_result():
    """restore_image blends the output it owns in place: no second full-size array, the same pixels."""
    rng = np.random.default_rng(3)
    source = rng.random((300, 20, 3), dtype=np.float32)  # taller than a band: several bands
    restored = (rng.random((1200, 80, 3)) * 255).astype(np.uint8)
    expected = blend(restored, source, 4, 0.3)
    in_place = restored.copy()
    assert blend(in_place, source, 4, 0.3, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_a_batch_refuses_a_strength_out_of_range_before_its_first_file(strength):
    with pytest.raises(ValueError, match="strength must be between 0 and 1"):
        BatchSettings(strength=strength)
