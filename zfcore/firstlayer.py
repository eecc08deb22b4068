"""Architecture selection (section 4.1, Fig. 6): the first layer measured.

Zeiler & Fergus looked at the first layers of Krizhevsky et al.'s network and saw (section 4.1,
Fig. 6): "the first layer filters are a mix of extremely high and low frequency information, with
little coverage of the mid frequencies"; "the 2nd layer visualization shows aliasing artifacts
caused by the large stride 4 used in the 1st layer convolutions"; and some filters "dead". They
reduced the first layer's filters from 11x11 to 7x7 and its stride from 4 to 2. Section 3 adds
that without feature-scale clipping "a few of the first layer filters ... dominate".

Each claim gets a number here:

* :func:`dead_filters`: first-layer maps whose rectified response over the data is near zero
  (mean activation below ``rel`` times the layer's median map);
* :func:`aliased_energy`: the share of each first-layer filter's frequency response above the
  Nyquist frequency of its stride (``1 / (2 * stride)`` cycles per pixel on either axis): what the
  strided convolution folds back onto lower frequencies;
* :func:`frequency_profile`: the share of filter energy in low, mid and high frequency bands (the
  "little coverage of the mid frequencies");
* :func:`norm_share`: the share of the total filter norm held by the ``top`` largest filters
  (dominance without clipping);
* :func:`aliasing_controls`: the aliased share beside the same layout's untrained filters and
  white noise, and both layouts on the same absolute bands (above 1/8 and 1/4 cycle per pixel):
  a white-noise filter already puts 94 % of its power above 1/8 and 75 % above 1/4, so "the
  11x11/4 layout aliases more" holds before any training; what training did is the change from
  the untrained filters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models import conv_layers
from .errors import ZFCoreError

__all__ = ["FirstLayer", "dead_filters", "aliased_energy", "frequency_profile", "norm_share",
           "first_layer_report", "FirstLayerError", "power_above", "noise_filters", "aliasing_controls",
           "ALIASING_CUTOFFS"]

#: The absolute frequency bands both layouts are compared on (cycles per pixel): above the
#: Nyquist frequency of a stride-4 sampling (1/8) and of a stride-2 sampling (1/4).
ALIASING_CUTOFFS = (1 / 8, 1 / 4)


class FirstLayerError(ZFCoreError, ValueError):
    """Bad input to the first-layer measurements."""


def _first_conv(model: nn.Module) -> nn.Conv2d:
    convs = conv_layers(model)
    if not convs:
        raise FirstLayerError(f"{type(model).__name__} has no convolution")
    return convs[0]


def _frequencies(n: int) -> torch.Tensor:
    return torch.fft.fftfreq(n, dtype=torch.float64).abs()      # cycles per pixel, 0 ... 0.5


def _power(weight: torch.Tensor, pad: int) -> torch.Tensor:
    """``(C, pad, pad)`` power spectrum of each filter (summed over input channels, mean removed)."""
    w = weight.detach().double()
    w = w - w.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.fft2(w, s=(pad, pad)).abs().pow(2).sum(1)


def power_above(weight: torch.Tensor, cutoff: float, pad: int = 64) -> torch.Tensor:
    """``(C,)``: per filter of ``weight`` ``(C, in, k, k)``, the share of its (mean-removed)
    power spectrum above ``cutoff`` cycles per pixel on either axis."""
    if weight.dim() != 4:
        raise FirstLayerError(f"weight must be (C, in, k, k), got {tuple(weight.shape)}")
    if not 0 < cutoff < 0.5:
        raise FirstLayerError(f"cutoff must be a frequency in (0, 0.5) cycles per pixel, not {cutoff!r}")
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


def aliasing_controls(trained: nn.Module, untrained: nn.Module, seed: int = 0,
                      pad: int = 64) -> dict:
    """Section 4.1's aliasing claim with its controls, for one layout: per first-layer filter
    (numpy ``(C,)``), the share of power above the layout's own stride Nyquist frequency
    (``own``) and above each absolute cutoff of :data:`ALIASING_CUTOFFS` (``above_1_8``,
    ``above_1_4``), for the ``trained`` network, the ``untrained`` one of the same layout
    (the weights training started from; filter ``i`` is filter ``i``'s start) and white
    ``noise`` filters of the same shape; plus ``kernel`` and ``stride``.

    What training did to aliasing is ``trained - untrained`` filter by filter; comparing it
    between layouts separates the layouts' learned difference from what the stride's Nyquist
    frequency alone gives (white noise already puts 94 % above 1/8 and 75 % above 1/4)."""
    ct, cu = _first_conv(trained), _first_conv(untrained)
    if ct.weight.shape != cu.weight.shape or ct.stride != cu.stride:
        raise FirstLayerError(f"trained and untrained first layers differ: {tuple(ct.weight.shape)} "
                              f"stride {ct.stride} vs {tuple(cu.weight.shape)} stride {cu.stride}")
    nyq = 0.5 / ct.stride[0]
    out: dict = {"kernel": ct.kernel_size[0], "stride": ct.stride[0]}
    for name, w in (("trained", ct.weight), ("untrained", cu.weight), ("noise", noise_filters(ct.weight, seed))):
        d = {"own": power_above(w, nyq, pad).numpy()}
        for c in ALIASING_CUTOFFS:
            d[f"above_1_{round(1 / c)}"] = power_above(w, c, pad).numpy()
        out[name] = d
    return out


def frequency_profile(conv: nn.Conv2d, pad: int = 64,
                      edges: tuple[float, float] = (1 / 8, 1 / 4)) -> dict[str, float]:
    """Share of the layer's total filter power at radial frequency ``< edges[0]`` (low),
    ``edges[0] ... edges[1]`` (mid) and ``> edges[1]`` (high), in cycles per pixel."""
    f = _frequencies(pad)
    r = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    p = _power(conv.weight, pad).sum(0)
    total = float(p.sum()) or 1.0
    lo, hi = edges
    return {"low": float(p[r < lo].sum()) / total, "mid": float(p[(r >= lo) & (r <= hi)].sum()) / total,
            "high": float(p[r > hi].sum()) / total}


def norm_share(conv: nn.Conv2d, top: int = 3) -> float:
    """Share of the summed filter norms held by the ``top`` largest filters (``top / C`` when
    all filters are alike, 1 when a few dominate)."""
    n = conv.weight.detach().flatten(1).norm(dim=1)
    if top < 1:
        raise FirstLayerError(f"top must be >= 1, got {top!r}")
    return float(n.topk(min(top, len(n))).values.sum() / n.sum().clamp_min(1e-30))


@torch.no_grad()
def layer1_mean_activation(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """``(C,)`` mean rectified layer-1 activation per map over ``images`` and positions (the
    forward pass stops after layer 1: :func:`zfcore.deconv.layer_activations`)."""
    from .deconv import layer_activations
    total = None
    for s in range(0, len(images), batch_size):
        a = layer_activations(model, images[s:s + batch_size], ["layer1"])["layer1"]
        m = a.double().mean((2, 3)).sum(0)
        total = m if total is None else total + m
    return total / len(images)


def dead_filters(model: nn.Module, images: torch.Tensor, rel: float = 0.01) -> torch.Tensor:
    """``(C,)`` bool: first-layer maps whose mean rectified activation over ``images`` is below
    ``rel`` times the median over maps ("dead" features, Fig. 6)."""
    m = layer1_mean_activation(model, images)
    return m < rel * m.median().clamp_min(1e-30)


@dataclass
class FirstLayer:
    """The numbers of section 4.1 for one network: its first-layer filters ``(C, 3, k, k)``,
    dead maps, aliased energy per filter, frequency bands, and norm share of the top filters."""

    name: str
    kernel: int
    stride: int
    filters: torch.Tensor
    dead: torch.Tensor
    aliased: torch.Tensor
    bands: dict
    top_norm_share: float
    top: int

    @property
    def dead_fraction(self) -> float:
        return float(self.dead.float().mean())

    @property
    def mean_aliased(self) -> float:
        return float(self.aliased.mean())


def first_layer_report(model: nn.Module, images: torch.Tensor, name: str = "", top: int = 3,
                       rel: float = 0.01) -> FirstLayer:
    """All first-layer measurements of ``model`` on ``images`` (normalised model inputs)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise FirstLayerError("images must be a (N, 3, H, W) tensor of normalised model inputs")
    conv = _first_conv(model)
    return FirstLayer(name=name, kernel=conv.kernel_size[0], stride=conv.stride[0],
                      filters=conv.weight.detach().clone(), dead=dead_filters(model, images, rel),
                      aliased=aliased_energy(conv), bands=frequency_profile(conv),
                      top_norm_share=norm_share(conv, top), top=top)
