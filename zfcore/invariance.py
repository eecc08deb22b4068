"""Image transforms that move their ground truth with them: vertical translation, scaling and
rotation of images with their object boxes and keypoints (the transforms of Fig. 5, section 4.4
of Zeiler & Fergus, 2014).

* :func:`transform_matrix`: the ``(N, 2, 3)`` affine map of a transform in pixel coordinates;
  :func:`transform_points` and :func:`transform_boxes` apply it to keypoints and boxes.
* :func:`transform_scenes` applies a transform to images and moves their object boxes and
  keypoints with them. Scaling and rotation are about the object's centre; the pixels the
  transform exposes take the image's mean colour; :attr:`Transformed.in_view` says whether the
  object stays inside the image.

Images may be in [0, 1] or already normalised: every transform here is affine per pixel with
weights summing to one, and the fill is the image's own mean, so it commutes with the per-channel
normalisation. Fig. 5's measurements on top of these transforms (feature distances, p(true
class), their summaries and verdicts) are :mod:`zfcore.paper.fig5_invariance`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import ZFCoreError

__all__ = [
    "TRANSFORMS",
    "IDENTITY",
    "InvarianceError",
    "check_transform",
    "check_images",
    "Transformed",
    "transform_matrix",
    "transform_scenes",
    "transform_points",
    "transform_boxes",
]

#: The transforms of Fig. 5: a vertical translation (pixels), a scaling (factor) and a rotation
#: (degrees).
TRANSFORMS = ("translate_y", "scale", "rotate")
#: The amount of each transform that leaves the image unchanged.
IDENTITY = {"translate_y": 0.0, "scale": 1.0, "rotate": 0.0}


class InvarianceError(ZFCoreError, ValueError):
    """Bad arguments to the invariance analysis (transform name, amounts, shapes)."""


def check_transform(kind: str) -> None:
    """Raise :class:`InvarianceError` unless ``kind`` is one of :data:`TRANSFORMS`."""
    if kind not in TRANSFORMS:
        raise InvarianceError(f"unknown transform {kind!r}: choose one of {TRANSFORMS}")


def check_images(images) -> torch.Tensor:
    """``images`` if it is an ``(N, C, H, W)`` tensor, else :class:`InvarianceError`."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise InvarianceError(
            f"images must be a (N, C, H, W) tensor, got "
            f"{getattr(images, 'shape', type(images).__name__)}"
        )
    return images


def transform_matrix(kind: str, amount: float, centre: torch.Tensor) -> torch.Tensor:
    """``(N, 2, 3)`` affine maps ``p_out = A[:, :, :2] @ p_in + A[:, :, 2]`` in pixel coordinates
    ``(x, y)`` (y down, pixel ``(i, j)`` centred at ``(j + .5, i + .5)``).

    ``translate_y``: ``amount`` pixels down; ``scale``: by ``amount`` about ``centre``;
    ``rotate``: ``amount`` degrees counter-clockwise (as seen on screen) about ``centre``.
    """
    check_transform(kind)
    if not isinstance(amount, numbers.Real) or not math.isfinite(amount):
        raise InvarianceError(f"amount must be a finite number, not {amount!r}")
    centre = torch.as_tensor(centre, dtype=torch.float64).reshape(-1, 2)
    N = centre.shape[0]
    A = torch.zeros(N, 2, 3, dtype=torch.float64)
    if kind == "translate_y":
        A[:, 0, 0] = A[:, 1, 1] = 1.0
        A[:, 1, 2] = float(amount)
        return A
    if kind == "scale":
        if amount <= 0:
            raise InvarianceError(f"a scale factor must be positive, not {amount}")
        M = torch.eye(2, dtype=torch.float64) * float(amount)
    else:
        t = math.radians(float(amount))
        # y points down: a counter-clockwise turn on screen maps (1, 0) to (cos t, -sin t).
        M = torch.tensor(
            [[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]], dtype=torch.float64
        )
    A[:, :, :2] = M
    A[:, :, 2] = centre - centre @ M.T
    return A


def transform_points(A: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply the ``(N, 2, 3)`` maps to ``(N, 2)`` points (NaN stays NaN)."""
    p = points.double()
    return (torch.einsum("nij,nj->ni", A[:, :, :2], p) + A[:, :, 2]).to(points.dtype)


def transform_boxes(A: torch.Tensor, boxes: torch.Tensor, size: "tuple[int, int]") -> torch.Tensor:
    """The axis-aligned box around each transformed box's four corners, clipped to the image."""
    b = boxes.double()
    corners = torch.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], 1)  # (N,4,2)
    moved = torch.einsum("nij,nkj->nki", A[:, :, :2], corners) + A[:, None, :, 2]
    H, W = size
    out = torch.stack(
        [
            moved[..., 0].amin(1),
            moved[..., 1].amin(1),
            moved[..., 0].amax(1),
            moved[..., 1].amax(1),
        ],
        1,
    )
    out[:, [0, 2]] = out[:, [0, 2]].clamp(0, W)
    out[:, [1, 3]] = out[:, [1, 3]].clamp(0, H)
    return out.to(boxes.dtype)


def _ellipse_in_view(A: torch.Tensor, boxes: torch.Tensor, size: "tuple[int, int]") -> torch.Tensor:
    """Whether the ellipse inscribed in each object box, transformed by ``A``, lies inside the
    image: for translation and scaling exactly "the box stays in view"; under rotation it does
    not count the box's empty corners (objects are round-ish, their boxes are not)."""
    b = boxes.double()
    c = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
    a, e = (b[:, 2] - b[:, 0]) / 2, (b[:, 3] - b[:, 1]) / 2
    M = A[:, :, :2]
    centre = torch.einsum("nij,nj->ni", M, c) + A[:, :, 2]
    hx = ((M[:, 0, 0] * a) ** 2 + (M[:, 0, 1] * e) ** 2).sqrt()
    hy = ((M[:, 1, 0] * a) ** 2 + (M[:, 1, 1] * e) ** 2).sqrt()
    H, W = size
    tol = 1e-6
    return (
        (centre[:, 0] - hx >= -tol)
        & (centre[:, 0] + hx <= W + tol)
        & (centre[:, 1] - hy >= -tol)
        & (centre[:, 1] + hy <= H + tol)
    )


@dataclass
class Transformed:
    """Transformed images with their moved ground truth. ``in_view`` is True where the object
    stays inside the image: the ellipse inscribed in its box, transformed (for translation and
    scaling, the box itself; under rotation the box's empty corners may leave)."""

    images: torch.Tensor
    boxes: torch.Tensor
    keypoints: dict = field(default_factory=dict)
    in_view: torch.Tensor = None


def transform_scenes(
    images: torch.Tensor,
    boxes: torch.Tensor,
    keypoints: "dict | None" = None,
    *,
    kind: str,
    amount: float,
    centre: "torch.Tensor | None" = None,
) -> Transformed:
    """Translate vertically, scale or rotate ``images`` (N, C, H, W) by ``amount`` (pixels, factor
    or degrees; see :func:`transform_matrix`), moving ``boxes`` (N, 4) ``(x0, y0, x1, y1)`` and
    ``keypoints`` ``{name: (N, 2)}`` with them. Scaling and rotation are about ``centre`` (N, 2),
    by default each object box's centre. Exposed pixels take each image's mean colour; sampling is
    bilinear."""
    images = check_images(images)
    N, C, H, W = images.shape
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    if boxes.shape[0] != N:
        raise InvarianceError(f"need one box per image: {N} images, {boxes.shape[0]} boxes")
    if centre is None:
        centre = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    A = transform_matrix(kind, amount, centre)
    if A.shape[0] == 1 and N > 1:
        A = A.expand(N, 2, 3)
    # Sample: each output pixel centre maps back through the inverse transform.
    Minv = torch.linalg.inv(A[:, :, :2])
    tinv = -torch.einsum("nij,nj->ni", Minv, A[:, :, 2])
    ys = torch.arange(H, dtype=torch.float64) + 0.5
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy], -1).reshape(1, -1, 2)  # (1, HW, 2)
    src = torch.einsum("nij,nkj->nki", Minv, pts.expand(N, -1, -1)) + tinv[:, None, :]
    grid = torch.stack([2 * src[..., 0] / W - 1, 2 * src[..., 1] / H - 1], -1)
    grid = grid.view(N, H, W, 2).to(images.dtype)
    mean = images.mean((2, 3), keepdim=True)
    out = (
        F.grid_sample(
            images - mean, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        + mean
    )
    in_view = _ellipse_in_view(A, boxes, (H, W))
    kps = {k: transform_points(A, torch.as_tensor(v)) for k, v in (keypoints or {}).items()}
    return Transformed(
        images=out, boxes=transform_boxes(A, boxes, (H, W)), keypoints=kps, in_view=in_view
    )
