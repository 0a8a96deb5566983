"""EDPN: Enhanced Deep Pyramid Network (Xu et al., CVPR 2021 workshops).

Module names follow the paper: FeatureExtractor, PTB, PPT, PSA, ReconstructionBlock.
Deliberate deviations from the authors' code are listed in docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from typing import Mapping, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import EDPNConfig
from .dcn import modulated_deform_conv3x3
from .shortcuts import fold_copies, one_input_offset_and_mask, subpixel_tail

T = TypeVar("T")


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate the right and bottom edges up to sizes the pyramid can halve evenly."""
    pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


def scale_residual_init(*convs: nn.Conv2d, scale: float = 0.1) -> None:
    """Kaiming init shrunk by `scale`, so deep residual stacks start near identity (as in EDVR/BasicSR).
    Meta tensors (a layout check, model_io) are skipped: torch's meta normal_ loads its compiler, 2 s a start."""
    for conv in convs:
        if not conv.weight.is_meta:
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(scale)
            if conv.bias is not None:
                conv.bias.data.zero_()


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with identity, the extractor's block."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        scale_residual_init(self.conv1, self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureExtractor(nn.Module):
    """Shared extractor: conv 3->C, LeakyReLU, residual blocks. Unlike the authors' code, the blocks are live."""

    def __init__(self, cfg: EDPNConfig):
        super().__init__()
        self.conv_first = conv3x3(3, cfg.channels)
        self.blocks = nn.Sequential(*(ResidualBlock(cfg.channels) for _ in range(cfg.extractor_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(lrelu(self.conv_first(x)))


class PTB(nn.Module):
    """Progressive transfer block: modulated deformable alignment of Fi' to F0, masked, fused back onto F0.

    The mask is a softmax over channels per pixel; the authors' code takes it over the image width, which
    makes results depend on the image width and breaks tiling.
    """

    def __init__(self, channels: int, deformable_groups: int):
        super().__init__()
        self.offset_conv1 = conv3x3(2 * channels, channels)
        self.offset_conv2 = conv3x3(channels, channels)
        # Predicts offsets (2 per tap) and modulation (1 per tap); zero init makes the DCN start as a plain conv.
        self.offset_mask = conv3x3(channels, 3 * deformable_groups * 9)
        for parameter in self.offset_mask.parameters():
            nn.init.zeros_(parameter)
        self.dcn_weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.dcn_bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.dcn_weight, a=5**0.5)
        self.mask_ref = conv3x3(channels, channels)
        self.mask_nbr = conv3x3(channels, channels)
        self.fusion = conv3x3(2 * channels, channels)

    def forward(self, ref: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        if nbr is ref:  # the replica shortcut's first PTB of a level: an exact shortcut (archs/shortcuts.py)
            feat, mask_logits = one_input_offset_and_mask(self.offset_conv1, self.mask_ref, self.mask_nbr, ref)
        else:
            feat = self.offset_conv1(torch.cat([ref, nbr], 1))
            mask_logits = self.mask_ref(ref) - self.mask_nbr(nbr)
        feat = lrelu(self.offset_conv2(lrelu(feat)))
        dy_dx_a, dy_dx_b, modulation = torch.chunk(self.offset_mask(feat), 3, dim=1)
        offset = torch.cat([dy_dx_a, dy_dx_b], 1)
        aligned = modulated_deform_conv3x3(nbr, offset, torch.sigmoid(modulation), self.dcn_weight, self.dcn_bias)
        return ref + self.fusion(torch.cat([ref, torch.softmax(mask_logits, dim=1) * aligned], 1))


class PPT(nn.Module):
    """Pyramid progressive transfer: N PTBs per level on an M-level pyramid, merged coarse to fine."""

    def __init__(self, cfg: EDPNConfig):
        super().__init__()
        c = cfg.channels
        self.downsample = nn.ModuleList(
            nn.Sequential(conv3x3(c, c, stride=2), nn.LeakyReLU(0.1), conv3x3(c, c), nn.LeakyReLU(0.1))
            for _ in range(cfg.pyramid_levels - 1)
        )
        self.levels = nn.ModuleList(
            nn.ModuleList(PTB(c, cfg.deformable_groups) for _ in range(cfg.ptbs_per_level))
            for _ in range(cfg.pyramid_levels)
        )
        self.merge = nn.ModuleList(conv3x3(2 * c, c) for _ in range(cfg.pyramid_levels - 1))

    def pyramid(self, feat: torch.Tensor) -> list[torch.Tensor]:
        levels = [feat]
        for down in self.downsample:
            levels.append(down(levels[-1]))
        return levels

    def forward(self, ref_pyramid: list[torch.Tensor], nbr_pyramid: list[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for ptbs, ref, nbr in zip(self.levels, ref_pyramid, nbr_pyramid):
            for ptb in cast(nn.ModuleList, ptbs):
                nbr = ptb(ref, nbr)
            outputs.append(nbr)
        merged = outputs[-1]
        for level in range(len(outputs) - 2, -1, -1):
            up = F.interpolate(merged, scale_factor=2, mode="bilinear", align_corners=False)
            merged = lrelu(self.merge[level](torch.cat([up, outputs[level]], 1)))
        return merged


class PSA(nn.Module):
    """Pyramid self-attention: EDVR's temporal-spatial attention fusion (BasicSR's TSAFusion, whose layer names
    it keeps) plus a 3D-conv branch across copies.

    With the replica shortcut every copy's aligned feature is the same tensor and arrives as a copies axis of
    length 1; each conv over the concatenated copies is then replaced by one with its per-copy weights summed:
    exact, K+1 times cheaper.
    """

    def __init__(self, cfg: EDPNConfig):
        super().__init__()
        c, t = cfg.channels, cfg.copies
        self.copies = t
        self.temporal_attn1 = conv3x3(c, c)  # embeds the reference copy
        self.temporal_attn2 = conv3x3(c, c)  # embeds every copy
        self.feat_fusion = conv1x1(t * c, c)
        self.conv3d = nn.Conv3d(c, c, 1)
        self.fusion3d = conv1x1(t * c, c)
        self.spatial_attn1 = conv1x1(t * c, c)
        self.spatial_attn2 = conv1x1(2 * c, c)
        self.spatial_attn_l1 = conv1x1(c, c)
        self.spatial_attn_l2 = conv3x3(2 * c, c)
        self.spatial_attn_l3 = conv3x3(c, c)
        self.spatial_attn3 = conv1x1(c, c)
        self.spatial_attn4 = conv1x1(c, c)
        self.spatial_attn5 = conv3x3(c, c)
        self.spatial_attn_add1 = conv1x1(c, c)
        self.spatial_attn_add2 = conv1x1(c, c)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)

    def _over_copies(self, conv: nn.Conv2d, copies: torch.Tensor) -> torch.Tensor:
        """A conv whose input is every copy concatenated, from B x T x C x H x W (T = 1: all copies equal)."""
        b, t, c, h, w = copies.shape
        if t == 1:
            return F.conv2d(copies[:, 0], fold_copies(conv.weight, self.copies), conv.bias, padding=conv.padding)
        return conv(copies.reshape(b, t * c, h, w))

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        """aligned: B x T x C x H x W, T = cfg.copies, or T = 1 standing for that many identical copies."""
        b, t, c, h, w = aligned.shape
        emb_ref = self.temporal_attn1(aligned[:, 0])
        emb = self.temporal_attn2(aligned.reshape(b * t, c, h, w)).view(b, t, c, h, w)
        corr = torch.sigmoid((emb * emb_ref.unsqueeze(1)).sum(2, keepdim=True))
        weighted = aligned * corr
        per_copy = self.conv3d(weighted.transpose(1, 2)).transpose(1, 2)
        feat = lrelu(self._over_copies(self.feat_fusion, weighted)) + self._over_copies(self.fusion3d, per_copy)

        att = lrelu(self._over_copies(self.spatial_attn1, weighted))
        att = lrelu(self.spatial_attn2(torch.cat([self.max_pool(att), self.avg_pool(att)], 1)))
        att_l = lrelu(self.spatial_attn_l1(att))
        att_l = lrelu(self.spatial_attn_l2(torch.cat([self.max_pool(att_l), self.avg_pool(att_l)], 1)))
        att_l = lrelu(self.spatial_attn_l3(att_l))
        att_l = F.interpolate(att_l, scale_factor=2, mode="bilinear", align_corners=False)
        att = lrelu(self.spatial_attn3(att)) + att_l
        att = lrelu(self.spatial_attn4(att))
        att = F.interpolate(att, scale_factor=2, mode="bilinear", align_corners=False)
        att = self.spatial_attn5(att)
        att_add = self.spatial_attn_add2(lrelu(self.spatial_attn_add1(att)))
        # EDVR's TSA scaling: 2 * sigmoid is 1 where the attention is neutral (0), so it starts as identity.
        return feat * torch.sigmoid(att) * 2 + att_add


# Layer names of weights and checkpoints written before PSA took BasicSR's names; with_current_names renames them.
LEGACY_PSA_NAMES = {
    "emb_ref": "temporal_attn1", "emb": "temporal_attn2", "fusion": "feat_fusion",
    "sa1": "spatial_attn1", "sa2": "spatial_attn2", "sa3": "spatial_attn3", "sa4": "spatial_attn4",
    "sa5": "spatial_attn5", "sa_l1": "spatial_attn_l1", "sa_l2": "spatial_attn_l2", "sa_l3": "spatial_attn_l3",
    "sa_add1": "spatial_attn_add1", "sa_add2": "spatial_attn_add2",
}


def with_current_names(state: Mapping[str, T]) -> dict[str, T]:
    """A state dict under today's layer names; keys already current come back unchanged."""
    def current(name: str) -> str:
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "psa" and parts[1] in LEGACY_PSA_NAMES:
            return f"psa.{LEGACY_PSA_NAMES[parts[1]]}.{parts[2]}"
        return name
    return {current(name): value for name, value in state.items()}


class MSCAM(nn.Module):
    """Multi-scale channel attention (Dai et al., WACV 2021): local 1x1 bottleneck plus its global-pooled twin."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        inner = channels // reduction
        self.local_att = nn.Sequential(conv1x1(channels, inner), nn.ReLU(inplace=True), conv1x1(inner, channels))
        self.global_att = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), conv1x1(channels, inner), nn.ReLU(inplace=True), conv1x1(inner, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.local_att(x) + self.global_att(x))


class ReconstructionBlock(nn.Module):
    """Residual channel-attention block with MS-CAM."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        scale_residual_init(self.conv1, self.conv2)
        self.attention = MSCAM(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.conv2(F.relu(self.conv1(x))))


class EDPN(nn.Module):
    """Blurry image (B x 3 x H x W in [0, 1], any H and W) -> restored image at `cfg.scale` times the size."""

    def __init__(self, cfg: EDPNConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.extractor = FeatureExtractor(cfg)
        self.ppt = PPT(cfg)
        self.psa = PSA(cfg)
        self.reconstruction = nn.Sequential(
            *(ReconstructionBlock(c, cfg.attention_reduction) for _ in range(cfg.reconstruction_blocks))
        )
        if cfg.task == "sr":
            self.tail_conv = conv3x3(c, c)
            self.tail_expand = conv1x1(c, c * cfg.scale**2)
        self.conv_last = conv3x3(c, 3)

    def align(self, x: torch.Tensor) -> torch.Tensor:
        """Extractor + PPT over the K+1 copies of the input: B x T x C x H x W. The replica shortcut computes
        the one copy all T share, T = 1 (PSA reads that as T identical copies)."""
        if self.cfg.replica_shortcut:
            pyramid = self.ppt.pyramid(self.extractor(x))
            return self.ppt(pyramid, pyramid).unsqueeze(1)
        b, _, h, w = x.shape
        t = self.cfg.copies
        copies = x.unsqueeze(1).expand(b, t, 3, h, w).reshape(b * t, 3, h, w)
        feats = self.extractor(copies).view(b, t, -1, h, w)
        ref_pyramid = self.ppt.pyramid(feats[:, 0])  # the first (centre) copy is the reference
        aligned = [self.ppt(ref_pyramid, self.ppt.pyramid(feats[:, i])) for i in range(t)]
        return torch.stack(aligned, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.cfg.size_multiple)
        feat = self.psa(self.align(padded))
        feat = self.reconstruction(feat)
        if self.cfg.task == "sr":
            # conv_last(pixel_shuffle(tail_expand(.))), computed at low resolution: archs/shortcuts.py
            out = subpixel_tail(lrelu(self.tail_conv(feat)), self.tail_expand, self.conv_last, self.cfg.scale)
            # Bicubic is twice as fast on a contiguous 3-channel tensor as on a channels-last one.
            out = out + F.interpolate(padded.contiguous(), scale_factor=self.cfg.scale, mode="bicubic",
                                      align_corners=False)
        else:
            out = self.conv_last(feat) + padded
        s = self.cfg.scale
        return out[..., : h * s, : w * s]
