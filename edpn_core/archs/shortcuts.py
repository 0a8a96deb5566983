"""The exact shortcuts (docs/ARCHITECTURE.md, "Exact shortcuts"): some of the paper's layers computed more cheaply
from the same weights, equal to float rounding, gradients included (training goes through them too). The network
(edpn_arch.py) calls each through one function here, so it reads as the paper."""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def fold_copies(weight: torch.Tensor, copies: int) -> torch.Tensor:
    """Sum a conv weight's per-copy input blocks: conv(cat(x, x, ..., x)) == conv_folded(x)."""
    out_ch, in_ch = weight.shape[:2]
    return weight.view(out_ch, copies, in_ch // copies, *weight.shape[2:]).sum(1)


def one_input_offset_and_mask(offset_conv1: nn.Conv2d, mask_ref: nn.Conv2d, mask_nbr: nn.Conv2d,
                              x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A PTB's offset_conv1(cat(x, x)) and mask_ref(x) - mask_nbr(x) when reference and neighbour are one tensor
    (a level's first PTB under the replica shortcut): each is one conv, the first with the weight's two input
    halves summed, the second with the weights' difference."""
    feat = F.conv2d(x, fold_copies(offset_conv1.weight, 2), offset_conv1.bias, padding=1)
    mask_logits = F.conv2d(x, mask_ref.weight - mask_nbr.weight,
                           cast(torch.Tensor, mask_ref.bias) - cast(torch.Tensor, mask_nbr.bias), padding=1)
    return feat, mask_logits


def fold_subpixel_tail(
    expand: nn.Conv2d, last: nn.Conv2d, scale: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """conv_last(pixel_shuffle(expand(x))) as one low-resolution 3x3 conv whose output is pixel-shuffled.

    The three steps are linear, so they compose exactly: the full-resolution feature map (scale**2 times the
    pixels, the largest tensor of an sr pass) is never built. Each output sub-pixel (a, b) reads the 3x3
    high-resolution neighbours of its position, which lie in the low-resolution pixel or its neighbours.
    expand's bias reaches conv_last only from neighbours inside the image (conv_last pads with zeros), so it
    comes back as its own weight, to be applied to a map of ones: conv2d(ones, bias_weight, padding=1).
    Returns (weight, bias, bias_weight) for inputs of expand's channels.
    """
    r = scale
    channels = last.weight.shape[1]
    # taps[a, i, p, u] = 1 where sub-pixel a's neighbour at offset i - 1 is sub-pixel u of low-res offset p - 1.
    sub = torch.arange(r).view(r, 1, 1, 1)
    offset = torch.arange(3).view(1, 3, 1, 1) - 1
    low = torch.arange(3).view(1, 1, 3, 1) - 1
    target = torch.arange(r).view(1, 1, 1, r)
    taps = (sub + offset == low * r + target).to(last.weight)
    expand_bias, last_bias = cast(torch.Tensor, expand.bias), cast(torch.Tensor, last.bias)
    expanded = torch.cat([expand.weight[:, :, 0, 0], expand_bias[:, None]], 1).view(channels, r, r, -1)
    folded = torch.einsum("mkij,aipu,bjqv,kuvn->mabnpq", last.weight, taps, taps, expanded)
    folded = folded.reshape(-1, expanded.shape[-1], 3, 3)
    return folded[:, :-1], last_bias.repeat_interleave(r * r), folded[:, -1:]


def subpixel_tail(x: torch.Tensor, expand: nn.Conv2d, last: nn.Conv2d, scale: int) -> torch.Tensor:
    """last(pixel_shuffle(expand(x), scale)) through `fold_subpixel_tail`, never building the expanded map."""
    weight, bias, bias_weight = fold_subpixel_tail(expand, last, scale)
    border = F.conv2d(x.new_ones(1, 1, *x.shape[-2:]), bias_weight, padding=1)
    return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1) + border, scale)
