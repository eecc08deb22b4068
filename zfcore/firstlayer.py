"""The first convolutional layer measured: what section 4.1 of the paper reads off Fig. 6.

Zeiler & Fergus looked at the first layer of Krizhevsky et al.'s network and saw (section 4.1,
Fig. 6): "the first layer filters are a mix of extremely high and low frequency information, with
little coverage of the mid frequencies"; "the 2nd layer visualization shows aliasing artifacts
caused by the large stride 4 used in the 1st layer convolutions"; and some filters "dead".
Section 3 adds that without feature-scale clipping "a few of the first layer filters ...
dominate". The measures:

* :func:`weak_filters`: first-layer maps whose mean rectified response over the data is below
  ``rel`` (1 %) times the layer's median map (the paper's "dead" filters, read off the
  activity; a map that fires on no image at all is :mod:`zfcore.health`'s *dead* map);
* :func:`aliased_energy`: the share of each filter's frequency response above the Nyquist
  frequency of its stride (``1 / (2 * stride)`` cycles per pixel on either axis): what the
  strided convolution folds back onto lower frequencies; :func:`power_above` for any cutoff;
* :func:`frequency_profile`: the share of filter energy in low, mid and high frequency bands (the
  "little coverage of the mid frequencies");
* :func:`norm_share`: the share of the total filter norm held by the ``top`` largest filters
  (dominance without clipping); :func:`largest_filter_rms` (what clipping caps);
* :func:`aliasing_controls`: the aliased share beside the same layout's untrained filters and
  white noise, and on the same absolute bands (above 1/8 and 1/4 cycle per pixel): a white-noise
  filter already puts 94 % of its power above 1/8 and 75 % above 1/4, so a larger stride aliases
  more before any training; what training did is the change from the untrained filters.

:func:`first_layer_report` (a network and images) and :func:`first_layer_from` (a first layer and
its recorded activity) gather them in a :class:`FirstLayer`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .deconv import layer_activations
from .errors import ZFCoreError
from .models import conv_layers, filter_rms

__all__ = [
    "FirstLayer",
    "FirstLayerError",
    "ALIASING_CUTOFFS",
    "ALIASING_BANDS",
    "first_conv",
    "power_above",
    "aliased_energy",
    "noise_filters",
    "aliasing_controls",
    "aliasing_bands",
    "frequency_profile",
    "norm_share",
    "largest_filter_rms",
    "layer1_mean_activation",
    "weak_maps",
    "weak_filters",
    "first_layer_from",
    "first_layer_report",
    "conv_with_filters",
]

#: The absolute frequency bands both layouts are compared on (cycles per pixel): above the
#: Nyquist frequency of a stride-4 sampling (1/8) and of a stride-2 sampling (1/4).
ALIASING_CUTOFFS = (1 / 8, 1 / 4)

#: The bands of :func:`aliasing_controls`: above the layout's own stride Nyquist frequency, and
#: above each of :data:`ALIASING_CUTOFFS`.
ALIASING_BANDS = ("own", "above_1_8", "above_1_4")


class FirstLayerError(ZFCoreError, ValueError):
    """Bad input to the first-layer measurements."""


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first convolution of ``model`` (its layer 1)."""
    convs = conv_layers(model)
    if not convs:
        raise FirstLayerError(f"{type(model).__name__} has no convolution")
    return convs[0]


def _frequencies(n: int) -> torch.Tensor:
    return torch.fft.fftfreq(n, dtype=torch.float64).abs()  # cycles per pixel, 0 ... 0.5


def _power(weight: torch.Tensor, pad: int) -> torch.Tensor:
    """``(C, pad, pad)``: each filter's power spectrum (summed over input channels, mean
    removed)."""
    w = weight.detach().double()
    w = w - w.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.fft2(w, s=(pad, pad)).abs().pow(2).sum(1)


def power_above(weight: torch.Tensor, cutoff: float, pad: int = 64) -> torch.Tensor:
    """``(C,)``: per filter of ``weight`` ``(C, in, k, k)``, the share of its (mean-removed)
    power spectrum above ``cutoff`` cycles per pixel on either axis."""
    if weight.dim() != 4:
        raise FirstLayerError(f"weight must be (C, in, k, k), got {tuple(weight.shape)}")
    if not 0 < cutoff < 0.5:
        raise FirstLayerError(
            f"cutoff must be a frequency in (0, 0.5) cycles per pixel, not {cutoff!r}"
        )
    f = _frequencies(pad)
    above = (f[:, None] > cutoff + 1e-12) | (f[None, :] > cutoff + 1e-12)
    p = _power(weight, pad)
    total = p.sum((1, 2)).clamp_min(1e-30)
    return (p * above).sum((1, 2)) / total


def aliased_energy(conv: nn.Conv2d, pad: int = 64) -> torch.Tensor:
    """``(C,)``: per filter, the share of its (mean-removed) power spectrum above the Nyquist
    frequency of the convolution's stride on either axis (aliased by the subsampling)."""
    return power_above(conv.weight, 0.5 / conv.stride[0], pad)


def noise_filters(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """White-noise filters of the shape of ``like`` (i.i.d. normal): the spectrum of a filter
    that learned nothing. Its share above ``c`` cycles per pixel is about ``1 - (2c)^2``
    (94 % above 1/8, 75 % above 1/4)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(like.shape, generator=g, dtype=torch.float64)


def aliasing_controls(
    trained: nn.Module, untrained: nn.Module, seed: int = 0, pad: int = 64
) -> dict:
    """Section 4.1's aliasing claim with its controls, for one layout: per first-layer filter
    (numpy ``(C,)``), the share of power above the layout's own stride Nyquist frequency
    (``own``) and above each absolute cutoff of :data:`ALIASING_CUTOFFS` (``above_1_8``,
    ``above_1_4``), for the ``trained`` network, the ``untrained`` one of the same layout
    (the weights training started from; filter ``i`` is filter ``i``'s start) and white
    ``noise`` filters of the same shape; plus ``kernel`` and ``stride``.

    What training did to aliasing is ``trained - untrained`` filter by filter; comparing it
    between layouts separates the layouts' learned difference from what the stride's Nyquist
    frequency alone gives (white noise already puts 94 % above 1/8 and 75 % above 1/4)."""
    ct, cu = first_conv(trained), first_conv(untrained)
    if ct.weight.shape != cu.weight.shape or ct.stride != cu.stride:
        raise FirstLayerError(
            f"trained and untrained first layers differ: {tuple(ct.weight.shape)} "
            f"stride {ct.stride} vs {tuple(cu.weight.shape)} stride {cu.stride}"
        )
    return aliasing_bands(ct, cu, seed, pad)


def aliasing_bands(trained: nn.Conv2d, untrained: nn.Conv2d, seed: int = 0, pad: int = 64) -> dict:
    """:func:`aliasing_controls` of two first-layer convolutions of one layout (no check that
    they match)."""
    nyq = 0.5 / trained.stride[0]
    out: dict = {"kernel": trained.kernel_size[0], "stride": trained.stride[0]}
    for name, w in (
        ("trained", trained.weight),
        ("untrained", untrained.weight),
        ("noise", noise_filters(trained.weight, seed)),
    ):
        d = {"own": power_above(w, nyq, pad).numpy()}
        for c in ALIASING_CUTOFFS:
            d[f"above_1_{round(1 / c)}"] = power_above(w, c, pad).numpy()
        out[name] = d
    return out


def frequency_profile(
    conv: nn.Conv2d, pad: int = 64, edges: tuple[float, float] = (1 / 8, 1 / 4)
) -> dict[str, float]:
    """Share of the layer's total filter power at radial frequency ``< edges[0]`` (low),
    ``edges[0] ... edges[1]`` (mid) and ``> edges[1]`` (high), in cycles per pixel."""
    f = _frequencies(pad)
    r = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    p = _power(conv.weight, pad).sum(0)
    total = float(p.sum()) or 1.0
    lo, hi = edges
    return {
        "low": float(p[r < lo].sum()) / total,
        "mid": float(p[(r >= lo) & (r <= hi)].sum()) / total,
        "high": float(p[r > hi].sum()) / total,
    }


def norm_share(conv: nn.Conv2d, top: int = 3) -> float:
    """Share of the summed filter norms held by the ``top`` largest filters (``top / C`` when
    all filters are alike, 1 when a few dominate)."""
    n = conv.weight.detach().flatten(1).norm(dim=1)
    if top < 1:
        raise FirstLayerError(f"top must be >= 1, got {top!r}")
    return float(n.topk(min(top, len(n))).values.sum() / n.sum().clamp_min(1e-30))


@torch.no_grad()
def layer1_mean_activation(
    model: nn.Module, images: torch.Tensor, batch_size: int = 250
) -> torch.Tensor:
    """``(C,)`` mean rectified layer-1 activation per map over ``images`` and positions (the
    forward pass stops after layer 1, in eval mode: :func:`zfcore.deconv.layer_activations`)."""
    total = None
    for s in range(0, len(images), batch_size):
        a = layer_activations(model, images[s : s + batch_size], ["layer1"])["layer1"]
        m = a.double().mean((2, 3)).sum(0)
        total = m if total is None else total + m
    return total / len(images)


def weak_maps(activity: torch.Tensor, rel: float = 0.01) -> torch.Tensor:
    """``(C,)`` bool: the maps whose mean activity (``(C,)``, e.g. :func:`layer1_mean_activation`)
    is below ``rel`` times the median over maps: the weak maps, the paper's "dead" filters of
    Fig. 6 as far as their response over the data tells."""
    if not 0 <= rel < 1:
        raise FirstLayerError(f"rel must be a share in [0, 1), not {rel!r}")
    activity = torch.as_tensor(activity)
    return activity < rel * activity.median().clamp_min(1e-30)


def weak_filters(model: nn.Module, images: torch.Tensor, rel: float = 0.01) -> torch.Tensor:
    """``(C,)`` bool: the first-layer maps of ``model`` whose mean rectified activation over
    ``images`` is below ``rel`` times the median over maps (:func:`weak_maps`)."""
    return weak_maps(layer1_mean_activation(model, images), rel)


@dataclass
class FirstLayer:
    """The numbers of section 4.1 for one network: its first-layer filters ``(C, 3, k, k)``,
    its weak maps (:func:`weak_maps`), aliased energy per filter, frequency bands, and norm share
    of the top filters."""

    name: str
    kernel: int
    stride: int
    filters: torch.Tensor
    weak: torch.Tensor
    aliased: torch.Tensor
    bands: dict
    top_norm_share: float
    top: int

    @property
    def weak_fraction(self) -> float:
        """The share of first-layer maps that are weak."""
        return float(self.weak.float().mean())

    @property
    def mean_aliased(self) -> float:
        """The mean over filters of the share of power above the stride's Nyquist frequency."""
        return float(self.aliased.mean())


def first_layer_from(
    conv: nn.Conv2d,
    activity: torch.Tensor,
    name: str = "",
    top: int = 3,
    rel: float = 0.01,
    pad: int = 64,
) -> FirstLayer:
    """The first-layer measurements of ``conv`` given its maps' mean activity over the data
    (``(C,)``, e.g. :func:`layer1_mean_activation` or a recorded one)."""
    return FirstLayer(
        name=name,
        kernel=conv.kernel_size[0],
        stride=conv.stride[0],
        filters=conv.weight.detach().clone(),
        weak=weak_maps(activity, rel),
        aliased=aliased_energy(conv, pad),
        bands=frequency_profile(conv, pad),
        top_norm_share=norm_share(conv, top),
        top=top,
    )


def first_layer_report(
    model: nn.Module, images: torch.Tensor, name: str = "", top: int = 3, rel: float = 0.01
) -> FirstLayer:
    """All first-layer measurements of ``model`` on ``images`` (normalised model inputs)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise FirstLayerError("images must be a (N, 3, H, W) tensor of normalised model inputs")
    return first_layer_from(
        first_conv(model), layer1_mean_activation(model, images), name, top=top, rel=rel
    )


def largest_filter_rms(model: nn.Module) -> float:
    """The largest filter RMS over every convolution of ``model`` (what feature-scale clipping,
    section 3, caps)."""
    return max(float(filter_rms(c).max()) for c in conv_layers(model))


def conv_with_filters(like: nn.Conv2d, filters: torch.Tensor) -> nn.Conv2d:
    """A copy of the convolution ``like`` (its stride and padding) holding ``filters`` (e.g. a
    network's recorded first-layer filters)."""
    if tuple(filters.shape) != tuple(like.weight.shape):
        raise FirstLayerError(
            f"filters {tuple(filters.shape)} do not fit the first layer {tuple(like.weight.shape)}"
        )
    conv = copy.deepcopy(like)
    with torch.no_grad():
        conv.weight.copy_(filters)
    return conv
