"""The EdgeTAM image encoder (arXiv 2501.07256): a RepViT-M1 trunk and the SAM 2 style feature
pyramid neck, rewritten for export. The "hard mode" onboarding example: see README.md for every
change the export needed. Random initialization; 4,899,056 parameters in training form
(MODELS.md: backbone 4.714 M + neck 0.185 M = 4.899 M computed)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from kit.models.checkpoint import load_into
from kit.models.modelspec import ModelSpec

DIMS = (48, 96, 192, 384)
DEPTHS = (2, 2, 14, 2)
D_MODEL = 256


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class ConvNorm(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class SqueezeExcite(nn.Module):
    """mean -> 1x1 -> ReLU -> 1x1 -> sigmoid (ratio 0.25, rounded to a multiple of 8)."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = _make_divisible(dim * 0.25)
        self.fc1, self.fc2 = nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class RepVggDw(nn.Module):
    """Token mixer in training form: (DW3x3 + BN) + (DW1x1 + BN) + identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv, self.conv1 = ConvNorm(dim, dim, 3, groups=dim), ConvNorm(dim, dim, 1, groups=dim)

    def forward(self, x):
        return self.conv(x) + self.conv1(x) + x


class Ffn(nn.Module):
    """Channel mixer, residual: 1x1 C->2C + BN, GELU, 1x1 2C->C + BN."""

    def __init__(self, dim: int, out: int | None = None):
        super().__init__()
        out = out or dim
        self.conv1, self.conv2 = ConvNorm(dim, 2 * out), ConvNorm(2 * out, out)

    def forward(self, x):
        return x + self.conv2(F.gelu(self.conv1(x)))


class RepViTBlock(nn.Module):
    def __init__(self, dim: int, use_se: bool):
        super().__init__()
        self.token_mixer = RepVggDw(dim)
        self.se = SqueezeExcite(dim) if use_se else nn.Identity()
        self.channel_mixer = Ffn(dim)

    def forward(self, x):
        return self.channel_mixer(self.se(self.token_mixer(x)))


class Downsample(nn.Module):
    """A pre-block without SE, DW3x3 stride 2 + BN, 1x1 Cin->Cout + BN, residual FFN."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pre_block = RepViTBlock(cin, use_se=False)
        self.spatial = ConvNorm(cin, cin, 3, 2, groups=cin)
        self.channel = ConvNorm(cin, cout, 1)
        self.ffn = Ffn(cout)

    def forward(self, x):
        return self.ffn(self.channel(self.spatial(self.pre_block(x))))


class RepViTM1(nn.Module):
    """RepViT-M1 trunk (timm `repvit_m1`, written out: timm's constructor downloads weights)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(ConvNorm(3, DIMS[0] // 2, 3, 2), nn.GELU(), ConvNorm(DIMS[0] // 2, DIMS[0], 3, 2))
        stages, prev = [], DIMS[0]
        for i, (dim, depth) in enumerate(zip(DIMS, DEPTHS)):
            blocks = [Downsample(prev, dim)] if i > 0 else []
            blocks += [RepViTBlock(dim, use_se=(j % 2 == 0)) for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            prev = dim
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats  # strides 4, 8, 16, 32


def sine_position_encoding(channels: int, h: int, w: int, temperature: float = 10000.0) -> torch.Tensor:
    """SAM 2's normalized sine encoding of an h x w map, precomputed (the original caches it in a
    Python dict at run time, which does not export)."""
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32).view(h, 1).expand(h, w) / (h + eps) * scale
    x = torch.arange(1, w + 1, dtype=torch.float32).view(1, w).expand(h, w) / (w + eps) * scale
    dim_t = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
    return torch.cat((py, px), dim=2).permute(2, 0, 1).unsqueeze(0)


class FpnNeck(nn.Module):
    """SAM 2's FPN neck: 1x1 laterals with bias, top-down (nearest x2, sum) only into the two
    lowest-resolution levels, no output conv; scalp 1 drops the lowest-resolution level."""

    def __init__(self, image_size: int, channels=tuple(reversed(DIMS)), top_down_levels=(2, 3), scalp: int = 1):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, D_MODEL, 1) for c in channels)  # lowest resolution first
        self.top_down_levels, self.scalp = top_down_levels, scalp
        sizes = [image_size // s for s in (4, 8, 16, 32)]
        for i, s in enumerate(sizes[: len(sizes) - scalp]):
            self.register_buffer(f"pos{i}", sine_position_encoding(D_MODEL, s, s), persistent=False)

    def forward(self, xs: list[torch.Tensor]):
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                # The original casts this path to float32 (mixed dtypes break fp16 export): removed.
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out[: len(out) - self.scalp]


class EdgeTAMImageEncoder(nn.Module):
    def __init__(self, image_size: int = 1024, return_pos: bool = False):
        super().__init__()
        self.return_pos = return_pos
        self.trunk = RepViTM1()
        self.neck = FpnNeck(image_size)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor):
        """image: [1, 3, S, S] in [0, 1], already resized. Returns a flat tuple instead of the
        original dict of lists: backbone_fpn (3 levels), vision_features, and, in eager mode
        with return_pos, vision_pos_enc (3). The exported program leaves the positional maps out:
        they are constants (see vision_pos_enc and README, change 7)."""
        fpn = self.neck(self.trunk((image - self.mean) / self.std))
        pos = [getattr(self.neck, f"pos{i}") for i in range(len(fpn))] if self.return_pos else []
        return (*fpn, fpn[-1], *pos)


def vision_pos_enc(image_size: int = 1024) -> list[torch.Tensor]:
    """The constant positional maps the original returns with every image, computed once."""
    return [sine_position_encoding(D_MODEL, image_size // s, image_size // s) for s in (4, 8, 16)]


def build(size: dict, checkpoint: str | None = None) -> nn.Module:
    model = EdgeTAMImageEncoder(size["image_size"], return_pos=size.get("return_pos", False))
    if checkpoint:
        load_into(model, checkpoint, "edgetam_image_encoder")
    return model.eval()


def example_inputs(size: dict) -> tuple:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, size["image_size"], size["image_size"], generator=g),)


MODEL = ModelSpec(
    name="edgetam_image_encoder",
    build=build,
    example_inputs=example_inputs,
    # full: the published 1024x1024. small: 128 for tests and emulated targets.
    sizes={"small": {"image_size": 128}, "full": {"image_size": 1024}},
    description="EdgeTAM image encoder: RepViT-M1 trunk + SAM 2 FPN neck (hard-mode onboarding example)",
    tolerances={"fp16": 0.1, "int8": 0.25, "int8-dynamic": 0.25},
)
