"""SqueezeSAM (arXiv 2312.06736) as its authors' published configuration describes it.

Early fusion of the image with a box mask and click disks (5 x 512 x 512), a UNet with GroupNorm
after the patch embedding and BatchNorm *after* ReLU in every DoubleConv (so it cannot fold into
the conv), a two-way transformer at the 2x2 bottleneck, a pixel-shuffle decoder with per-pixel
Linear layers, and a hypernetwork mask head. The layer types that matter for performance are
kept: GroupNorm and LayerNorm are never delegated to XNNPACK (graph breaks, layout transposes
around them), and prompt rasterization (arange, comparisons) runs as portable kernels. Random
initialization; 10,159,260 parameters at full width (MODELS.md: about 10.16 M computed; encoder
3.77 M, decoder 4.21 M, transformer 1.45 M, heads 0.73 M, all matched)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kit.models.checkpoint import load_into
from kit.models.modelspec import ModelSpec

from ..common import MLP, TwoWayTransformer

ENCODER = (64, 128, 128, 128, 128, 164, 256, 256)  # stage channels, resolutions R/2 ... R/256
DECODER = (256, 164, 128, 128, 128, 128, 64)  # up-stage outputs, resolutions R/128 ... R/2
CLICK_RADIUS = 5.0


class DoubleConv(nn.Sequential):
    """2 x [conv3x3 with bias -> ReLU -> BatchNorm]: the norm follows the activation."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(cout),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(cout),
        )


class UpStage(nn.Module):
    """Per-pixel Linear(C -> 2C) + ReLU -> BatchNorm -> x2 pixel shuffle -> concat skip -> DoubleConv."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.expand = nn.Linear(cin, 2 * cin)
        self.norm = nn.BatchNorm2d(2 * cin)
        self.conv = DoubleConv(cin // 2 + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = F.relu(self.expand(x.permute(0, 2, 3, 1)))  # NCHW -> NHWC for the per-pixel Linear
        y = self.norm(y.permute(0, 3, 1, 2))  # and back
        y = y.reshape(b, c // 2, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 2, 2 * h, 2 * w)  # pixel shuffle
        return self.conv(torch.cat([y, skip], dim=1))


class SqueezeSAM(nn.Module):
    def __init__(self, fusion_size: int = 512, width: float = 1.0):
        super().__init__()
        ch = lambda c: max(8, int(round(c * width)))  # noqa: E731 - the small size scales widths
        enc, dec = [ch(c) for c in ENCODER], [ch(c) for c in DECODER]
        dim = ch(256)
        self.fusion_size = fusion_size
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.patch_embed = nn.Conv2d(5, enc[0], 2, 2)
        self.patch_norm = nn.GroupNorm(1, enc[0])
        self.enc = nn.ModuleList([DoubleConv(enc[0], enc[0])] + [DoubleConv(a, b) for a, b in zip(enc, enc[1:])])
        self.transformer = TwoWayTransformer(depth=2, dim=dim, heads=8, mlp_dim=dim, downsample=2)
        self.iou_token = nn.Parameter(torch.randn(1, dim) * 0.02)
        self.mask_tokens = nn.Parameter(torch.randn(4, dim) * 0.02)
        ups, cin = [], enc[-1]
        for cout, cskip in zip(dec, reversed(enc[:-1])):
            ups.append(UpStage(cin, cskip, cout))
            cin = cout
        self.dec = nn.ModuleList(ups)
        self.hyper = nn.ModuleList(MLP(dim, dim, dec[-1], 3) for _ in range(4))
        self.iou_head = MLP(dim, dim, 4, 3)

    def fuse(self, image: torch.Tensor, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """5 x S x S early-fusion input: normalized image, box rectangle, click disks."""
        s = self.fusion_size
        h, w = image.shape[-2:]
        img = F.interpolate((image - self.mean) / self.std, size=(s, s), mode="bilinear", align_corners=False)
        ys = torch.arange(s, dtype=image.dtype, device=image.device).view(1, 1, s, 1)
        xs = torch.arange(s, dtype=image.dtype, device=image.device).view(1, 1, 1, s)
        pts = points[:, 0] * torch.tensor([s / w, s / h], dtype=image.dtype)  # first query; B x P x 2 in fusion pixels
        lab = labels[:, 0]
        # Box: when the first label is not a positive click, points 0 and 1 are its corners.
        is_box = (lab[:, 0] != 1).to(image.dtype).view(-1, 1, 1, 1)
        x0, y0, x1, y1 = (pts[:, i, j].view(-1, 1, 1, 1) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        rect = ((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)).to(image.dtype)
        box = is_box * rect + (1 - is_box)
        # Clicks: disks of radius 5 around positive points (padding points carry label -1).
        d2 = (xs.unsqueeze(1) - pts[..., 0].view(*pts.shape[:2], 1, 1, 1)) ** 2 + (
            ys.unsqueeze(1) - pts[..., 1].view(*pts.shape[:2], 1, 1, 1)
        ) ** 2
        positive = (lab == 1).to(image.dtype).view(*lab.shape, 1, 1, 1)
        clicks = ((d2 <= CLICK_RADIUS**2).to(image.dtype) * positive).amax(dim=1)
        return torch.cat([img, box, clicks], dim=1)

    def forward(self, image: torch.Tensor, points: torch.Tensor, labels: torch.Tensor):
        x = self.patch_norm(self.patch_embed(self.fuse(image, points, labels)))
        skips = []
        for i, stage in enumerate(self.enc):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        b, c = x.shape[:2]
        tokens = (
            torch.cat([self.iou_token, self.mask_tokens, torch.zeros_like(self.iou_token)], dim=0)
            .unsqueeze(0)
            .expand(b, -1, -1)
        )
        queries, keys = self.transformer(x, torch.zeros_like(x), tokens)  # no positional encoding on the image side
        x = keys.permute(0, 2, 1).reshape(x.shape)
        for up, skip in zip(self.dec, reversed(skips[:-1])):
            x = up(x, skip)
        hyper = torch.stack([mlp(queries[:, 1 + i]) for i, mlp in enumerate(self.hyper)], dim=1)  # B x 4 x C
        masks = (hyper @ x.flatten(2)).view(b, 4, *x.shape[-2:])
        iou = self.iou_head(queries[:, 0])
        masks = F.interpolate(
            masks[:, 1:], size=image.shape[-2:], mode="bilinear", align_corners=False
        )  # bicubic in the original: no portable kernel
        return masks, iou[:, 1:]


def build(size: dict, checkpoint: str | None = None) -> nn.Module:
    model = SqueezeSAM(fusion_size=size["fusion_size"], width=size.get("width", 1.0))
    if checkpoint:
        load_into(model, checkpoint, "squeeze_sam")
    return model.eval()


def example_inputs(size: dict) -> tuple:
    """An image, and one query of two prompt points: a positive click and a padding point."""
    g = torch.Generator().manual_seed(0)
    s = size["image_size"]
    image = torch.rand(1, 3, s, s, generator=g)
    points = torch.tensor([[[[0.45 * s, 0.55 * s], [0.0, 0.0]]]])
    labels = torch.tensor([[[1, -1]]], dtype=torch.int64)
    return image, points, labels


def calibration_inputs(size: dict) -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    s = size["image_size"]
    out = []
    for i in range(4):
        pts = torch.rand(1, 1, 2, 2, generator=g) * s
        out.append(
            (
                torch.rand(1, 3, s, s, generator=g),
                pts,
                torch.tensor([[[1, -1]]] if i % 2 == 0 else [[[2, 3]]], dtype=torch.int64),
            )
        )
    return out


MODEL = ModelSpec(
    name="squeeze_sam",
    build=build,
    example_inputs=example_inputs,
    calibration_inputs=calibration_inputs,
    # full: the published 1024x1024 input, fused at 512 (bottleneck 2x2). small: 256 (bottleneck
    # 1x1) at an eighth of the width, for tests and emulated targets.
    sizes={
        "small": {"image_size": 256, "fusion_size": 256, "width": 0.125},
        "full": {"image_size": 1024, "fusion_size": 512},
    },
    description="SqueezeSAM: early-fusion UNet + two-way transformer bottleneck (GroupNorm, post-ReLU BatchNorm, pixel shuffle)",
    tolerances={"fp16": 0.1},
    unsupported={
        "int8-dynamic": "XNNPACK's partitioner (executorch 1.5.1) finds a dependency cycle in the dynamically quantized graph ('Invalid partition, found dependency cycles'); use int8 (static)"
    },
)
