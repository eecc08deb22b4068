"""Incremental inference for occlusion: recompute only the cone an occluder can change.

Section 4.2 and Fig. 7 of Zeiler & Fergus (2014) slide a grey square over the image and run the
network once per position. Almost all of each of those forward passes repeats the unoccluded one:
an occluder of ``w x w`` pixels can only change the activations whose receptive field overlaps it,
a cone that widens layer by layer. Krypton (Nakandala, Kumar and Papakonstantinou, SIGMOD 2019)
recomputes only that cone, layer by layer, reusing the unoccluded activations everywhere else.
This module implements that idea for any chain of ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d`` and
spatially pointwise layers (ReLU, local response normalisation, dropout in eval mode, ...), with
the fully connected layers run in full on the re-assembled maps.

How one chain step works, for a batch of occluder positions at once:

* every position carries a *patch*: the values of the changed region of the step's input, of a
  size shared by the batch, at a per-position offset;
* a window op (kernel ``k``, stride ``s``, padding ``p``) changes at most ``(h + k - 2) // s + 1``
  outputs per axis; the output region of that fixed size is placed to cover the changed outputs
  and clamped inside the map (Krypton's fixed-size patches, so the batch stays one tensor);
* its input window is gathered from the once-padded unoccluded input, the incoming patch is pasted
  into it, and the op runs on the window with no padding; the result is the next patch;
* pointwise ops (local response normalisation mixes channels, not positions) act on the patch;
* at the first op that is not spatially local (flatten, adaptive pooling that resizes, a fully
  connected layer) the patches are pasted into copies of the unoccluded map and the rest of the
  chain runs in full.

The result equals full recomputation up to float summation order (tested to 1e-4 in
``tests/test_incremental.py``). :func:`incremental_flop_bound` counts the multiply-adds
of the exact cone, the best any exact incremental scheme can do.

``precision="bf16"`` goes past that bound in time, not in multiply-adds: every convolution and
fully connected layer is computed as its unoccluded output (kept, exact) plus the layer applied
to the *change* of its input, ``conv(x0 + d) = conv(x0) + conv(d)``, and only ``conv(d)`` runs in
bfloat16, faster than float32 on CPUs with bfloat16 instructions (AVX512-BF16, AMX) and on
GPUs. Its rounding error scales with the change, which is small in deep layers, rather than with
the activations: on AlexNet's layout the logits' error stays well under that of running the
occluded pass in bfloat16 autocast (``tests/test_incremental.py``; ``python -m
benchmarks.occlusion`` reports the time and the error on real images).

The model runs in eval mode (:func:`zfcore.models.eval_mode`): dropout off, BatchNorm on its
running statistics, the caller's modes given back afterwards.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ZFCoreError
from .models import eval_mode, model_device, to_device

__all__ = [
    "IncrementalError",
    "linearize",
    "IncrementalForward",
    "IncrementalOutput",
    "OpGeometry",
    "chain_geometry",
    "cone_macs",
    "incremental_flop_bound",
    "FlopCount",
    "plan_batches",
    "PRECISIONS",
    "low_precision_is_fast",
]


#: Precisions of :meth:`IncrementalForward.run`: the dtype the changes are convolved in
#: (``None``: everything in float32, exact).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def low_precision_is_fast(device: "torch.device | str") -> bool:
    """Whether bfloat16 convolutions run natively on ``device`` (a CUDA GPU with bf16, or a CPU
    whose oneDNN supports bf16), so ``precision="bf16"`` saves time rather than costing it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class IncrementalError(ZFCoreError, ValueError):
    """A model or input the incremental engine cannot handle exactly (use ``incremental=False``)."""


# Modules that act on each spatial position separately (channel mixing allowed).
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.BatchNorm2d,
)


def linearize(model: nn.Module) -> list[nn.Module]:
    """The model's forward pass as a flat list of modules applied one after the other.

    Supported: an ``nn.Sequential``, or a network with ``features`` (a Sequential), an optional
    ``avgpool`` and a ``classifier`` applied as ``classifier(flatten(avgpool(features(x))))``: every
    model of :mod:`zfcore.models` (ZFNet, Krizhevsky's layout, torchvision's AlexNet and VGG16).
    :class:`IncrementalForward` checks the chain against ``model(x)`` before trusting it.
    """

    def flat(m: nn.Module) -> list[nn.Module]:
        if isinstance(m, nn.Sequential):
            return [leaf for child in m for leaf in flat(child)]
        return [m]

    if isinstance(model, nn.Sequential):
        return flat(model)
    features = getattr(model, "features", None)
    classifier = getattr(model, "classifier", None)
    if isinstance(features, nn.Module) and isinstance(classifier, nn.Module):
        chain = flat(features)
        avgpool = getattr(model, "avgpool", None)
        if isinstance(avgpool, nn.Module):
            chain.append(avgpool)
        return chain + [nn.Flatten(1)] + flat(classifier)
    raise IncrementalError(
        f"cannot read {type(model).__name__}'s forward pass as a chain of layers: incremental "
        f"occlusion supports nn.Sequential models and models with .features and .classifier "
        f"(the zfcore.models networks); pass incremental=False to recompute every position in full"
    )


@dataclass(frozen=True)
class OpGeometry:
    """How one chain step maps spatial positions. ``kind`` is ``"window"`` (a kernel sliding
    with ``stride`` over an input padded by ``padding``), ``"pointwise"``, ``"identity"`` or
    ``"dense"`` (not spatially local: from here on the chain runs in full). Sizes are
    ``(rows, cols)``."""

    kind: str  # "window", "pointwise", "identity" or "dense"
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pad_value: float = 0.0
    macs_per_output: int = 0  # multiply-adds per output position (all channels)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _geometry(op: nn.Module, x: torch.Tensor, y: torch.Tensor) -> OpGeometry:
    """Geometry of ``op`` given its unoccluded input ``x`` and output ``y`` (shapes decide)."""
    spatial = x.dim() == 4 and y.dim() == 4
    in_size = tuple(x.shape[-2:]) if x.dim() == 4 else (1, 1)
    out_size = tuple(y.shape[-2:]) if y.dim() == 4 else (1, 1)
    dense = OpGeometry(
        "dense",
        in_size,
        out_size,
        macs_per_output=(op.in_features * op.out_features if isinstance(op, nn.Linear) else 0),
    )
    if not spatial:
        return dense
    if isinstance(op, _POINTWISE):
        return OpGeometry("pointwise", in_size, out_size)
    if isinstance(op, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and in_size == out_size:
        # An adaptive pool to the size it is given is the identity (AlexNet's avgpool at 224 px);
        # applied to a smaller patch it would resize it, so the patch skips it.
        return OpGeometry("identity", in_size, out_size)
    if isinstance(op, nn.Conv2d):
        if (
            isinstance(op.padding, str)
            or _pair(op.dilation) != (1, 1)
            or op.padding_mode != "zeros"
        ):
            return dense
        k = _pair(op.kernel_size)
        macs = op.out_channels * (op.in_channels // op.groups) * k[0] * k[1]
        return OpGeometry(
            "window", in_size, out_size, k, _pair(op.stride), _pair(op.padding), 0.0, macs
        )
    if isinstance(op, nn.MaxPool2d):
        if _pair(op.dilation) != (1, 1) or op.return_indices:
            return dense
        k = _pair(op.kernel_size)
        return OpGeometry(
            "window",
            in_size,
            out_size,
            k,
            _pair(op.stride or op.kernel_size),
            _pair(op.padding),
            float("-inf"),
        )
    if isinstance(op, nn.AvgPool2d):
        if _pair(op.padding) != (0, 0) or op.ceil_mode or op.divisor_override is not None:
            return dense
        k = _pair(op.kernel_size)
        return OpGeometry("window", in_size, out_size, k, _pair(op.stride or op.kernel_size))
    return dense


def _changed_range_t(
    start: torch.Tensor, length: torch.Tensor, k: int, s: int, p: int, n_out: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``[lo, hi)`` of a window op (kernel ``k``, stride ``s``, padding ``p``) whose
    window overlaps the changed inputs ``[start, start + length)``, per run; an empty run stays
    empty."""
    lo = (-((-(start + p - k + 1)) // s)).clamp(min=0)
    hi = ((start + length - 1 + p) // s + 1).clamp(max=n_out)
    hi = torch.where(length > 0, torch.maximum(hi, lo), lo)
    return lo, hi


def _truncate_run(
    lo: torch.Tensor, hi: torch.Tensor, truncate: float, n_out: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Krypton's projective-field thresholding along one axis: a changed run ``[lo, hi)`` longer
    than ``ceil(truncate * n_out)`` outputs is cut to that length around its centre (the change of
    a deep layer is mostly a core of its theoretical cone); ``truncate >= 1`` leaves it exact."""
    if truncate >= 1:
        return lo, hi
    cap = max(1, math.ceil(truncate * n_out))
    length = hi - lo
    lo = lo + (length - cap).clamp(min=0) // 2
    return lo, lo + length.clamp(max=cap)


def _rows_view(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N*H*W, C)``: one row of channels per position (free when ``x`` is
    channels-last, as mkldnn convolutions return it)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _gather_paste(
    source_rows: torch.Tensor,
    source_width: int,
    patch: torch.Tensor,
    start_r: torch.Tensor,
    start_c: torch.Tensor,
    h: int,
    w: int,
    patch_r: torch.Tensor,
    patch_c: torch.Tensor,
) -> torch.Tensor:
    """``(B, C, h, w)`` windows of a map, item ``b`` starting at ``(start_r[b], start_c[b])``,
    with ``patch[b]`` written over them at window offset ``(patch_r[b], patch_c[b])``.

    ``source_rows`` is the map as ``(H*W, C)`` rows (width ``source_width``). Gathering and
    pasting are one ``index_select`` from the map's rows followed by the patch's rows, so each
    window element is copied once. Parts of the patch outside the window are dropped.
    ``source_width=0`` pastes on a blank canvas instead: ``source_rows`` is its one row (e.g.
    zeros), repeated wherever the patch is not. Returns a channels-last tensor (what mkldnn
    convolutions prefer).
    """
    B, C, ph, pw = patch.shape
    dev = source_rows.device
    i = torch.arange(h, device=dev)
    j = torch.arange(w, device=dev)
    base = (
        torch.zeros(B, h, w, dtype=torch.long, device=dev)
        if source_width == 0
        else _window_index(start_r, start_c, h, w, source_width)
    )
    pi = i[None, :, None] - patch_r[:, None, None]  # (B, h, 1)
    pj = j[None, None, :] - patch_c[:, None, None]  # (B, 1, w)
    inside = (pi >= 0) & (pi < ph) & (pj >= 0) & (pj < pw)
    from_patch = (
        source_rows.shape[0]
        + torch.arange(B, device=dev)[:, None, None] * (ph * pw)
        + pi.clamp(0, ph - 1) * pw
        + pj.clamp(0, pw - 1)
    )
    index = torch.where(inside, from_patch, base).reshape(-1)
    rows = torch.cat([source_rows, _rows_view(patch)]).index_select(0, index)
    return rows.view(B, h, w, C).permute(0, 3, 1, 2)


def _window_index(
    start_r: torch.Tensor, start_c: torch.Tensor, h: int, w: int, width: int
) -> torch.Tensor:
    """``(B, h, w)`` row indices, in a map of ``width`` columns stored as rows, of the ``h x w``
    windows starting at ``(start_r[b], start_c[b])``."""
    i = torch.arange(h, device=start_r.device)
    j = torch.arange(w, device=start_r.device)
    return (
        (start_r[:, None, None] + i[None, :, None]) * width
        + start_c[:, None, None]
        + j[None, None, :]
    )


def _gather(
    source_rows: torch.Tensor,
    source_width: int,
    start_r: torch.Tensor,
    start_c: torch.Tensor,
    h: int,
    w: int,
) -> torch.Tensor:
    """``(B, C, h, w)`` windows of a map given as ``(H*W, C)`` rows (width ``source_width``), item
    ``b`` starting at ``(start_r[b], start_c[b])``; channels-last like :func:`_gather_paste`."""
    index = _window_index(start_r, start_c, h, w, source_width).reshape(-1)
    return source_rows.index_select(0, index).view(len(start_r), h, w, -1).permute(0, 3, 1, 2)


def _region_sums(
    integral: torch.Tensor, r: torch.Tensor, c: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Per-channel sums ``(B, C)`` of the ``h x w`` regions at ``(r[b], c[b])`` from an integral
    image ``(C, H+1, W+1)`` (double precision, so large maps lose nothing)."""
    return (
        integral[:, r + h, c + w]
        - integral[:, r, c + w]
        - integral[:, r + h, c]
        + integral[:, r, c]
    ).T


def _integral(x: torch.Tensor) -> torch.Tensor:
    """Integral image of a (C, H, W) map: ``out[:, i, j]`` = sum of ``x[:, :i, :j]``."""
    return F.pad(x.double().cumsum(1).cumsum(2), (1, 0, 1, 0))


class IncrementalForward:
    """The unoccluded forward pass of one image, kept layer by layer, and a method that
    recomputes only what a batch of changed input patches can reach.

    >>> engine = IncrementalForward(model, image)                  # doctest: +SKIP
    >>> out = engine.run(patches, rows, cols)   # patches (B, 3, h, w) at (rows[b], cols[b])
    >>> out.logits, out.probe_totals[probe]     # (B, classes), (B, channels)

    ``probes`` are modules of the model (e.g. ``get_layer(model, "layer5")``) whose output is
    summarised per position as the total activation of each channel (Fig. 7b).
    """

    def __init__(
        self,
        model: nn.Module,
        image: torch.Tensor,
        probes: Sequence[nn.Module] = (),
        check_tolerance: float = 1e-4,
    ):
        if image.dim() == 3:
            image = image[None]
        if image.dim() != 4 or image.shape[0] != 1:
            raise IncrementalError(
                f"IncrementalForward takes one image (3, H, W) or (1, 3, H, W), "
                f"got shape {tuple(image.shape)}"
            )
        self.ops = linearize(model)
        self.probes = list(probes)
        ids = {id(op) for op in self.ops}
        for p in self.probes:
            if id(p) not in ids:
                raise IncrementalError(
                    f"probe {type(p).__name__} is not a step of the model's forward chain"
                )
        self.model = model
        with torch.inference_mode(), eval_mode(model):
            acts = [image]
            for op in self.ops:
                acts.append(op(acts[-1]))
            reference = model(image)
        if acts[-1].shape != reference.shape or not torch.allclose(
            acts[-1], reference, atol=check_tolerance, rtol=check_tolerance
        ):
            raise IncrementalError(
                f"{type(model).__name__}'s forward pass is not the chain of its layers (the "
                f"outputs differ), so incremental occlusion would be wrong; pass incremental=False"
            )
        self.acts = acts
        self.geometry = [_geometry(op, acts[i], acts[i + 1]) for i, op in enumerate(self.ops)]
        # The spatially local prefix of the chain (everything before the first dense op).
        self.n_local = next(
            (i for i, g in enumerate(self.geometry) if g.kind == "dense"), len(self.ops)
        )
        self._padded: dict = {}
        #: Multiply-adds computed by :meth:`run` so far (convolutions and linear layers).
        self.macs_computed = 0.0
        self._probe_index = {
            id(op): i for i, op in enumerate(self.ops) if id(op) in {id(p) for p in self.probes}
        }
        self.probe_clean_totals = {
            i: acts[i + 1][0].flatten(1).sum(1) if acts[i + 1].dim() == 4 else acts[i + 1][0]
            for i in self._probe_index.values()
        }

    @property
    def logits(self) -> torch.Tensor:
        """The unoccluded output (1, classes)."""
        return self.acts[-1]

    def _memo(self, key, make):
        """``make()``, computed once per engine under ``key`` (padded maps, integral images, row
        views, reduced-precision weights)."""
        if key not in self._padded:
            self._padded[key] = make()
        return self._padded[key]

    def _integral(self, i: int) -> torch.Tensor:
        return self._memo(("integral", i), lambda: _integral(self.acts[i][0]))

    def _padded_input(self, i: int) -> tuple[torch.Tensor, int]:
        """Input of window op ``i`` as ``(rows (Hp*Wp, C), Wp)``, padded once so every window the
        op reads lies inside."""
        if i not in self._padded:
            g = self.geometry[i]
            x = self.acts[i][0]
            pads = []
            for axis in (1, 0):  # F.pad order: last dim first
                n, m, k, s, p = (
                    g.in_size[axis],
                    g.out_size[axis],
                    g.kernel[axis],
                    g.stride[axis],
                    g.padding[axis],
                )
                right = max(0, (m - 1) * s + k - p - n)
                pads += [p, right]
            xp = F.pad(x, pads, value=g.pad_value) if any(pads) else x
            self._padded[i] = (_rows_view(xp[None]).contiguous(), xp.shape[-1])
        return self._padded[i]

    def _rows(self, i: int) -> tuple[torch.Tensor, int]:
        """Unoccluded map ``i`` (the chain's input for ``i = 0``) as ``(rows (H*W, C), W)``."""
        return self._memo(
            ("rows", i), lambda: (_rows_view(self.acts[i]).contiguous(), self.acts[i].shape[-1])
        )

    def _delta_conv(
        self,
        i: int,
        x: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        start_r: torch.Tensor,
        start_c: torch.Tensor,
        win: tuple[int, int],
        out_r: torch.Tensor,
        out_c: torch.Tensor,
        out_size: tuple[int, int],
        low: torch.dtype,
    ) -> torch.Tensor:
        """Convolution ``i`` of the changed input, as its unoccluded output plus the convolution
        of the change: ``conv(x0 + d) = conv(x0) + conv(d)`` (no bias). The unoccluded part is
        read, exact, from the kept forward pass; only ``conv(d)`` runs in ``low`` precision, so
        its rounding error scales with the change ``d``, not with the activations."""
        op, g = self.ops[i], self.geometry[i]
        in_rows, in_width = self._rows(i)
        change = (x - _gather(in_rows, in_width, rows, cols, *x.shape[-2:])).to(low)
        blank = self._memo(("zero", x.shape[1], low), lambda: x.new_zeros(1, x.shape[1], dtype=low))
        d = _gather_paste(
            blank,
            0,
            change,
            start_r,
            start_c,
            *win,
            rows + g.padding[0] - start_r,
            cols + g.padding[1] - start_c,
        )
        weight = self._memo(("weight", i, low), lambda: op.weight.detach().to(low))
        dy = F.conv2d(d, weight, None, op.stride, 0, 1, op.groups)
        out_rows, out_width = self._rows(i + 1)
        return _gather(out_rows, out_width, out_r, out_c, *out_size).add_(dy)

    def _delta_linear(self, j: int, x: torch.Tensor, low: torch.dtype) -> torch.Tensor:
        """Fully connected layer ``j`` as its unoccluded output plus ``W (x - x0)`` in ``low``
        precision (see :meth:`_delta_conv`)."""
        weight = self._memo(("weight", j, low), lambda: self.ops[j].weight.detach().to(low))
        return torch.add(self.acts[j + 1], F.linear((x - self.acts[j]).to(low), weight))

    def _window_op(self, i: int, window: torch.Tensor) -> torch.Tensor:
        op = self.ops[i]
        if isinstance(op, nn.Conv2d):
            return F.conv2d(window, op.weight, op.bias, op.stride, 0, 1, op.groups)
        g = self.geometry[i]
        if isinstance(op, nn.MaxPool2d):
            return F.max_pool2d(window, g.kernel, g.stride)
        return F.avg_pool2d(window, g.kernel, g.stride)

    def run(
        self,
        patches: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        truncate: float = 1.0,
        precision: str = "fp32",
    ) -> "IncrementalOutput":
        """Outputs for ``B`` modified inputs: the unoccluded image with ``patches[b]`` (B, C, h, w)
        written at rows ``rows[b]:rows[b]+h`` and columns ``cols[b]:cols[b]+w``.

        ``truncate`` < 1 approximates (Krypton's projective-field thresholding): at every window
        op the changed region is cut to at most ``ceil(truncate * output side)`` per axis around
        its centre and everything outside it keeps its unoccluded value. 1 (default) is exact.
        ``precision`` (:data:`PRECISIONS`): ``"fp32"`` (default) is exact; ``"bf16"`` computes each
        convolution's and fully connected layer's change in bfloat16 (see the module's docstring);
        pools and pointwise layers stay float32. The model runs in eval mode."""
        with torch.inference_mode(), eval_mode(self.model):
            return self._run(patches, rows, cols, truncate, precision)

    def _run(self, patches, rows, cols, truncate: float, precision: str) -> "IncrementalOutput":
        if not 0 < truncate <= 1:
            raise IncrementalError(f"truncate must be in (0, 1] (1: exact), not {truncate!r}")
        if precision not in PRECISIONS:
            raise IncrementalError(
                f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}"
            )
        low = PRECISIONS[precision]
        device = self.acts[0].device
        # Positions are bookkeeping: kept on the host, where the cone of every layer is worked
        # out before anything runs (reading a patch size back from the GPU at every layer would
        # stall it), then moved to the device in one copy.
        rows = torch.as_tensor(rows, dtype=torch.long).to("cpu")
        cols = torch.as_tensor(cols, dtype=torch.long).to("cpu")
        patches = patches.to(device)
        B = patches.shape[0]
        H, W = self.acts[0].shape[-2:]
        h, w = patches.shape[-2:]
        if (rows < 0).any() or (cols < 0).any() or (rows + h > H).any() or (cols + w > W).any():
            raise IncrementalError(
                f"patches of {h}x{w} at the given offsets do not fit the {H}x{W} image"
            )
        sizes_at, offsets_at = self._plan_cones(rows, cols, h, w, truncate)
        moved = iter(to_device(torch.stack([rows, cols, *offsets_at]), device).unbind(0))
        rows, cols = next(moved), next(moved)
        totals: dict[nn.Module, torch.Tensor] = {}
        x = patches
        for i in range(self.n_local):
            g = self.geometry[i]
            if g.kind == "window":
                sizes, offsets = sizes_at[i], (next(moved), next(moved))
                win_h = (sizes[0] - 1) * g.stride[0] + g.kernel[0]
                win_w = (sizes[1] - 1) * g.stride[1] + g.kernel[1]
                start_r, start_c = offsets[0] * g.stride[0], offsets[1] * g.stride[1]
                if low is not None and isinstance(self.ops[i], nn.Conv2d):
                    x = self._delta_conv(
                        i,
                        x,
                        rows,
                        cols,
                        start_r,
                        start_c,
                        (win_h, win_w),
                        offsets[0],
                        offsets[1],
                        tuple(sizes),
                        low,
                    )
                else:
                    src, src_width = self._padded_input(i)
                    window = _gather_paste(
                        src,
                        src_width,
                        x,
                        start_r,
                        start_c,
                        win_h,
                        win_w,
                        rows + g.padding[0] - start_r,
                        cols + g.padding[1] - start_c,
                    )
                    x = self._window_op(i, window)
                self.macs_computed += g.macs_per_output * sizes[0] * sizes[1] * B
                rows, cols = offsets
            elif g.kind == "pointwise":
                x = self.ops[i](x)
            if i in self._probe_index.values():
                base = _region_sums(self._integral(i + 1), rows, cols, *x.shape[-2:])
                totals[self.ops[i]] = (
                    self.probe_clean_totals[i][None].double() + x.sum((2, 3)).double() - base
                ).float()
        # Re-assemble full maps and run the rest of the chain as usual.
        k = self.n_local
        if x.shape[-2:] == self.acts[k].shape[-2:]:
            full = x
        else:
            Hk, Wk = self.acts[k].shape[-2:]
            zero = torch.zeros_like(rows)
            full = _gather_paste(_rows_view(self.acts[k]), Wk, x, zero, zero, Hk, Wk, rows, cols)
            full = full.contiguous()
        for j in range(k, len(self.ops)):
            g = self.geometry[j]
            self.macs_computed += (
                g.macs_per_output * B * (g.out_size[0] * g.out_size[1] if g.kind != "dense" else 1)
            )
            if low is not None and isinstance(self.ops[j], nn.Linear):
                full = self._delta_linear(j, full, low)
            else:
                full = self.ops[j](full)
            if j in self._probe_index.values():
                totals[self.ops[j]] = full.flatten(2).sum(2) if full.dim() == 4 else full
        return IncrementalOutput(logits=full, probe_totals=totals)

    def _plan_cones(
        self, rows: torch.Tensor, cols: torch.Tensor, h: int, w: int, truncate: float
    ) -> tuple[dict, list]:
        """On the host, for every window op of the local prefix: the batch's patch size (Krypton's
        fixed-size patch, sized for the widest cone of the batch) ``{op: (rows, cols)}`` and the
        per-position output offsets of the patch, two ``(B,)`` tensors per op in chain order."""
        # The exact changed run per axis (start, length), tracked beside the computed patch.
        exact = [(rows, torch.full_like(rows, h)), (cols, torch.full_like(cols, w))]
        sizes_at, offsets_at = {}, []
        for i in range(self.n_local):
            g = self.geometry[i]
            if g.kind != "window":
                continue
            sizes = []
            for axis in (0, 1):
                start, length = exact[axis]
                lo, hi = _changed_range_t(
                    start, length, g.kernel[axis], g.stride[axis], g.padding[axis], g.out_size[axis]
                )
                lo, hi = _truncate_run(lo, hi, truncate, g.out_size[axis])
                exact[axis] = (lo, hi - lo)
                size = max(1, int((hi - lo).max()))
                offsets_at.append(lo.clamp(max=g.out_size[axis] - size))
                sizes.append(size)
            sizes_at[i] = tuple(sizes)
        return sizes_at, offsets_at


@dataclass
class IncrementalOutput:
    logits: torch.Tensor  # (B, classes)
    probe_totals: dict  # probe module -> (B, channels) total activation


def chain_geometry(model: nn.Module, image_size: "int | tuple[int, int]") -> list[OpGeometry]:
    """Per-step geometry of ``model``'s forward chain for an input of ``image_size`` pixels."""
    h, w = _pair(image_size)
    ops = linearize(model)
    first = next((op for op in ops if isinstance(op, nn.Conv2d)), None)
    x = torch.zeros(
        1, first.in_channels if first is not None else 3, h, w, device=model_device(model)
    )
    out = []
    with torch.inference_mode(), eval_mode(model):
        for op in ops:
            y = op(x)
            out.append(_geometry(op, x, y))
            x = y
    return out


@dataclass(frozen=True)
class FlopCount:
    """Multiply-adds (convolutions and fully connected layers) per occluder position: a full
    forward pass and the exact cone, the least any exact incremental scheme must compute."""

    full: float
    exact_cone: float

    @property
    def bound(self) -> float:
        """Speed-up bound of exact incremental inference: full / exact cone."""
        return self.full / self.exact_cone


def _full_macs(geometry: Sequence[OpGeometry]) -> float:
    return float(
        sum(
            g.macs_per_output * (g.out_size[0] * g.out_size[1] if g.kind != "dense" else 1)
            for g in geometry
        )
    )


def cone_macs(
    geometry: Sequence[OpGeometry],
    rows,
    cols,
    window: "int | tuple[int, int]",
    truncate: float = 1.0,
) -> torch.Tensor:
    """Multiply-adds of the exact cone of occluders of ``window`` pixels at ``rows``/``cols``
    (one value per position): at every convolution, only the outputs whose window overlaps the
    changed part of its input; after the first non-local step everything, as any exact scheme must.
    ``truncate`` < 1 counts the truncated cone of :meth:`IncrementalForward.run` instead."""
    wh, ww = _pair(window)
    rows = torch.as_tensor(rows, dtype=torch.long)
    cols = torch.as_tensor(cols, dtype=torch.long)
    runs = [(rows, torch.full_like(rows, wh)), (cols, torch.full_like(cols, ww))]
    total = torch.zeros(len(rows), dtype=torch.float64)
    dense = False
    for g in geometry:
        dense = dense or g.kind == "dense"
        if dense:
            total += g.macs_per_output * (g.out_size[0] * g.out_size[1] if g.kind != "dense" else 1)
        elif g.kind == "window":
            for axis in (0, 1):
                lo, hi = _changed_range_t(
                    *runs[axis], g.kernel[axis], g.stride[axis], g.padding[axis], g.out_size[axis]
                )
                lo, hi = _truncate_run(lo, hi, truncate, g.out_size[axis])
                runs[axis] = (lo, hi - lo)
            total += g.macs_per_output * (runs[0][1] * runs[1][1]).double()
    return total


def incremental_flop_bound(
    model: nn.Module,
    image_size: "int | tuple[int, int]",
    rows,
    cols,
    window: "int | tuple[int, int]",
    truncate: float = 1.0,
) -> FlopCount:
    """Average multiply-adds per occluder position of a full pass and of the exact cone
    (:func:`cone_macs`) for occluders of ``window`` pixels at ``rows``/``cols`` (top-left corners);
    with ``truncate`` < 1, of the truncated cone."""
    geo = chain_geometry(model, image_size)
    return FlopCount(
        full=_full_macs(geo), exact_cone=float(cone_macs(geo, rows, cols, window, truncate).mean())
    )


def _axis_profile(
    geometry: Sequence[OpGeometry],
    coords: torch.Tensor,
    length: int,
    axis: int,
    truncate: float = 1.0,
) -> torch.Tensor:
    """Changed-run lengths (P, L) at each of the L local window ops, for runs of ``length``
    starting at ``coords`` along ``axis`` (exact, or truncated as
    :meth:`IncrementalForward.run`)."""
    run = (coords, torch.full_like(coords, length))
    out = []
    for g in geometry:
        if g.kind == "dense":
            break
        if g.kind == "window":
            lo, hi = _changed_range_t(
                *run, g.kernel[axis], g.stride[axis], g.padding[axis], g.out_size[axis]
            )
            lo, hi = _truncate_run(lo, hi, truncate, g.out_size[axis])
            run = (lo, hi - lo)
            out.append(hi - lo)
    return torch.stack(out, 1) if out else torch.zeros(len(coords), 0, dtype=torch.long)


def _group_axis(profile: np.ndarray, weights: np.ndarray, groups: int) -> list[np.ndarray]:
    """Partition the coordinates of one axis into ``groups`` sets whose batched cost (each op
    computed at the largest run of its set, times ``weights``) is least, by greedy merging of
    the classes of equal profile."""
    uniq, inverse = np.unique(profile, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sets = [(np.nonzero(inverse == u)[0], uniq[u].astype(np.float64)) for u in range(len(uniq))]
    while len(sets) > groups:
        sums = [len(m) * mx for m, mx in sets]
        total = np.sum(sums, axis=0)
        best = None
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                merged = (len(sets[i][0]) + len(sets[j][0])) * np.maximum(sets[i][1], sets[j][1])
                c = float(weights @ (total - sums[i] - sums[j] + merged))
                if best is None or c < best[0]:
                    best = (c, i, j)
        _, i, j = best
        merged = (np.concatenate([sets[i][0], sets[j][0]]), np.maximum(sets[i][1], sets[j][1]))
        sets = [s_ for k, s_ in enumerate(sets) if k not in (i, j)] + [merged]
    return [np.sort(m) for m, _ in sets]


def plan_batches(
    geometry: Sequence[OpGeometry],
    row_coords,
    col_coords,
    window: "int | tuple[int, int]",
    batch_size: int,
    groups: int = 4,
    truncate: float = 1.0,
) -> list[torch.Tensor]:
    """Batches of occluder positions for :meth:`IncrementalForward.run` on the grid
    ``row_coords x col_coords`` (flat row-major indices), grouped so that the positions of a
    batch have cones of similar size: a batch computes every op at its widest cone, so mixing a
    border position (small cone) with an interior one wastes work. Each axis is split into at most
    ``groups`` sets; batches are the products of a row set and a column set. ``truncate`` as
    in :meth:`IncrementalForward.run` (the cones the batches will compute)."""
    key = (
        tuple(geometry),
        tuple(int(v) for v in row_coords),
        tuple(int(v) for v in col_coords),
        _pair(window),
        int(batch_size),
        int(groups),
        float(truncate),
    )
    return [torch.from_numpy(b) for b in _plan(*key)]


@functools.lru_cache(maxsize=64)
def _plan(geometry, rc, cc, window, batch_size, groups, truncate) -> list[np.ndarray]:
    rc_t, cc_t = torch.tensor(rc, dtype=torch.long), torch.tensor(cc, dtype=torch.long)
    prof_r = _axis_profile(geometry, rc_t, window[0], 0, truncate).numpy()
    prof_c = _axis_profile(geometry, cc_t, window[1], 1, truncate).numpy()
    if prof_r.shape[1] == 0:  # nothing local: any batching is as good
        return [b.numpy() for b in torch.arange(len(rc) * len(cc)).split(batch_size)]
    macs = np.array([float(g.macs_per_output) for g in geometry if g.kind == "window"])
    row_sets = _group_axis(prof_r, macs * prof_c.sum(0), groups)
    col_sets = _group_axis(prof_c, macs * prof_r.sum(0), groups)
    batches = []
    for rs in row_sets:
        for cs in col_sets:
            flat = np.sort((rs[:, None] * len(cc) + cs[None, :]).reshape(-1))
            batches += [flat[k : k + batch_size] for k in range(0, len(flat), batch_size)]
    return batches
