"""Projection of activations back to pixel space: the deconvnet of section 2.1 and Fig. 1.

Zeiler & Fergus (2014), section 2.1: "to examine a given convnet activation, we set all other
activations in the layer to zero and pass the feature maps as input to the attached deconvnet
layer. Then we successively (i) unpool, (ii) rectify and (iii) filter to reconstruct the activity
in the layer beneath that gave rise to the chosen activation. This is then repeated until input
pixel space is reached."

* **Unpool** uses the switches (argmax positions) recorded by each max pool in the forward pass.
  With overlapping 3x3/2 pools two windows can share a switch, so contributions are *added*
  (scatter-add, what max pooling's gradient does); ``F.max_unpool2d`` would overwrite one.
* **Rectify** passes the reconstruction through a ReLU.
* **Filter** applies the transposed (flipped) filters of the same layer, without bias.
* Normalisation layers (local response normalisation) are passed through, not inverted.

The same walk with one parameter gives the three rules the literature compares (the ``rule``
argument): ``"deconvnet"`` (rectify the backward signal, the paper), ``"guided"`` (guided
backpropagation, Springenberg et al. 2015: rectify the signal *and* keep only units active in the
forward pass) and ``"gradient"`` (the plain input gradient, Simonyan et al. 2014: keep units active
in the forward pass, differentiate normalisation layers exactly).

Two independent implementations (``method``):

* ``"explicit"``: the paper's layer-by-layer deconvnet, written out (unpool by scatter-add, ReLU,
  ``conv_transpose2d``). The forward pass runs once per *distinct* image; requests on the same image
  share it. It walks plain chains of convolutions, ReLUs, pools, normalisation and linear layers,
  and refuses a model whose forward the registration order does not reproduce.
* ``"autograd"``: the gradient form: a forward pass per request and PyTorch's backward pass, with
  backward hooks that rectify the signal at every ReLU and pass normalisation layers through.
  Works on any classifier (torchvision's ResNets, VGG-BN: BatchNorm in eval mode is an affine map
  and is differentiated). In-place activations are switched off during the call and restored.
  A layer name pointing at a module the forward pass calls more than once (a ResNet block's shared
  ``relu``) is refused: name the block instead.
* ``"auto"`` (the default): ``"explicit"`` where it can walk the model, else ``"autograd"``.

They agree to float precision (tested), and with Captum's ``Deconvolution`` / ``GuidedBackprop`` /
``Saliency`` times the unit's activation on networks without normalisation layers (ZF, torchvision's
AlexNet, VGG16, ResNet-18).

Batches: :func:`project` walks the requests :data:`CHUNK_SIZE` at a time on the CPU (small chunks
stay in the caches) and never runs fewer than :data:`MIN_BATCH` rows, so a request's projection
has the same bits whatever chunk it falls in; the walk's forward pass is the model's own, bit for
bit (:func:`layer_activations` gives the values the projections keep).

>>> proj = project(model, images, "layer5", requests(image=[0, 0, 3], channel=[7, 8, 7]))
>>> proj.pixels.shape      # (3, 3, H, W): one pixel-space projection per request
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ZFCoreError
from .models import (
    LayerError,
    eval_mode,
    forward_layers,
    layer_key,
    layer_names,
    leaf_modules,
    model_device,
    to_device,
)
from .receptive import input_problem
from .study import Result

__all__ = [
    "RULES",
    "METHODS",
    "CHUNK_SIZE",
    "ACCELERATOR_CHUNK_SIZE",
    "MIN_BATCH",
    "padded",
    "Requests",
    "requests",
    "Projection",
    "DeconvStep",
    "project",
    "deconv_steps",
    "unpool",
    "transposed_conv",
    "layer_activations",
    "DeconvError",
    "DeconvTypeError",
    "out_of_place",
]

RULES = ("deconvnet", "guided", "gradient")
METHODS = ("auto", "explicit", "autograd")

#: Requests :func:`project` walks at a time on the CPU. Small chunks keep a chunk's maps in the
#: processor's caches from the forward pass to the end of the backward walk; in the sweep of
#: ``python -m benchmarks.deconv --sweep`` (a Fig. 2 panel set of layer-5 projections on ZF-mini,
#: one thread) this size is the fastest: larger chunks spill out of the caches, smaller ones pay
#: the per-call overhead of every operation more often.
CHUNK_SIZE = 16
#: The smallest batch the engine runs (:func:`padded`). PyTorch's CPU kernels round differently
#: for the smallest batches (another convolution algorithm for a batch of one on small maps,
#: another matrix product for up to three rows of a linear layer); never running fewer rows keeps
#: every request's bits independent of the chunk it falls in and of the requests beside it.
MIN_BATCH = 4
#: Requests per chunk on an accelerator, where larger batches keep the device busy
#: (``python -m benchmarks.gpu`` times project at this size and larger).
ACCELERATOR_CHUNK_SIZE = 64

# Normalisation layers the deconvnet passes through (section 2.1: not inverted).
NORMALISATION = (nn.LocalResponseNorm, nn.CrossMapLRN2d)
_IDENTITY_IN_EVAL = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
#: Strided convolutions with at most this many input channels (an image's: grey, RGB, RGBA) are
#: transposed in their polyphase form (:func:`transposed_conv`).
POLYPHASE_MAX_CHANNELS = 4


class DeconvError(ZFCoreError, ValueError):
    """Bad requests, layer, rule or a model the deconvnet cannot walk."""


class DeconvTypeError(DeconvError, TypeError):
    """An argument of the wrong type (a model that is not a ``torch.nn.Module``)."""


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requests(Result):
    """What to project: request ``r`` is feature map ``channel[r]`` of image ``image[r]``, either
    the single activation at ``(y[r], x[r])`` or, where ``y[r] == -1``, the whole feature map.

    For fully connected layers (``layer6``, ``layer7``, ``logits``) ``channel`` is the unit and
    ``y``/``x`` are ``-1``. Build one with :func:`requests`.
    """

    image: torch.Tensor
    channel: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor

    def __len__(self) -> int:
        return int(self.image.numel())

    @property
    def whole_map(self) -> torch.Tensor:
        """``(R,)`` bool: requests that keep the whole feature map rather than one activation."""
        return self.y < 0

    def select(self, index) -> "Requests":
        index = torch.as_tensor(index, dtype=torch.long)
        return Requests(self.image[index], self.channel[index], self.y[index], self.x[index])


def _long(v, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(v)
    except Exception:
        raise DeconvError(
            f"requests: {name} must be an int or a sequence of ints, got {type(v).__name__}"
        ) from None
    if t.is_floating_point() or t.dtype == torch.bool:
        raise DeconvError(f"requests: {name} must hold integers, got dtype {t.dtype}")
    return t.to(torch.long).reshape(-1)


def requests(image, channel, y=None, x=None) -> Requests:
    """Build :class:`Requests`, broadcasting scalars: ``requests(image=3, channel=[0, 1, 2])``.

    ``y``/``x`` of ``None`` (or ``-1``) keep the whole feature map, as in Fig. 2's per-map
    projections; integers pick one activation, as in the top-9 projections.
    """
    if (y is None) != (x is None):
        raise DeconvError("requests: give both y and x (one activation) or neither (whole map)")
    parts = [_long(image, "image"), _long(channel, "channel")]
    parts += [_long(-1 if y is None else y, "y"), _long(-1 if x is None else x, "x")]
    n = max(p.numel() for p in parts)
    out = []
    for name, p in zip(("image", "channel", "y", "x"), parts):
        if p.numel() == 1:
            p = p.expand(n).clone()
        elif p.numel() != n:
            raise DeconvError(
                f"requests: {name} has {p.numel()} entries, others have {n}; give "
                f"one value or one per request"
            )
        out.append(p)
    req = Requests(*out)
    if (req.image < 0).any() or (req.channel < 0).any():
        raise DeconvError("requests: image and channel indices must be >= 0")
    if ((req.y < 0) != (req.x < 0)).any():
        raise DeconvError(
            "requests: y and x must both be >= 0 (one activation) or both -1 (whole map)"
        )
    return req


def _as_requests(req) -> Requests:
    if isinstance(req, Requests):
        return req
    if isinstance(req, dict):
        return requests(**req)
    if isinstance(req, (list, tuple)) and req and all(isinstance(r, (list, tuple)) for r in req):
        lens = {len(r) for r in req}
        if lens == {2}:
            return requests([r[0] for r in req], [r[1] for r in req])
        if lens == {4}:
            return requests(*[[r[i] for r in req] for i in range(4)])
        raise DeconvError(
            "requests as tuples must all be (image, channel) or all (image, channel, y, x)"
        )
    raise DeconvError(
        f"requests must be a Requests (see zfcore.deconv.requests), a dict or a list "
        f"of (image, channel[, y, x]) tuples, got {type(req).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Projection:
    """Pixel-space projections, one per request, in the model's input space (normalised pixels).

    ``pixels``: ``(R, C, H, W)``; ``activation``: ``(R,)`` the projected unit's value (for a whole
    map, its maximum); ``requests``, ``layer``, ``rule`` as asked.
    """

    pixels: torch.Tensor
    activation: torch.Tensor
    requests: Requests
    layer: str
    rule: str

    def to_dict(self) -> dict:
        return {
            "pixels": self.pixels,
            "activation": self.activation,
            "requests": self.requests.to_dict(),
            "layer": self.layer,
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Projection":
        return cls(d["pixels"], d["activation"], Requests(**d["requests"]), d["layer"], d["rule"])


@dataclass
class DeconvStep:
    """One operation of the deconvnet walk of Fig. 1 (for drawing it step by step).

    ``op`` is ``"start"`` (the kept activation), ``"unpool"``, ``"rectify"``, ``"filter"``,
    ``"pass"`` (normalisation passed through) or ``"linear"``; ``module`` the module's name;
    ``signal`` the reconstruction after the step, ``(C, H, W)``: it lives where the module's
    input lives, and ``forward`` is the forward pass's map there (what the reconstruction explains);
    ``switches``, for ``"unpool"`` steps, the pool's argmax positions ``(C, H_out, W_out)`` as flat
    indices into ``(H, W)``.
    """

    module: str
    op: str
    signal: torch.Tensor
    forward: torch.Tensor | None = None
    switches: torch.Tensor | None = None


def padded(rows: torch.Tensor, zeros: bool = False) -> torch.Tensor:
    """``rows`` (a batch, first dimension) grown to :data:`MIN_BATCH` rows where it has fewer:
    copies of its last row, or with ``zeros=True`` rows of zeros (a backward signal that
    contributes nothing). The caller keeps the first ``len(rows)`` rows of what it computes."""
    n = rows.shape[0]
    if n == 0 or n >= MIN_BATCH:
        return rows
    extra = rows.new_zeros if zeros else (lambda *shape: rows[-1:].expand(*shape))
    return torch.cat([rows, extra(MIN_BATCH - n, *rows.shape[1:])])


# ---------------------------------------------------------------------------------------------
# The chain of modules from the input to a layer
# ---------------------------------------------------------------------------------------------

_SUPPORTED = (
    (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Linear, nn.Flatten, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    + NORMALISATION
    + _IDENTITY_IN_EVAL
)


def _chain(model: nn.Module, layer: str) -> list[tuple[str, nn.Module]]:
    """Leaf modules from the input to ``layer``'s module, in forward (registration) order
    (:func:`zfcore.models.leaf_modules`), each one the explicit walk supports."""
    try:
        chain = leaf_modules(model, upto=layer)
    except LayerError:  # a block, not a leaf: name what the walk cannot take first, if anything
        chain = None
    for name, m in chain or leaf_modules(model):
        if not isinstance(m, _SUPPORTED):
            raise DeconvError(
                f"the explicit deconvnet cannot walk {name} ({type(m).__name__}); "
                f"use method='autograd' (or the default 'auto') for this model"
            )
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            raise DeconvError(
                f"{name}: padding_mode {m.padding_mode!r} is not supported; use method='autograd'"
            )
    if chain is None:
        target = layer_names(model)[layer]
        raise LayerError(
            f"layer_names[{layer!r}] = {target!r} is not a leaf module of the model: the explicit "
            f"deconvnet walks leaf modules; use method='autograd' (or the default 'auto')"
        )
    return chain


def _check_walk(model: nn.Module, chain, layer: str, image: torch.Tensor) -> None:
    """The explicit walk follows modules in registration order; refuse it where that does not
    reproduce the model's own ``layer`` output (a residual or branching ``forward``)."""
    with torch.no_grad():
        walked, _ = _forward_explicit(chain, image, "deconvnet")
        real = forward_layers(model, image, [layer])[layer]
    if walked.shape != real.shape or not torch.allclose(walked, real, rtol=1e-4, atol=1e-6):
        raise DeconvError(
            f"the explicit deconvnet walks the modules of {type(model).__name__} in "
            f"registration order, which does not reproduce its {layer} (its forward "
            f"branches or skips); use method='autograd' (or the default 'auto')"
        )


def _conv_output_padding(m: nn.Conv2d, in_hw, out_hw) -> tuple[int, int]:
    pads = []
    for i in range(2):
        k, s, p, d = m.kernel_size[i], m.stride[i], m.padding[i], m.dilation[i]
        expected = (out_hw[i] - 1) * s - 2 * p + d * (k - 1) + 1
        pads.append(in_hw[i] - expected)
    return tuple(pads)


def _conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0)
        return tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation))
    return tuple(m.padding)


def _pool_format(device: torch.device) -> torch.memory_format:
    """The memory format the explicit walk max-pools in: channels-last on the CPU, where pooling
    with switches runs many times faster in it than channels-first; contiguous elsewhere. Pooled
    values and switches are the same in either layout (a maximum and its position are exact), so
    the walk's forward stays the model's own, bit for bit; the convolutions run in the model's
    layout for the same reason. The switches keep the pooling layout, and the backward walk
    unpools and filters in it (:func:`unpool`)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def transposed_conv(signal: torch.Tensor, conv: nn.Conv2d, size) -> torch.Tensor:
    """The deconvnet's filtering step (section 2.1): ``signal`` ``(N, C_out, h, w)`` through the
    transposed filters of ``conv``, without bias, to ``(N, C_in, *size)``, where ``size`` is the
    spatial size of ``conv``'s input in the forward pass (it fixes the output padding).

    Where ``conv`` is strided and has few input channels (the first layer, which filters into
    the image's 3 channels) this is computed as its polyphase form: one stride-1 convolution with
    ``stride**2`` times as many output channels (one per output phase, each with its share of the
    flipped taps), then a pixel shuffle. The transposed convolution with so few output channels
    vectorises poorly on the CPU; the polyphase form computes the same sums. Elsewhere it is
    ``F.conv_transpose2d``."""
    in_hw = (int(size[0]), int(size[1]))
    out_hw = tuple(signal.shape[-2:])
    stride, dilation = tuple(conv.stride), tuple(conv.dilation)
    padding = _conv_padding(conv)
    if (
        conv.groups == 1
        and dilation == (1, 1)
        and stride[0] == stride[1] > 1
        and conv.in_channels <= POLYPHASE_MAX_CHANNELS
    ):
        return _polyphase_transposed_conv(signal, conv.weight, stride[0], padding, in_hw)
    return F.conv_transpose2d(
        signal,
        conv.weight,
        None,
        stride,
        padding,
        _conv_output_padding(conv, in_hw, out_hw),
        conv.groups,
        dilation,
    )


def _polyphase_weight(weight: torch.Tensor, s: int) -> torch.Tensor:
    """``(C_in * s * s, C_out, t_h, t_w)`` stride-1 filters equivalent to the transposed filters
    of ``weight`` ``(C_out, C_in, k_h, k_w)`` at stride ``s``: output channel ``(i, p, q)`` holds
    the flipped taps ``weight[:, i, p::s, q::s]`` of output phase ``(p, q)``, right-aligned in
    ``t = ceil(k / s)`` taps."""
    c_out, c_in, kh, kw = weight.shape
    th, tw = -(-kh // s), -(-kw // s)
    out = weight.new_zeros(c_in, s, s, c_out, th, tw)
    for p in range(s):
        for q in range(s):
            taps = weight[:, :, p::s, q::s].flip(-1, -2).transpose(0, 1)
            out[:, p, q, :, th - taps.shape[-2] :, tw - taps.shape[-1] :] = taps
    return out.reshape(c_in * s * s, c_out, th, tw)


def _polyphase_transposed_conv(signal, weight, s, padding, in_hw):
    w = _polyphase_weight(weight, s)
    th, tw = w.shape[-2:]
    full = F.pixel_shuffle(F.conv2d(signal, w, None, 1, (th - 1, tw - 1)), s)
    (p0, p1), (h, wd) = padding, in_hw
    out = full[:, :, p0 : p0 + h, p1 : p1 + wd]
    short_h, short_w = h - out.shape[-2], wd - out.shape[-1]
    if short_h or short_w:  # output padding beyond the full transposed output: zeros
        out = F.pad(out, (0, short_w, 0, short_h))
    return out


def _forward_explicit(chain, x: torch.Tensor, rule: str, keep_forward: bool = False):
    """Run ``x`` through the chain, recording what each backward step needs (and, with
    ``keep_forward``, every module's input for drawing Fig. 1)."""
    tape = {}
    for name, m in chain:
        if keep_forward:
            tape[("input", name)] = x
        if isinstance(m, nn.Conv2d):
            in_hw = x.shape[-2:]
            x = m(x)
            tape[name] = (in_hw, x.shape[-2:])
        elif isinstance(m, nn.ReLU):
            x = F.relu(x)
            if rule != "deconvnet":
                tape[name] = x > 0
        elif isinstance(m, nn.MaxPool2d):
            in_shape = x.shape
            x, idx = F.max_pool2d(
                x.contiguous(memory_format=_pool_format(x.device)),
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                ceil_mode=m.ceil_mode,
                return_indices=True,
            )
            x = x.contiguous()  # the next layers run as in the model's own forward
            tape[name] = (in_shape, idx)
        elif isinstance(m, NORMALISATION):
            if rule == "gradient":
                tape[name] = x
            x = m(x)
        elif isinstance(m, _IDENTITY_IN_EVAL):
            pass
        elif isinstance(m, (nn.Linear, nn.Flatten)):
            in_shape = x.shape
            if isinstance(m, nn.Linear) and x.dim() > 2:
                x = torch.flatten(x, 1)
            x = m(x)
            tape[name] = in_shape
        else:  # other linear maps (average pools): differentiated at the backward step
            tape[name] = x.shape
            x = m(x)
    return x, tape


def _linear_vjp(m: nn.Module, in_shape, g: torch.Tensor) -> torch.Tensor:
    z = torch.zeros(
        (g.shape[0],) + tuple(in_shape[1:]), dtype=g.dtype, device=g.device, requires_grad=True
    )
    with torch.enable_grad():
        out = m(z)
        (gz,) = torch.autograd.grad(out, z, g)
    return gz


def _backward_explicit(
    chain,
    tape,
    g: torch.Tensor,
    rows: torch.Tensor,
    rule: str,
    trace: list | None = None,
    unpool_mode: str = "add",
) -> torch.Tensor:
    """Walk the reconstruction ``g`` (one row per request) from the layer down to pixels.

    ``rows[r]`` is the forward-pass row (distinct image) that request ``r`` belongs to.
    """
    for name, m in reversed(chain):
        if isinstance(m, nn.ReLU):
            op = "rectify"
            if rule == "deconvnet":
                g = F.relu(g)
            elif rule == "guided":
                g = F.relu(g) * tape[name][rows]
            else:
                g = g * tape[name][rows]
        elif isinstance(m, nn.MaxPool2d):
            op = "unpool"
            in_shape, idx = tape[name]
            if unpool_mode == "add":
                g = unpool(g, idx[rows], in_shape[-2:])
            else:  # the pitfall, for teaching: shared switches keep only one contribution
                g = F.max_unpool2d(
                    g, idx[rows], m.kernel_size, m.stride, m.padding, output_size=in_shape[-2:]
                )
        elif isinstance(m, nn.Conv2d):
            op = "filter"
            in_hw, out_hw = tape[name]
            g = transposed_conv(g, m, in_hw)
        elif isinstance(m, NORMALISATION):
            op = "pass"
            if rule == "gradient":
                x = tape[name][rows].detach().requires_grad_(True)
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(m(x), x, g)
        elif isinstance(m, _IDENTITY_IN_EVAL):
            continue
        elif isinstance(m, nn.Linear):
            op = "linear"
            g = (g @ m.weight).reshape((g.shape[0],) + tuple(tape[name][1:]))
        elif isinstance(m, nn.Flatten):
            g = g.reshape((g.shape[0],) + tuple(tape[name][1:]))
            continue
        else:
            op = "linear"
            g = _linear_vjp(m, tape[name], g)
        if trace is not None:
            fwd = tape.get(("input", name))
            step = DeconvStep(
                name,
                op,
                g[0].detach().clone(),
                forward=None if fwd is None else fwd[rows[0]].clone(),
            )
            if op == "unpool":
                step.switches = tape[name][1][rows[0]].clone()
            trace.append(step)
    return g


def unpool(signal: torch.Tensor, switches: torch.Tensor, size) -> torch.Tensor:
    """Unpool ``signal`` ``(N, C, h, w)`` to ``(N, C, *size)`` with the max-pool ``switches``
    (``F.max_pool2d(..., return_indices=True)``: flat positions into ``size``).

    Each value goes back to the position its window's maximum came from; where overlapping
    windows share a switch their values are *added* (section 2.1, Fig. 1; exactly max pooling's
    gradient). ``F.max_unpool2d`` would keep only one of them.
    """
    if signal.shape != switches.shape:
        raise DeconvError(
            f"unpool: signal {tuple(signal.shape)} and switches "
            f"{tuple(switches.shape)} must have the same shape"
        )
    n, c = signal.shape[:2]
    h, w = int(size[0]), int(size[1])
    if switches.dim() == 4 and not switches.is_contiguous():
        if switches.is_contiguous(memory_format=torch.channels_last):
            # channels-last switches (the walk on the CPU): scatter along positions, channels
            # innermost, and return channels-last
            src = signal.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
            out = signal.new_zeros(n, h * w, c)
            out.scatter_add_(
                1, switches.permute(0, 2, 3, 1).reshape(n, -1, c), src.reshape(n, -1, c)
            )
            return out.view(n, h, w, c).permute(0, 3, 1, 2)
    out = signal.new_zeros(n, c, h * w)
    out.scatter_add_(2, switches.reshape(n, c, -1), signal.reshape(n, c, -1))
    return out.view(n, c, h, w)


# ---------------------------------------------------------------------------------------------
# The starting signal: one kept activation (or map), everything else zero
# ---------------------------------------------------------------------------------------------


def _check_against_layer(req: Requests, act_shape, layer: str) -> None:
    c = act_shape[1]
    if (req.channel >= c).any():
        bad = int(req.channel.max())
        raise DeconvError(
            f"requests: channel {bad} does not exist in {layer}, which has {c} "
            f"feature maps (0 ... {c - 1})"
        )
    if len(act_shape) == 2:
        if (req.y >= 0).any():
            raise DeconvError(f"{layer} is fully connected: give channel (the unit) only, no y/x")
        return
    h, w = act_shape[-2:]
    if (req.y >= h).any() or (req.x >= w).any():
        raise DeconvError(
            f"requests: position ({int(req.y.max())}, {int(req.x.max())}) is outside "
            f"{layer}'s {h}x{w} maps"
        )


def _start_signal(act: torch.Tensor, rows: torch.Tensor, req: Requests, scale: str = "activation"):
    """``(R, ...)`` zeros except the requested activation (or map) of each request, and the
    projected units' values. ``scale="unit"`` puts 1 at a requested activation (the unit's
    gradient) and divides a requested map by its maximum.

    ``req`` is on the host: which requests keep one activation is decided there, and the indices
    move to the activations' device once (no boolean mask is applied on the device, which would
    wait for it)."""
    n = len(req)
    dev = act.device
    one = (req.y >= 0).nonzero().view(-1)  # requests of one activation (host)
    at = tuple(to_device(t, dev) for t in (one, req.y[one], req.x[one]))
    rows = to_device(rows, dev)
    req = Requests(*(to_device(t, dev) for t in (req.image, req.channel, req.y, req.x)))
    a = act[rows]  # (R, C, ...) forward activations
    r = torch.arange(n, device=dev)
    g = torch.zeros_like(a)
    if a.dim() == 2:
        value = a[r, req.channel].detach()
        g[r, req.channel] = value if scale == "activation" else 1.0
        return g, value
    maps = a[r, req.channel]  # (R, H, W)
    whole = req.whole_map
    kept = torch.where(whole.view(-1, 1, 1), maps, torch.zeros_like(maps))
    if len(one):
        kept[at] = maps[at]
    value = torch.where(
        whole, maps.flatten(1).amax(1), maps[r, req.y.clamp(min=0), req.x.clamp(min=0)]
    ).detach()
    if scale == "unit":
        safe = torch.where(value != 0, value, torch.ones_like(value))
        kept = kept / safe.view(-1, 1, 1)
        if len(one):
            kept[at] = 1.0
    g[r, req.channel] = kept
    return g, value


# ---------------------------------------------------------------------------------------------
# The gradient form: autograd with backward hooks
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _hooks(model: nn.Module, layer: str, rule: str, store: dict):
    """Hooks for the gradient form: capture ``layer``'s output and stop the forward pass there;
    rectify the backward signal at every ReLU before it; pass normalisation layers through."""
    target_name = layer_names(model)[layer]
    target = model.get_submodule(target_name)
    handles = []

    def capture(module, inputs, output):
        store["act"] = output
        store["input"] = inputs[0]
        raise _Stop

    def relu_hook(module, grad_input, grad_output):
        if rule == "deconvnet":  # rectify the signal arriving from above (ignores the forward)
            return (F.relu(grad_output[0]),)
        return (F.relu(grad_input[0]),)  # guided: forward mask (in grad_input) and rectify

    def pass_through(module, grad_input, grad_output):
        return (grad_output[0],)

    try:
        handles.append(target.register_forward_hook(capture))
        if rule != "gradient":
            for name, m in model.named_modules():
                if m is target:
                    continue  # its rule is applied to the start signal by _project_autograd
                if isinstance(m, nn.ReLU):
                    handles.append(m.register_full_backward_hook(relu_hook))
                elif isinstance(m, NORMALISATION):
                    handles.append(m.register_full_backward_hook(pass_through))
        yield
    finally:
        for h in handles:
            h.remove()


def _run_to_layer(model, x, layer, rule, store):
    with _hooks(model, layer, rule, store):
        try:
            model(x)
        except _Stop:
            pass
    if "act" not in store:
        raise DeconvError(f"{layer} was not reached by {type(model).__name__}.forward")
    return store.pop("act"), store.pop("input")


@contextlib.contextmanager
def out_of_place(model: nn.Module):
    """Switch every in-place activation (``nn.ReLU(inplace=True)`` as torchvision ships them) to
    out-of-place for the block and restore it after: backward hooks cannot see a tensor that the
    next module overwrites. The user's model is left as it was."""
    flipped = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in flipped:
        m.inplace = False
    try:
        yield
    finally:
        for m in flipped:
            m.inplace = True


def _check_called_once(model: nn.Module, layer: str, image: torch.Tensor) -> None:
    """Refuse a layer whose module the forward pass calls more than once: the gradient form would
    start from its first call while :func:`zfcore.models.capture_layers` reads its last."""
    target = layer_names(model)[layer]
    calls = []
    handle = model.get_submodule(target).register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            model(image)
    finally:
        handle.remove()
    if len(calls) > 1:
        parent = target.rsplit(".", 1)[0] if "." in target else "<the enclosing block>"
        raise DeconvError(
            f"layer_names[{layer!r}] = {target!r} is a module that {type(model).__name__}.forward "
            f"calls {len(calls)} times per pass (a shared module, like the relu of a ResNet "
            f"block), so its output is ambiguous; point {layer!r} at the block instead, e.g. "
            f"model.layer_names[{layer!r}] = {parent!r}"
        )


def _project_autograd(model, images, layer, req, rule, scale):
    x = padded(images[to_device(req.image, images.device)].detach()).clone().requires_grad_(True)
    with torch.enable_grad():
        act, pre = _run_to_layer(model, x, layer, rule, {})
        _check_against_layer(req, act.shape, layer)
        g, value = _start_signal(act.detach(), torch.arange(len(req), device="cpu"), req, scale)
        g = padded(g, zeros=True)
        if isinstance(model.get_submodule(layer_names(model)[layer]), nn.ReLU):
            # the layer's own ReLU, by the rule (its backward hook could not be set: the forward
            # pass stopped inside it)
            alive = pre.detach() > 0
            g = (
                F.relu(g)
                if rule == "deconvnet"
                else (F.relu(g) * alive if rule == "guided" else g * alive)
            )
            act = pre
        (pixels,) = torch.autograd.grad(act, x, g)
    return pixels[: len(req)], value


def _project_explicit(chain, images, layer, req, rule, scale):
    uniq, rows = torch.unique(req.image, return_inverse=True)
    uniq, rows = to_device(uniq, images.device), to_device(rows, images.device)
    with torch.no_grad():
        act, tape = _forward_explicit(chain, padded(images[uniq]), rule)
        _check_against_layer(req, act.shape, layer)
        g, value = _start_signal(act, rows, req, scale)
        pixels = _backward_explicit(chain, tape, padded(g, zeros=True), padded(rows), rule)
    return pixels[: len(req)], value


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _check_common(model, images, layer, rule, method) -> str:
    if not isinstance(model, nn.Module):
        raise DeconvTypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}: pass the network "
            f"itself (e.g. zfcore.zoo.model_for_profile(profile))"
        )
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise DeconvError(
            f"images must be a (N, C, H, W) tensor of normalised images, got {shape}; "
            f"for one image use image[None]"
        )
    if rule not in RULES:
        raise DeconvError(f"unknown rule {rule!r}: choose one of {', '.join(RULES)}")
    if method not in METHODS:
        raise DeconvError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    key = layer_key(layer, model)
    problem = input_problem(model, key, images)
    if problem:
        raise DeconvError(problem)
    return key


def project(
    model: nn.Module,
    images: torch.Tensor,
    layer: "str | int",
    requests,
    rule: str = "deconvnet",
    method: str = "auto",
    batch_size: int | None = None,
    scale: str = "activation",
    progress: bool = False,
) -> Projection:
    """Project activations of ``layer`` to pixel space (section 2.1, Fig. 1).

    ``images``: ``(N, C, H, W)`` normalised model inputs. ``requests``: a :class:`Requests` (see
    :func:`requests`), a dict of its fields, or a list of ``(image, channel)`` /
    ``(image, channel, y, x)`` tuples; ``image`` indexes ``images``. For each request every
    activation of the layer is set to zero except the requested one (or the whole requested map),
    which keeps its value, and the result is walked down to pixels with ``rule``
    (``"deconvnet"``, ``"guided"``, ``"gradient"``).

    ``scale="activation"`` (the paper) keeps the activation's value; ``scale="unit"`` starts from
    1 at the requested activation instead (the unit's gradient, as Captum and Adebayo et al. do;
    a requested map is divided by its maximum).

    Requests are processed ``batch_size`` at a time (by default :data:`CHUNK_SIZE` on the CPU,
    :data:`ACCELERATOR_CHUNK_SIZE` elsewhere), grouped by image, so requests on the same image
    share one forward pass (``method="explicit"``); the chunking changes no bit of the result.
    ``method="auto"`` uses the explicit deconvnet where it can walk the model (its modules are
    supported and, walked in registration order, reproduce the layer's output on the first image)
    and the gradient form (``"autograd"``) otherwise (BatchNorm, residual blocks). Returns a
    :class:`Projection` in request order. The model's train/eval state and its in-place
    activations are left as they were; projections always use eval mode.
    """
    key = _check_common(model, images, layer, rule, method)
    req = _as_requests(requests)
    if len(req) == 0:
        raise DeconvError("no requests: give at least one (image, channel)")
    if (req.image >= len(images)).any():
        raise DeconvError(
            f"requests: image index {int(req.image.max())} is out of range for {len(images)} images"
        )
    if scale not in ("activation", "unit"):
        raise DeconvError(f"scale must be 'activation' or 'unit', got {scale!r}")
    if batch_size is None:
        batch_size = CHUNK_SIZE if model_device(model).type == "cpu" else ACCELERATOR_CHUNK_SIZE
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DeconvError(f"batch_size must be a positive int, got {batch_size!r}")
    images = images.to(model_device(model))
    order = torch.argsort(req.image, stable=True)  # group requests by image
    pixels = torch.empty(
        (len(req),) + tuple(images.shape[1:]), dtype=images.dtype, device=images.device
    )
    values = torch.empty(len(req), dtype=images.dtype, device=images.device)
    # each chunk's requests stay on the host (bookkeeping); their rows of the result are written
    # through a device copy of the same indices, moved once
    chunks = list(
        zip(
            torch.split(order, batch_size), torch.split(to_device(order, images.device), batch_size)
        )
    )
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"projecting {key} ({rule})", unit="batch")
    with contextlib.ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        chain = None
        if method != "autograd":
            try:
                chain = _chain(model, key)
                _check_walk(model, chain, key, images[:1])
            except (DeconvError, LayerError):
                if method == "explicit":
                    raise
                chain = None
        if chain is None:
            stack.enter_context(out_of_place(model))
            _check_called_once(model, key, images[:1])
        for idx, idx_dev in chunks:
            sub = req.select(idx)
            if chain is not None:
                p, v = _project_explicit(chain, images, key, sub, rule, scale)
            else:
                p, v = _project_autograd(model, images, key, sub, rule, scale)
            pixels[idx_dev] = p
            values[idx_dev] = v
    return Projection(pixels, values, req, key, rule)


def deconv_steps(
    model: nn.Module,
    image: torch.Tensor,
    layer: "str | int",
    channel: int,
    y: int | None = None,
    x: int | None = None,
    rule: str = "deconvnet",
    unpool_mode: str = "add",
) -> list[DeconvStep]:
    """The deconvnet of Fig. 1 run step by step on one image (``(C, H, W)`` or ``(1, C, H, W)``).

    Returns the steps from the kept activation (``op="start"``) down to pixels: each unpool (with
    the switches it used), rectification and filtering, with the reconstruction after it and the
    forward-pass map at the same place. The last step's signal equals
    ``project(...).pixels[0]``.

    ``unpool_mode="overwrite"`` unpools with ``F.max_unpool2d`` instead of adding, to show what it
    loses where overlapping pooling windows share a switch (so it is not used here).
    """
    if unpool_mode not in ("add", "overwrite"):
        raise DeconvError(f"unpool_mode must be 'add' or 'overwrite', got {unpool_mode!r}")
    if isinstance(image, torch.Tensor) and image.dim() == 3:
        image = image[None]
    key = _check_common(model, image, layer, rule, "explicit")
    if image.shape[0] != 1:
        raise DeconvError(f"deconv_steps takes one image, got a batch of {image.shape[0]}")
    req = requests(0, channel, y, x)
    image = image.to(model_device(model))
    with eval_mode(model), torch.no_grad():
        chain = _chain(model, key)
        _check_walk(model, chain, key, image)
        act, tape = _forward_explicit(chain, padded(image), rule, keep_forward=True)
        _check_against_layer(req, act.shape, key)
        rows = torch.zeros(1, dtype=torch.long, device="cpu")
        g, _ = _start_signal(act, rows, req)
        trace = [DeconvStep(chain[-1][0], "start", g[0].clone(), forward=act[0].clone())]
        g, rows = padded(g, zeros=True), padded(rows)
        _backward_explicit(chain, tape, g, rows, rule, trace=trace, unpool_mode=unpool_mode)
    return trace


def layer_activations(model: nn.Module, images: torch.Tensor, layers: Sequence[str]) -> dict:
    """``{layer: activations}`` of ``images`` for several layers in one forward pass, stopping
    after the deepest requested layer (eval mode, no gradients;
    :func:`zfcore.models.forward_layers`). Fewer than :data:`MIN_BATCH` images run in a batch of
    that size (:func:`padded`), as :func:`project` does, so an image's activations have the same
    bits in any batch and equal the values its projections keep."""
    keys = [layer_key(l, model) for l in layers]
    n = len(images)
    with eval_mode(model), torch.no_grad():
        out = forward_layers(model, padded(images.to(model_device(model))), keys)
    return {k: v[:n] for k, v in out.items()}
