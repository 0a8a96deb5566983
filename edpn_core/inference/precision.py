"""Which number format a restore runs in, chosen by what the device has (docs/BENCHMARKS.md has the figures).

CUDA runs fp16 weights. A CPU with AMX or AVX512-BF16 runs the convolutions under bf16 autocast
(about 2-3x faster there with channels-last; the output stays far above 50 dB PSNR of fp32, and the DCN's
sampling positions stay fp32). Any other CPU, and Apple's MPS, run fp32: emulated bf16 would be slower.
"""
from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AMX tiles or AVX512-BF16), as torch's kernels use them."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(device: torch.device, precision: Precision = "auto") -> Precision:
    """'auto' becomes the fastest format measured exact enough on that device; explicit choices are checked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 has no fast CPU kernels; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 autocast is supported on the CPU and CUDA, not {device.type}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def describe_precision(device: torch.device) -> str:
    """The automatic arithmetic and why, so a speed report says which path ran."""
    precision = resolve_precision(device)
    if device.type != "cpu":
        return precision
    if precision == "bf16":
        return "bf16 autocast (bf16 in the CPU's hardware)"
    return "fp32 (no bf16 in the CPU's hardware)"


def use_channels_last(model: torch.nn.Module) -> None:
    """Store 2-D conv weights channels-last, which oneDNN's CPU convolutions run faster (docs/BENCHMARKS.md).
    Module.to(memory_format=...) cannot be used: it refuses the PSA's 5-D Conv3d weight."""
    for conv in model.modules():
        if isinstance(conv, torch.nn.Conv2d):
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
