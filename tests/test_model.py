"""The network: sizes a user gets back, every parameter trains, and the replica shortcut is exact."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edpn_core import build_model, load_model, parameter_count, save_weights
from edpn_core.config import EDPNConfig, make_config
from edpn_core.model_io import WeightsError, read_weights_info


def randomise_offsets(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    """The offset predictor starts at zero; give it weights so the deformable sampling really moves."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "offset_mask" in name:
            p.data.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


@pytest.mark.parametrize("task,scale", [("sr", 4), ("deblock", 1)])
@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (17, 16), (33, 5)])
def test_output_size_for_odd_inputs(tiny_overrides, task, scale, h, w):
    model = build_model("lite", task, **tiny_overrides).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w))
    assert out.shape == (2, 3, h * scale, w * scale)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("preset", ["paper", "lite"])
@pytest.mark.parametrize("task", ["sr", "deblock"])
def test_every_parameter_receives_gradient(preset, task):
    # Seeded: a random init can leave one of MS-CAM's 8-unit global ReLUs dead for every input, which
    # says nothing about the wiring this test is about (no computed-then-discarded modules).
    torch.manual_seed(0)
    model = build_model(preset, task)
    randomise_offsets(model)
    out = model(torch.rand(2, 3, 8, 8))
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("task", ["sr", "deblock"])
@pytest.mark.parametrize("ptbs", [1, 2])  # a level's first PTB sees one tensor twice and folds its convs
def test_replica_shortcut_equals_literal_k_plus_1_path(tiny_overrides, task, ptbs):
    torch.manual_seed(0)
    tiny_overrides["ptbs_per_level"] = ptbs
    fast = build_model("lite", task, **tiny_overrides)
    randomise_offsets(fast)
    literal = build_model("lite", task, **{**tiny_overrides, "replica_shortcut": False})
    literal.load_state_dict(fast.state_dict())
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.allclose(fast.eval()(x), literal.eval()(x), atol=1e-5)


def test_paper_preset_matches_the_paper_description():
    cfg = make_config("paper", "sr")
    assert (cfg.channels, cfg.copies, cfg.extractor_blocks, cfg.pyramid_levels, cfg.ptbs_per_level,
            cfg.deformable_groups, cfg.reconstruction_blocks) == (64, 5, 18, 3, 3, 8, 120)
    model = build_model("paper", "sr")
    assert model.tail_expand.out_channels == 1024
    assert parameter_count(model) == 14_953_179  # documented in docs/ARCHITECTURE.md


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="task"):
        EDPNConfig(task="denoise")
    with pytest.raises(ValueError, match="preset"):
        make_config("huge", "sr")


def test_weights_round_trip_describes_the_model(tmp_path, tiny_overrides):
    model = build_model("lite", "deblock", **tiny_overrides)
    path = save_weights(model, tmp_path / "w.safetensors", "lite", half=True, iterations=12)
    info = read_weights_info(path)
    assert (info.preset, info.task, info.scale, info.metadata["iterations"]) == ("lite", "deblock", 1, "12")
    loaded, _ = load_model(path)
    assert loaded.cfg == model.cfg
    for key, value in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[key], value.half().float())


def test_files_written_under_the_old_attention_layer_names_still_load(tmp_path, tiny_overrides):
    """PSA took BasicSR's TSAFusion names (sa1 -> spatial_attn1, ...); weights and checkpoints from before must
    load and restore exactly as files under the current names do."""
    from safetensors.torch import load_file, save_file

    from edpn_core.archs.edpn_arch import LEGACY_PSA_NAMES

    torch.manual_seed(0)
    model = build_model("lite", "sr", **tiny_overrides)
    current = save_weights(model, tmp_path / "current.safetensors", "lite")
    old_name = {new: old for old, new in LEGACY_PSA_NAMES.items()}

    def with_old_names(state):
        return {".".join(["psa", old_name[k.split(".")[1]], k.split(".")[2]]) if k.startswith("psa.")
                and k.split(".")[1] in old_name else k: v for k, v in state.items()}

    legacy_state = with_old_names(load_file(str(current)))
    assert "psa.sa1.weight" in legacy_state and "psa.spatial_attn1.weight" not in legacy_state
    legacy = tmp_path / "legacy.safetensors"
    save_file(legacy_state, str(legacy), metadata=read_weights_info(current).metadata)
    checkpoint = tmp_path / "legacy.pth"
    torch.save({"model": with_old_names(model.state_dict()), "iteration": 3,
                "config": json.dumps({"preset": "lite", "task": "sr", "model_overrides": tiny_overrides})},
               checkpoint)
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        expected = load_model(current)[0](x)
        assert torch.equal(load_model(legacy)[0](x), expected)
        assert torch.equal(load_model(checkpoint)[0](x), expected)


def test_saved_weights_reach_the_disk_before_they_replace_a_file(tmp_path, tiny_overrides, monkeypatch):
    """A crash just after the rename must not leave a truncated weights file (checkpoints share the path)."""
    from edpn_core import durable

    events = []
    real_fsync, real_replace = durable.os.fsync, durable.os.replace
    monkeypatch.setattr(durable.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(durable.os, "replace", lambda a, b: (events.append(("replace", Path(b).name)),
                                                               real_replace(a, b))[1])
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"the previous weights")
    save_weights(build_model("lite", "sr", **tiny_overrides), target, "lite")
    assert events.index("fsync") < events.index(("replace", "w.safetensors"))
    assert events[-1] == "fsync"  # the folder, so the rename itself survives
    assert read_weights_info(target).task == "sr" and not list(tmp_path.glob("*.tmp"))


def test_weights_errors_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        read_weights_info(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        read_weights_info(junk)
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(WeightsError, match="must be .safetensors"):
        read_weights_info(tmp_path / "w.bin")
    (tmp_path / "w.pth").write_bytes(b"x")
    with pytest.raises(WeightsError, match="not a loadable PyTorch checkpoint"):
        read_weights_info(tmp_path / "w.pth")


def test_loading_and_restoring_on_the_cpu_skips_torchvision_and_the_compiler(tiny_sr_weights):
    """Both cost seconds at every start (docs/BENCHMARKS.md) and the CPU path uses neither."""
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from edpn_core.inference.engine import Restorer\n"
        f"restorer = Restorer({str(tiny_sr_weights)!r}, device='cpu')\n"
        "restorer.restore_array(np.zeros((40, 40, 3), np.float32))\n"
        "print(sorted(name for name in ('torchvision', 'torch._dynamo', 'sympy') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_folded_sr_tail_equals_expand_shuffle_conv(scale):
    """The sr tail runs as one low-resolution conv; values and gradients match the three layers it replaces,
    including the image border, where conv_last's zero padding hides the expanded bias."""
    from edpn_core.archs.edpn_arch import conv1x1, conv3x3
    from edpn_core.archs.shortcuts import fold_subpixel_tail

    torch.manual_seed(scale)
    expand, last = conv1x1(6, 6 * scale**2).double(), conv3x3(6, 3).double()
    for conv in (expand, last):
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64, requires_grad=True)

    literal = last(torch.nn.functional.pixel_shuffle(expand(x), scale))
    weight, bias, bias_weight = fold_subpixel_tail(expand, last, scale)
    border = torch.nn.functional.conv2d(torch.ones(1, 1, 7, 5, dtype=torch.float64), bias_weight, padding=1)
    folded = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, weight, bias, padding=1) + border,
                                               scale)
    assert folded.shape == literal.shape == (2, 3, 7 * scale, 5 * scale)
    torch.testing.assert_close(folded, literal, rtol=0, atol=1e-12)

    params = [x, expand.weight, expand.bias, last.weight, last.bias]
    upstream = torch.randn_like(literal)
    grads_literal = torch.autograd.grad(literal, params, upstream)
    grads_folded = torch.autograd.grad(folded, params, upstream)
    for got, want in zip(grads_folded, grads_literal):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
