"""tiny_seg: a small segmentation-style CNN built to show data movement in seconds.

It has what makes real on-device models spend time outside the matrix engines: a GroupNorm and a
LayerNorm that XNNPACK does not delegate (graph breaks with NCHW<->NHWC transposes around them),
explicit permutes into token layout for an attention block, and an encoder/decoder with skips."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kit.models.checkpoint import load_into
from kit.models.modelspec import ModelSpec


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TokenAttention(nn.Module):
    """Pre-norm self-attention over the H*W tokens of a feature map (NCHW in, NCHW out)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # NCHW -> tokens: a layout change
        q, k, v = self.qkv(self.norm(tokens)).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, h * w, c)
        tokens = tokens + self.proj(out)
        return tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)  # back to NCHW


class TinySeg(nn.Module):
    def __init__(self, width: int = 16, heads: int = 2):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(3, w, 3, 2, 1)
        self.stem_norm = nn.GroupNorm(1, w)  # not delegated by XNNPACK
        self.enc1 = conv_bn_relu(w, 2 * w, 2)
        self.enc2 = conv_bn_relu(2 * w, 4 * w, 2)
        self.attn = TokenAttention(4 * w, heads)
        self.dec2 = conv_bn_relu(4 * w, 2 * w)
        self.dec1 = conv_bn_relu(4 * w, w)
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.stem_norm(self.stem(image)))
        e1 = self.enc1(s)
        e2 = self.attn(self.enc2(e1))
        d2 = F.interpolate(self.dec2(e2), scale_factor=2.0, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([d2, e1], dim=1))
        mask = self.head(F.interpolate(d1, scale_factor=2.0, mode="bilinear", align_corners=False))
        return F.interpolate(mask, size=image.shape[-2:], mode="bilinear", align_corners=False)


def build(size: dict, checkpoint: str | None = None) -> nn.Module:
    model = TinySeg(width=size.get("width", 16))
    if checkpoint:
        load_into(model, checkpoint, "tiny_seg")
    return model.eval()


def example_inputs(size: dict) -> tuple:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, size["resolution"], size["resolution"], generator=g),)


def calibration_inputs(size: dict) -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(1, 3, size["resolution"], size["resolution"], generator=g),) for _ in range(4)]


MODEL = ModelSpec(
    name="tiny_seg",
    build=build,
    example_inputs=example_inputs,
    calibration_inputs=calibration_inputs,
    sizes={"small": {"resolution": 64}, "full": {"resolution": 256}},
    description="small segmentation CNN: GroupNorm + LayerNorm graph breaks, token attention, bilinear decoder",
)
