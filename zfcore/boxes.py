"""Object boxes, one convention for the whole package.

A box is ``(x0, y0, x1, y1)`` in pixels of the image it belongs to, half-open like a slice: a
point ``(x, y)`` lies inside when ``x0 <= x < x1`` and ``y0 <= y < y1``, and a pixel ``(i, j)``
(row, column) lies inside when its centre ``(j + 0.5, i + 0.5)`` does. So a box ``(0, 0, W, H)``
holds every pixel of a ``W x H`` image exactly once, and two boxes that share an edge share no
pixel. Section 4 reads Figs. 2 and 7 as "the projections and the occlusion sensitivity sit on the
object"; every number of that kind (energy of a projection inside the box, the occluder position
that hurts most inside the box, the box's share of the image as chance) is computed here.
"""

from __future__ import annotations

import torch

from .errors import ZFCoreError

__all__ = [
    "BoxError",
    "as_boxes",
    "points_in_boxes",
    "inside_interval",
    "box_masks",
    "energy_in_boxes",
    "box_area_share",
]


class BoxError(ZFCoreError, ValueError):
    """Boxes of the wrong shape, or a different number of boxes than of images."""


def as_boxes(boxes, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(N, 4)`` boxes ``(x0, y0, x1, y1)`` from anything shaped ``(4,)`` or ``(N, 4)``."""
    b = torch.as_tensor(boxes, dtype=dtype, device=device)
    if b.dim() == 1:
        b = b[None]
    if b.dim() != 2 or b.shape[1] != 4:
        raise BoxError(
            f"boxes must be (N, 4) as (x0, y0, x1, y1) in pixels, got shape {tuple(b.shape)}"
        )
    return b


def inside_interval(coords: torch.Tensor, lo, hi) -> torch.Tensor:
    """Whether each coordinate lies in the half-open interval ``[lo, hi)``."""
    return (coords >= lo) & (coords < hi)


def points_in_boxes(points, boxes) -> torch.Tensor:
    """``(N,)`` bool: whether point ``points[i] = (x, y)`` lies inside ``boxes[i]``."""
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    b = as_boxes(boxes, dtype=torch.float64)
    if len(p) != len(b):
        raise BoxError(f"{len(p)} points but {len(b)} boxes: pass one box per point")
    return inside_interval(p[:, 0], b[:, 0], b[:, 2]) & inside_interval(p[:, 1], b[:, 1], b[:, 3])


def box_masks(boxes, h: int, w: int, device=None) -> torch.Tensor:
    """``(N, h, w)`` bool: the pixels of an ``h x w`` image whose centre lies inside each box."""
    b = as_boxes(boxes, device=device)
    ys = torch.arange(h, dtype=torch.float32, device=b.device).view(1, h, 1) + 0.5
    xs = torch.arange(w, dtype=torch.float32, device=b.device).view(1, 1, w) + 0.5
    x0, y0, x1, y1 = (b[:, i].view(-1, 1, 1) for i in range(4))
    return inside_interval(xs, x0, x1) & inside_interval(ys, y0, y1)


def energy_in_boxes(pixels: torch.Tensor, boxes) -> torch.Tensor:
    """``(R,)``: the share of each projection's energy (squared values summed over channels) on
    the pixels inside its box; NaN for an all-zero projection. ``pixels`` is ``(R, C, H, W)``."""
    if pixels.dim() != 4:
        raise BoxError(f"pixels must be (R, C, H, W), got {tuple(pixels.shape)}")
    e = pixels.detach().float().pow(2).sum(1)
    mask = box_masks(boxes, e.shape[-2], e.shape[-1], e.device)
    if mask.shape[0] != e.shape[0]:
        raise BoxError(f"{e.shape[0]} projections but {mask.shape[0]} boxes: pass one box each")
    total = e.flatten(1).sum(1)
    return (e * mask).flatten(1).sum(1) / total.where(total > 0, total.new_tensor(float("nan")))


def box_area_share(boxes, size) -> torch.Tensor:
    """``(R,)``: the share of an image of ``size`` (int or ``(H, W)``) inside each box: the energy
    share a projection spread evenly over the image would have (the chance level)."""
    h, w = (size, size) if isinstance(size, int) else size
    return box_masks(boxes, h, w).flatten(1).float().mean(1)
