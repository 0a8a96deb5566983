"""`edpn bench`'s arithmetic and the paths it compares (its timings are measured by running it, never in tests)."""
import numpy as np
import pytest
import torch

from edpn_core import bench, build_model
from edpn_core.bench import BEFORE_FAST_PATH, CURRENT_PATH, attach_achieved_fraction
from edpn_core.inference import engine


def test_efficiency_is_model_flops_per_second_over_the_measured_matmul_rate():
    result = {"flops": [{"preset": "lite", "task": "sr", "gflop_per_input_pixel": 0.001}],
              "matmul": [{"device": "cpu", "fp32_tflops": 0.4}],
              "throughput": [{"preset": "lite", "task": "sr", "device": "cpu", "device_name": "CPU, 2 threads",
                              "input_megapixels": 0.2,
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


def test_the_gpu_path_runs_on_a_cuda_machine_without_device_options(tiny_overrides, monkeypatch):
    """`edpn bench` on a machine with one CUDA GPU and no --device: the GPU's rows find its matmul rate (its
    listing names it cuda:0) and the closing table prints. The GPU is faked: its restores run on the CPU."""
    monkeypatch.setattr(bench, "available_devices", lambda: [("cuda:0", "CUDA 0: NVIDIA H200"), ("cpu", "CPU")])
    monkeypatch.setattr(engine, "select_device", lambda name: torch.device("cpu"))
    monkeypatch.setattr(bench, "describe_device", lambda device: "CUDA: NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 0)
    monkeypatch.setattr(bench, "matmul_rate", lambda device, dtype=torch.float32: 1e12)
    monkeypatch.setattr(bench, "dcn_speed", lambda device, log: [])
    monkeypatch.setattr(bench, "flops_per_input_pixel", lambda preset, task: 1e6)
    monkeypatch.setattr(bench, "build_model", lambda preset, task, **kw: build_model(preset, task, **tiny_overrides))
    monkeypatch.setattr(bench, "random_image", lambda h, w, seed=0: np.full((16, 16, 3), 0.5, np.float32))
    lines: list[str] = []
    result = bench.run_bench(quick=True, presets=("lite",), tasks=("deblock",), log=lines.append)
    gpu_rows = [row for row in result["throughput"] if row["device"] == "cuda:0"]
    assert gpu_rows and all(row["fraction_of_matmul"] is not None for row in gpu_rows)
    assert all(row["fraction_of_peak"] is not None for row in gpu_rows)  # the H200's data-sheet peak
    assert sum("of fp32 matmul" in line for line in lines) == len(result["throughput"])
