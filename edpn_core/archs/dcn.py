"""Modulated deformable convolution (DCNv2), 3x3, stride 1, padding 1, with two exact implementations.

`torchvision.ops.deform_conv2d` is the reference and the fast choice on CUDA. On the CPU its kernels run
single-threaded (backward especially), so there the same operation is written with `F.grid_sample`:
for each of the 9 taps and each deformable group, sample the input bilinearly at (pixel + tap + offset)
with zeros outside the image, multiply by the modulation mask, then apply the DCN weight as one matrix
product over (input channel, tap). That is the definition of DCNv2, term by term, so the two agree to
float rounding; tests hold them equal, forward and every gradient. docs/ARCHITECTURE.md has the detail.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch
import torch.nn.functional as F

DcnImpl = Literal["auto", "torchvision", "grid_sample"]
DCN_IMPLS: tuple[DcnImpl, ...] = ("auto", "torchvision", "grid_sample")
_TAPS = 9  # a 3x3 kernel

_forced: DcnImpl = "auto"


def resolve_impl(device: torch.device, impl: DcnImpl = "auto") -> str:
    """'auto' picks what measured faster on that device (docs/BENCHMARKS.md): torchvision's kernels on CUDA,
    grid_sample elsewhere (CPU, and MPS where torchvision has no deformable kernel)."""
    if impl not in DCN_IMPLS:
        raise ValueError(f"DCN implementation must be one of {DCN_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    return "torchvision" if device.type == "cuda" else "grid_sample"


@contextlib.contextmanager
def dcn_implementation(impl: DcnImpl) -> Iterator[None]:
    """Force one implementation for every DCN inside the block (benchmarks and equality tests)."""
    global _forced
    resolve_impl(torch.device("cpu"), impl)
    previous, _forced = _forced, impl
    try:
        yield
    finally:
        _forced = previous


def _sampling_grid(offset: torch.Tensor, groups: int, height: int, width: int) -> torch.Tensor:
    """(B*G) x (9*H) x W x 2 grid_sample coordinates for every tap, in align_corners=False units."""
    b = offset.shape[0]
    # torchvision's layout: for group g and tap k, channels 2*(g*9 + k) and +1 hold (dy, dx).
    offset = offset.view(b, groups, _TAPS, 2, height, width)
    taps = torch.arange(_TAPS, device=offset.device)
    tap_y = (taps // 3 - 1).to(offset.dtype).view(_TAPS, 1, 1)
    tap_x = (taps % 3 - 1).to(offset.dtype).view(_TAPS, 1, 1)
    rows = torch.arange(height, device=offset.device, dtype=offset.dtype).view(1, height, 1)
    cols = torch.arange(width, device=offset.device, dtype=offset.dtype).view(1, 1, width)
    y = (rows + tap_y) + offset[:, :, :, 0]
    x = (cols + tap_x) + offset[:, :, :, 1]
    # Pixel centre p maps to (2p + 1) / size - 1 with align_corners=False. In place: these are the largest
    # tensors of the step after the sampled taps, and scalar arithmetic needs none of them for its gradient.
    x.mul_(2).add_(1).div_(width).sub_(1)
    y.mul_(2).add_(1).div_(height).sub_(1)
    return torch.stack((x, y), dim=-1).view(b * groups, _TAPS * height, width, 2)


def _deform_conv_grid_sample(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    b, c, h, w = x.shape
    groups = offset.shape[1] // (2 * _TAPS)
    grid = _sampling_grid(offset, groups, h, w)
    sampled = F.grid_sample(x.reshape(b * groups, c // groups, h, w), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    columns = sampled.view(b, groups, c // groups, _TAPS, h, w)
    modulation = mask.view(b, groups, 1, _TAPS, h, w)
    # In place where nothing will ask for gradients (inference): the taps are the step's largest tensor, and a
    # second copy of them costs time in page faults and memory traffic.
    needs_grad = torch.is_grad_enabled() and (sampled.requires_grad or modulation.requires_grad)
    columns = columns * modulation if needs_grad else columns.mul_(modulation)
    # (channel, tap) flattened in the order of weight.view(C_out, C_in * 9).
    out = torch.matmul(weight.reshape(weight.shape[0], c * _TAPS), columns.reshape(b, c * _TAPS, h * w))
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return out.view(b, weight.shape[0], h, w)


def modulated_deform_conv3x3(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    impl: DcnImpl = "auto",
) -> torch.Tensor:
    """DCNv2 with a 3x3 kernel, stride 1, padding 1: x B x C x H x W, offset B x 2*G*9 x H x W (dy, dx per
    group and tap, torchvision's layout), mask B x G*9 x H x W, weight C_out x C x 3 x 3."""
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"expected a 3x3 kernel, got {tuple(weight.shape[-2:])}")
    chosen = resolve_impl(x.device, _forced if impl == "auto" else impl)
    if chosen == "torchvision":
        # Imported here: loading torchvision adds about 2 s to every start on a CPU that never uses it.
        from torchvision.ops import deform_conv2d

        if x.device.type == "cuda":
            return deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    # Sampling positions need full precision (a bf16 offset is off by up to 1/128 px per unit), and
    # torchvision has no reduced-precision CPU kernel: fp16 and bf16 inputs run in fp32, cast back after.
    dtype = x.dtype
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    args = (x.to(work), offset.to(work), mask.to(work), weight.to(work), None if bias is None else bias.to(work))
    if chosen == "torchvision":
        out = deform_conv2d(*args[:2], args[3], args[4], padding=1, mask=args[2])
    else:
        out = _deform_conv_grid_sample(*args)
    return out.to(dtype)
