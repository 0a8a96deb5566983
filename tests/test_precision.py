"""The CPU fast path: bf16 only where the CPU has it, close to fp32 on the shipped weights, tiles sized for speed."""
import pytest
import torch
from test_engine import psnr

from edpn_core import build_model, load_model
from edpn_core.inference import engine
from edpn_core.inference import precision as precision_module
from edpn_core.inference.engine import (
    CPU_TILE_WORKING_SET,
    MIN_TILE,
    Restorer,
    RunSettings,
    largest_activation_channels,
)
from edpn_core.inference.imageio import load_image
from edpn_core.inference.precision import resolve_precision
from edpn_core.resources import default_weights, sample_image


def test_auto_precision_follows_what_the_cpu_has(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision(cpu) == "bf16"
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision(cpu) == "fp32"
    assert resolve_precision(torch.device("cuda")) == "fp16"
    assert resolve_precision(cpu, "bf16") == "bf16"  # asked for explicitly: honoured even where emulated


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="fp16 has no fast CPU kernels"):
        resolve_precision(torch.device("cpu"), "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(torch.device("cpu"), "int4")


@pytest.mark.parametrize("task", ["sr", "deblock"])
def test_bf16_output_of_the_shipped_weights_stays_above_50_db_of_fp32(task):
    model = load_model(default_weights(task, "cpu"))[0]
    crop = load_image(sample_image()).rgb[100:196, 120:248]
    fp32 = Restorer(models=[model], device="cpu", precision="fp32").restore_array(crop, RunSettings("whole"))
    bf16 = Restorer(models=[model], device="cpu", precision="bf16").restore_array(crop, RunSettings("whole"))
    assert bf16.shape == fp32.shape
    assert psnr(bf16, fp32) >= 50


@pytest.mark.parametrize("preset", ["lite", "paper"])
@pytest.mark.parametrize("task", ["sr", "deblock"])
def test_cpu_auto_tile_keeps_the_largest_activation_within_the_measured_working_set(preset, task, monkeypatch):
    monkeypatch.setattr(engine, "available_memory_bytes", lambda device: 64 << 30)  # memory is not the limit here
    restorer = Restorer(models=[build_model(preset, task)], device="cpu")
    tile = restorer.auto_tile()
    cfg = restorer.models[0].cfg
    assert MIN_TILE <= tile and tile % cfg.size_multiple == 0
    assert tile**2 * 4 * largest_activation_channels(cfg) <= CPU_TILE_WORKING_SET
    assert (tile + cfg.size_multiple) ** 2 * 4 * largest_activation_channels(cfg) > CPU_TILE_WORKING_SET


def test_auto_tile_shrinks_to_the_memory_the_machine_has(monkeypatch):
    restorer = Restorer(models=[build_model("lite", "sr")], device="cpu")
    monkeypatch.setattr(engine, "available_memory_bytes", lambda device: 64 << 30)
    roomy = restorer.auto_tile()
    monkeypatch.setattr(engine, "available_memory_bytes", lambda device: 256 << 20)
    tight = restorer.auto_tile()
    assert MIN_TILE <= tight < roomy


def test_restore_takes_a_precision_and_refuses_fp16_on_the_cpu(tmp_path, capsys):
    from edpn_core.cli import main

    assert main(["restore", str(sample_image()), "-o", str(tmp_path / "a"), "--task", "deblock", "--precision",
                 "fp16", "--device", "cpu"]) == 2
    assert "fp16 has no fast CPU kernels" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
