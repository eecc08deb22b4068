"""Preprocessing and augmentation (section 3.1 of the paper), as batched tensor operations.

The paper resizes the short side of each ImageNet image to 256, takes the centre 256x256 crop,
subtracts the per-pixel mean, and trains on 224x224 sub-crops (the four corners and the centre)
with horizontal flips. :func:`paper_crops` is that augmentation at any image size: a crop of
``224/256`` of the side at one of the five positions, optionally mirrored, resized back to the
network's input size. :func:`normalize` / :func:`denormalize` map images in [0, 1] to the model's
input and back (for display).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ZFCoreError
from ..profiles import get_profile

__all__ = [
    "TransformError",
    "TransformTypeError",
    "normalize",
    "denormalize",
    "normalization",
    "paper_crops",
    "CROP_FRACTION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SCENES_MEAN",
    "SCENES_STD",
    "crop_choices",
]


class TransformError(ZFCoreError, ValueError):
    """An image tensor of the wrong shape, or a crop position that does not exist."""


class TransformTypeError(TransformError, TypeError):
    """An argument that is not an image tensor."""


#: 224 / 256: the paper's training crop as a fraction of the resized image (section 3.1).
CROP_FRACTION = 224 / 256
#: torchvision's normalisation, used with its pretrained weights (and on real photos).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Per-channel statistics of the procedural scenes (measured over their training split;
#: tests/test_data_scenes.py re-measures them).
SCENES_MEAN = (0.465, 0.478, 0.476)
SCENES_STD = (0.242, 0.243, 0.244)


def _profile(profile):

    return get_profile(profile)


def normalization(profile) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel for ``profile``'s data: the scenes' own statistics for
    procedural profiles, torchvision's ImageNet statistics for real photos."""
    p = _profile(profile)
    if p.dataset == "scenes":
        return SCENES_MEAN, SCENES_STD
    return IMAGENET_MEAN, IMAGENET_STD


def _check_images(x, name):
    if not isinstance(x, torch.Tensor):
        raise TransformTypeError(
            f"{name} must be a torch.Tensor of shape (N, 3, H, W) or (3, H, W), "
            f"not {type(x).__name__}"
        )
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise TransformError(
            f"{name} must have shape (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}"
        )


def normalize(images01: torch.Tensor, profile) -> torch.Tensor:
    """Images in [0, 1], (N, 3, H, W) or (3, H, W), to the model's input for ``profile``."""
    _check_images(images01, "images01")
    mean, std = normalization(profile)
    m = torch.tensor(mean, dtype=images01.dtype, device=images01.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=images01.dtype, device=images01.device).view(3, 1, 1)
    return (images01 - m) / s


def denormalize(x: torch.Tensor, profile) -> torch.Tensor:
    """Model input back to images in [0, 1] (clamped) for display."""
    _check_images(x, "x")
    mean, std = normalization(profile)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * s + m).clamp(0, 1)


def crop_choices(seed: int, epoch: int, indices) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic augmentation choices per image: crop position 0-4 (centre, then the four
    corners) and a mirror flag, a pure function of ``(seed, epoch, index)``."""
    u = np.array(
        [
            np.random.default_rng([int(seed), 7, int(epoch), int(i)]).random(2)
            for i in np.asarray(indices).reshape(-1)
        ]
    ).reshape(-1, 2)
    return np.minimum(np.floor(u[:, 0] * 5), 4).astype(np.int64), u[:, 1] < 0.5


def paper_crops(
    images: torch.Tensor,
    position,
    flip,
    fraction: float = CROP_FRACTION,
) -> torch.Tensor:
    """The paper's 10 training views at the images' own size (section 3.1).

    ``position[i]`` picks the crop of image ``i``: 0 centre, 1 top-left, 2 top-right,
    3 bottom-left, 4 bottom-right; ``flip[i]`` mirrors it. The crop covers ``fraction`` of the
    side and is resized back to the input size, so the network's input size never changes.
    """
    _check_images(images, "images")
    x = images if images.dim() == 4 else images.unsqueeze(0)
    N, _, H, W = x.shape
    pos = torch.as_tensor(np.asarray(position), dtype=torch.int64).reshape(-1)
    fl = torch.as_tensor(np.asarray(flip), dtype=torch.bool).reshape(-1)
    if pos.numel() != N or fl.numel() != N:
        raise TransformError(
            f"need one crop position and one flip flag per image ({N}), got "
            f"{pos.numel()} and {fl.numel()}"
        )
    if ((pos < 0) | (pos > 4)).any():
        raise TransformError("crop positions are 0 (centre), 1-4 (corners)")
    ch, cw = max(1, round(H * fraction)), max(1, round(W * fraction))
    y0 = torch.tensor([(H - ch) // 2, 0, 0, H - ch, H - ch])[pos]
    x0 = torch.tensor([(W - cw) // 2, 0, W - cw, 0, W - cw])[pos]
    dev = x.device  # the crop runs where the images are (a GPU in training)
    y0, x0, fl = (t.to(dev, non_blocking=True) for t in (y0, x0, fl))
    rows = (y0.view(N, 1) + torch.arange(ch, device=dev).view(1, ch)).view(N, 1, ch, 1)
    cols = (x0.view(N, 1) + torch.arange(cw, device=dev).view(1, cw)).view(N, 1, 1, cw)
    n = torch.arange(N, device=dev).view(N, 1, 1, 1)
    c = torch.arange(3, device=dev).view(1, 3, 1, 1)
    crops = x[n, c, rows, cols]
    crops = torch.where(fl.view(N, 1, 1, 1), crops.flip(-1), crops)
    if (ch, cw) != (H, W):
        crops = F.interpolate(crops, size=(H, W), mode="bilinear", align_corners=False)
    return crops if images.dim() == 4 else crops[0]
