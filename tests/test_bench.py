"""`edpn bench`'s arithmetic and the paths it compares (its timings are measured by running it, never in tests)."""
import pytest

from edpn_core import build_model
from edpn_core.bench import BEFORE_FAST_PATH, CURRENT_PATH, attach_achieved_fraction


def test_efficiency_is_model_flops_per_second_over_the_measured_matmul_rate():
    result = {"flops": [{"preset": "lite", "task": "sr", "gflop_per_input_pixel": 0.001}],
              "matmul": [{"device": "cpu", "fp32_tflops": 0.4}],
              "throughput": [{"preset": "lite", "task": "sr", "device": "CPU, 2 threads", "input_megapixels": 0.2,
                              "seconds": 2.0}]}
    attach_achieved_fraction(result)
    row = result["throughput"][0]
    assert row["achieved_tflops"] == pytest.approx(0.001e9 * 0.2e6 / 2.0 / 1e12)
    assert row["fraction_of_matmul"] == pytest.approx(0.1e12 / 1e12 / 0.4)
    assert row["fraction_of_peak"] is None  # no data-sheet peak for a CPU


def test_the_compared_paths_differ_in_dcn_precision_and_tile_policy(tiny_overrides):
    model = build_model("lite", "deblock", **tiny_overrides)
    before, current = BEFORE_FAST_PATH.restorer(model, "cpu"), CURRENT_PATH.restorer(model, "cpu")
    assert (BEFORE_FAST_PATH.dcn, before.precision) == ("torchvision", "fp32")
    assert BEFORE_FAST_PATH.run_settings(before).tile == before.auto_tile("memory")
    assert CURRENT_PATH.run_settings(current).tile == current.auto_tile("speed")
