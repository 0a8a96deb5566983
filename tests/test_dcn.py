"""The CPU's grid_sample DCN is the same operation as torchvision's deform_conv2d, forward and backward."""
import pytest
import torch
from test_model import randomise_offsets

from edpn_core import build_model
from edpn_core.archs.dcn import dcn_implementation, modulated_deform_conv3x3, resolve_impl


def dcn_inputs(batch, channels, groups, h, w, offset_scale, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * scale).requires_grad_()

    mask = torch.rand(batch, groups * 9, h, w, generator=gen, dtype=dtype).requires_grad_()
    return (rand(batch, channels, h, w), rand(batch, 2 * groups * 9, h, w, scale=offset_scale), mask,
            rand(channels + 3, channels, 3, 3), rand(channels + 3))


def run_both(inputs):
    results = {}
    for impl in ("torchvision", "grid_sample"):
        out = modulated_deform_conv3x3(*inputs, impl=impl)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(),
                                    inputs)
        results[impl] = (out, *grads)
    return results


# Offsets of several pixels send taps far across the borders of these small, odd-sized inputs.
@pytest.mark.parametrize("batch,channels,groups,h,w,offset_scale", [
    (2, 8, 2, 7, 13, 3.0), (1, 16, 4, 17, 5, 10.0), (1, 12, 3, 1, 1, 2.0), (3, 4, 1, 9, 9, 0.5),
])
def test_grid_sample_equals_torchvision_forward_and_every_gradient(batch, channels, groups, h, w, offset_scale):
    results = run_both(dcn_inputs(batch, channels, groups, h, w, offset_scale))
    for name, ours, ref in zip(("output", "input", "offset", "mask", "weight", "bias"),
                               results["grid_sample"], results["torchvision"]):
        assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-9), name


def test_float32_agreement_is_within_float_rounding():
    results = run_both([t.detach().float().requires_grad_() for t in dcn_inputs(2, 32, 4, 24, 20, 4.0)])
    for ours, ref in zip(results["grid_sample"], results["torchvision"]):
        assert (ours - ref).abs().max() <= 1e-4 * ref.abs().max()


@pytest.mark.parametrize("preset", ["lite", "paper"])
@pytest.mark.parametrize("task", ["sr", "deblock"])
def test_network_gives_the_same_output_with_either_dcn(preset, task):
    torch.manual_seed(0)
    model = build_model(preset, task).double().eval()
    randomise_offsets(model, scale=0.5)
    x = torch.rand(1, 3, 13, 10, dtype=torch.float64)
    with torch.no_grad():
        with dcn_implementation("torchvision"):
            ref = model(x)
        with dcn_implementation("grid_sample"):
            ours = model(x)
    assert torch.allclose(ours, ref, atol=1e-10)


def test_auto_picks_grid_sample_on_the_cpu_and_refuses_unknown_names():
    assert resolve_impl(torch.device("cpu")) == "grid_sample"
    assert resolve_impl(torch.device("cuda")) == "torchvision"
    with pytest.raises(ValueError, match="DCN implementation"):
        resolve_impl(torch.device("cpu"), "cuda_magic")
    with pytest.raises(ValueError, match="DCN implementation"):
        with dcn_implementation("cuda_magic"):
            pass


def test_half_precision_inputs_are_sampled_in_float32():
    x, offset, mask, weight, bias = (t.detach() for t in dcn_inputs(1, 8, 2, 6, 6, 2.0, dtype=torch.float32))
    ref = modulated_deform_conv3x3(x, offset, mask, weight, bias, impl="grid_sample")
    out = modulated_deform_conv3x3(*(t.bfloat16() for t in (x, offset, mask, weight, bias)), impl="grid_sample")
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 0.05 * ref.abs().max()
