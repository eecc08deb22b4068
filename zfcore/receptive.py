"""Analytic receptive fields: which input pixels an activation can see.

Section 2.1 and Fig. 2 of Zeiler & Fergus (2014) show each top-9 activation beside "the
corresponding image patches"; those patches are the activation's receptive field. This module
computes that field exactly from the layer arithmetic (kernel, stride, padding, dilation) by walking
the model's modules in forward order, for every supported model (ZFNet and its scaled versions,
Krizhevsky's layout, the Table 3 variants, torchvision's AlexNet and VGG16) through the common
``layer1`` ... ``layer7`` naming of :mod:`zfcore.models`.

Convention. Activation ``i`` (0-based, along one axis) of a layer sees the input pixels
``[offset + i * stride, offset + i * stride + size)`` (end exclusive). ``offset`` is negative when
padding reaches outside the image; :meth:`ReceptiveField.box` clips to the image. A fully
connected layer (``layer6``, ``layer7``, ``logits``) sees the whole image: its field is marked
``is_global``.

The occlusion analysis (Fig. 7) needs the inverse map: which activations an occluder can change
(:func:`affected_positions`), so it only recomputes that cone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import ZFCoreError
from .models import LayerError, layer_key, layer_names, leaf_modules

__all__ = [
    "ReceptiveField",
    "receptive_field",
    "receptive_fields",
    "affected_positions",
    "crop_patch",
    "crop_patches",
    "ReceptiveFieldError",
    "input_problem",
]


class ReceptiveFieldError(ZFCoreError, ValueError):
    """A module whose geometry cannot be composed analytically (or a bad position/box)."""


@dataclass(frozen=True)
class ReceptiveField:
    """Size, stride (jump between neighbouring activations) and offset of a layer's field, in
    input pixels. Activation ``(y, x)`` sees rows ``offset + y*stride`` ... ``+ size - 1`` and the
    same columns. ``is_global`` marks fully connected layers, which see the whole image."""

    size: int
    stride: int
    offset: int
    is_global: bool = False

    def span(self, i: int, image_size: int) -> tuple[int, int]:
        """``(start, stop)`` of activation ``i``'s field along one axis, clipped to the image."""
        if self.is_global:
            return 0, image_size
        start = self.offset + int(i) * self.stride
        return max(0, start), min(image_size, start + self.size)

    def box(self, y: int, x: int, image_size: "int | tuple[int, int]") -> tuple[int, int, int, int]:
        """The image box ``(x0, y0, x1, y1)`` (pixels, end exclusive, clipped to the image) seen
        by the activation at ``(y, x)``; the same convention as the data sets' object boxes."""
        h, w = _pair(image_size)
        y0, y1 = self.span(y, h)
        x0, x1 = self.span(x, w)
        if y1 <= y0 or x1 <= x0:
            raise ReceptiveFieldError(
                f"activation ({y}, {x}) lies outside a {h}x{w} image for {self}: pass a position "
                f"inside the layer's output map"
            )
        return x0, y0, x1, y1

    def centre(self, y: int, x: int) -> tuple[float, float]:
        """Centre ``(x, y)`` of the (unclipped) field of activation ``(y, x)``, in pixels."""
        c = (self.size - 1) / 2
        return self.offset + x * self.stride + c, self.offset + y * self.stride + c


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ReceptiveFieldError(
                f"expected an int or a pair (height, width), got {v!r}: give one side for a "
                f"square or two"
            )
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _square(v, what: str, module: nn.Module) -> int:
    a, b = _pair(v)
    if a != b:
        raise ReceptiveFieldError(
            f"{type(module).__name__} has a non-square {what} {v!r}: "
            f"receptive fields are computed for square geometry only"
        )
    return a


# Modules that do not move or widen the field (elementwise or across channels only).
_SPATIAL_IDENTITY = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.BatchNorm2d,
    nn.GroupNorm,
)
# Modules after which every unit sees the whole image.
_GLOBALISING = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _compose(rf: ReceptiveField, m: nn.Module) -> ReceptiveField:
    if rf.is_global or isinstance(m, _SPATIAL_IDENTITY):
        return rf
    if isinstance(m, _GLOBALISING):
        return ReceptiveField(rf.size, rf.stride, rf.offset, is_global=True)
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _square(m.kernel_size, "kernel", m)
        s = _square(m.stride if m.stride is not None else k, "stride", m)
        p = _square(m.padding, "padding", m) if not isinstance(m.padding, str) else None
        if p is None:
            if m.padding == "valid":
                p = 0
            else:  # "same" with stride 1
                d = _square(m.dilation, "dilation", m)
                p = d * (k - 1) // 2
        d = _square(getattr(m, "dilation", 1), "dilation", m)
        k_eff = d * (k - 1) + 1
        return ReceptiveField(
            size=rf.size + (k_eff - 1) * rf.stride,
            stride=rf.stride * s,
            offset=rf.offset - p * rf.stride,
        )
    raise ReceptiveFieldError(
        f"cannot compose the receptive field through {type(m).__name__}: supported are Conv2d, "
        f"MaxPool2d, AvgPool2d, elementwise and normalisation layers, and fully connected layers"
    )


def receptive_field(model: nn.Module, layer: "str | int") -> ReceptiveField:
    """The analytic receptive field of ``layer`` ("layer1" ... "layer7", 1 ... 7, "logits").

    Walks ``model``'s leaf modules in registration order, which is forward order for every model
    of :mod:`zfcore.models`, composing ``size += (kernel-1) * stride_so_far``,
    ``offset -= padding * stride_so_far``, ``stride *= stride`` up to the module named by
    ``model.layer_names[layer]``. For ZFNet at 224 px (Fig. 3): layer 1 is 7 px wide with stride 2.
    """
    key = layer_key(layer, model)
    target = layer_names(model)[key]
    rf = ReceptiveField(size=1, stride=1, offset=0)
    for name, m in leaf_modules(model):
        rf = _compose(rf, m)
        if name == target:
            return rf
    raise LayerError(
        f"{type(model).__name__}.layer_names[{key!r}] = {target!r} is not a leaf "
        f"module of the model"
    )


def receptive_fields(model: nn.Module) -> dict[str, ReceptiveField]:
    """``{"layer1": ReceptiveField, ...}`` for every named layer of ``model``."""
    return {k: receptive_field(model, k) for k in layer_names(model)}


def affected_positions(
    rf: ReceptiveField, box: tuple[int, int, int, int], out_size: "int | tuple[int, int]"
) -> tuple[int, int, int, int]:
    """Activations whose field intersects the image box ``(x0, y0, x1, y1)`` (end exclusive).

    Returns ``(y0, y1, x0, x1)``, a slice range of the layer's ``out_size`` map (end exclusive,
    possibly empty). Everything outside it is unchanged when only the box's pixels change: the
    cone the occlusion experiment (Fig. 7) needs to recompute.
    """
    oh, ow = _pair(out_size)
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ReceptiveFieldError(
            f"empty box {box}: expected (x0, y0, x1, y1) with x1 > x0, y1 > y0"
        )
    if rf.is_global:
        return 0, oh, 0, ow

    def axis(a0: int, a1: int, n: int) -> tuple[int, int]:
        # field of i is [offset + i*s, offset + i*s + size); intersects [a0, a1) iff
        # offset + i*s < a1 and offset + i*s + size > a0.
        lo = -((-(a0 - rf.offset - rf.size + 1)) // rf.stride)  # ceil
        hi = (a1 - 1 - rf.offset) // rf.stride + 1  # floor + 1
        return max(0, lo), min(n, hi)

    ya, yb = axis(y0, y1, oh)
    xa, xb = axis(x0, x1, ow)
    return ya, max(ya, yb), xa, max(xa, xb)


def crop_patch(
    image: torch.Tensor, rf: ReceptiveField, y: int, x: int, fill: float = 0.0
) -> torch.Tensor:
    """The ``(C, size, size)`` patch of ``image`` (``(C, H, W)``) seen by activation ``(y, x)``.

    Always the full field size, like the patches of Fig. 2; parts of the field outside the image
    (padding) are ``fill``. For a global field the whole image is returned.
    """
    if image.dim() != 3:
        raise ReceptiveFieldError(
            f"crop_patch takes one (C, H, W) image, got shape {tuple(image.shape)}"
        )
    c, h, w = image.shape
    if rf.is_global:
        return image.clone()
    size = rf.size
    out = image.new_full((c, size, size), fill)
    ys, xs = rf.offset + int(y) * rf.stride, rf.offset + int(x) * rf.stride
    y0, y1 = max(0, ys), min(h, ys + size)
    x0, x1 = max(0, xs), min(w, xs + size)
    if y1 <= y0 or x1 <= x0:
        raise ReceptiveFieldError(
            f"activation ({y}, {x}) lies outside a {h}x{w} image for {rf}: pass a position "
            f"inside the layer's output map"
        )
    out[:, y0 - ys : y1 - ys, x0 - xs : x1 - xs] = image[:, y0:y1, x0:x1]
    return out


def crop_patches(
    images: torch.Tensor, rf: ReceptiveField, ys, xs, fill: float = 0.0
) -> torch.Tensor:
    """``(N, C, size, size)``: :func:`crop_patch` of ``images[i]`` at ``(ys[i], xs[i])``."""
    if images.dim() != 4:
        raise ReceptiveFieldError(
            f"crop_patches takes (N, C, H, W) images, got shape {tuple(images.shape)}"
        )
    ys, xs = list(map(int, ys)), list(map(int, xs))
    if not (len(ys) == len(xs) == len(images)):
        raise ReceptiveFieldError(
            f"need one (y, x) per image: got {len(images)} images, {len(ys)} ys, {len(xs)} xs; "
            f"give ys and xs of the images' length"
        )
    return torch.stack([crop_patch(im, rf, y, x, fill) for im, y, x in zip(images, ys, xs)])


# ---------------------------------------------------------------------------------------------
# Which inputs a layer can be computed on
# ---------------------------------------------------------------------------------------------


def _side_after(m: nn.Module, n: int) -> int:
    """Output side of ``m`` for an input side ``n`` (PyTorch's arithmetic, ceil_mode included)."""
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _square(m.kernel_size, "kernel", m)
        s = _square(m.stride if m.stride is not None else k, "stride", m)
        if isinstance(m.padding, str):
            return n if m.padding == "same" else _side_after_plain(n, k, s, 0, 1)
        p = _square(m.padding, "padding", m)
        d = _square(getattr(m, "dilation", 1), "dilation", m)
        span = n + 2 * p - d * (k - 1) - 1
        if getattr(m, "ceil_mode", False):
            out = (span + s - 1) // s + 1
            if (out - 1) * s >= n + p:  # the last window must start inside the input
                out -= 1
        else:
            out = span // s + 1
        return max(out, 0)
    return n


def _side_after_plain(n, k, s, p, d):
    span = n + 2 * p - d * (k - 1) - 1
    return span // s + 1 if span >= 0 else 0


def input_problem(model: nn.Module, layer: "str | int", images) -> "str | None":
    """Why ``images`` (``(N, C, H, W)``) cannot give ``layer`` of ``model``, or ``None`` if they
    can.

    Checks the channel count against the first convolution, that every convolution and pool up to
    ``layer`` gets at least one output position (the image is at least as large as the layer
    needs), and that a fully connected layer reached without an adaptive pool gets exactly
    ``model.input_size``. The message names the image size and the size needed.
    """
    names = layer_names(model)
    key = layer_key(layer, model)
    shape = tuple(images.shape)
    leaves = list(leaf_modules(model))
    first_conv = next((m for _, m in leaves if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and shape[1] != first_conv.in_channels:
        return (
            f"images have {shape[1]} channel(s) but the model takes {first_conv.in_channels} "
            f"input channels (give (N, {first_conv.in_channels}, H, W) images)"
        )
    h, w = shape[-2], shape[-1]
    target = names[key]
    adaptive = False
    for name, m in leaves:
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            adaptive = True
        if isinstance(m, nn.Linear) and not adaptive:
            need = getattr(model, "input_size", None)
            if need is not None and (shape[-2], shape[-1]) != (need, need):
                return (
                    f"{key} is fully connected: images must be {need}x{need} "
                    f"(model.input_size), got {shape[-2]}x{shape[-1]}"
                )
            break
        h, w = _side_after(m, h), _side_after(m, w)
        if h < 1 or w < 1:
            lo = next(n for n in range(1, 4097) if _reaches(leaves, target, n))
            return (
                f"a {shape[-2]}x{shape[-1]} image is too small for {key}: it needs at least "
                f"{lo}x{lo} pixels to give {key} one activation"
            )
        if name == target:
            break
    return None


def _reaches(leaves, target: str, n: int) -> bool:
    for name, m in leaves:
        if isinstance(m, (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return True
        n = _side_after(m, n)
        if n < 1:
            return False
        if name == target:
            return True
    return True
