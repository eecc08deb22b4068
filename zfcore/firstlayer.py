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

Notebook 06 gets its runs and verdicts from here: :func:`selection_runs` (both layouts on the
comparison schedule, and the clipping comparison where clipping engages), :func:`layer2_features`
(Fig. 6 d-e), :func:`section41_numbers`, :func:`dead_filter_verdict`, :func:`clipping_verdict`,
:func:`aliasing_study` with :func:`aliasing_verdicts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import ZFCoreError
from .models import conv_layers, filter_rms
from .paper.verdicts import Verdict, unpaired_bootstrap

__all__ = [
    "FirstLayer",
    "dead_filters",
    "aliased_energy",
    "frequency_profile",
    "norm_share",
    "first_layer_report",
    "FirstLayerError",
    "power_above",
    "noise_filters",
    "aliasing_controls",
    "ALIASING_CUTOFFS",
    "LAYOUTS",
    "RUN_KEYS",
    "SelectionRuns",
    "check_clip_demo",
    "selection_runs",
    "largest_filter_rms",
    "first_layer_reports",
    "reports_text",
    "section41_numbers",
    "mid_frequency_verdict",
    "dead_filter_verdict",
    "clipping_pair",
    "clipping_verdict",
    "layer2_features",
    "aliasing_study",
    "aliasing_numbers",
    "aliasing_text",
    "aliasing_verdicts",
    "ALIASING_BANDS",
    "record_reports",
    "seed_verdicts",
    "seed_numbers",
]

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
    return torch.fft.fftfreq(n, dtype=torch.float64).abs()  # cycles per pixel, 0 ... 0.5


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
    ct, cu = _first_conv(trained), _first_conv(untrained)
    if ct.weight.shape != cu.weight.shape or ct.stride != cu.stride:
        raise FirstLayerError(
            f"trained and untrained first layers differ: {tuple(ct.weight.shape)} "
            f"stride {ct.stride} vs {tuple(cu.weight.shape)} stride {cu.stride}"
        )
    return _aliasing_bands(ct, cu, seed, pad)


def _aliasing_bands(trained: nn.Conv2d, untrained: nn.Conv2d, seed: int = 0, pad: int = 64) -> dict:
    """:func:`aliasing_controls` of two first-layer convolutions of one layout."""
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
    forward pass stops after layer 1: :func:`zfcore.deconv.layer_activations`)."""
    from .deconv import layer_activations

    total = None
    for s in range(0, len(images), batch_size):
        a = layer_activations(model, images[s : s + batch_size], ["layer1"])["layer1"]
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


def first_layer_report(
    model: nn.Module, images: torch.Tensor, name: str = "", top: int = 3, rel: float = 0.01
) -> FirstLayer:
    """All first-layer measurements of ``model`` on ``images`` (normalised model inputs)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise FirstLayerError("images must be a (N, 3, H, W) tensor of normalised model inputs")
    conv = _first_conv(model)
    return FirstLayer(
        name=name,
        kernel=conv.kernel_size[0],
        stride=conv.stride[0],
        filters=conv.weight.detach().clone(),
        dead=dead_filters(model, images, rel),
        aliased=aliased_energy(conv),
        bands=frequency_profile(conv),
        top_norm_share=norm_share(conv, top),
        top=top,
    )


# ---------------------------------------------------------------------------------------------
# Notebook 06: the runs of Fig. 6, its numbers and its verdicts
# ---------------------------------------------------------------------------------------------

#: The two first-layer layouts of Fig. 6 (record key -> architecture): 7x7/2 and 11x11/4.
LAYOUTS = {"zf": "zfnet", "krizhevsky": "krizhevsky"}

#: The label of each network of notebook 06 and the prefix of its recorded numbers.
RUN_KEYS = {
    "ZF 7x7/2": "zf",
    "Krizhevsky 11x11/4": "krizhevsky",
    "ZF 7x7/2, no clipping": "zf_noclip",
    "ZF 7x7/2, clipping (demo rate)": "zf_clip_demo",
}

#: The bands of :func:`aliasing_controls` in the order they are printed and recorded.
ALIASING_BANDS = ("own", "above_1_8", "above_1_4")


def largest_filter_rms(model: nn.Module) -> float:
    """The largest filter RMS over every convolution of ``model`` (what feature-scale clipping,
    section 3, caps)."""
    return max(float(filter_rms(c).max()) for c in conv_layers(model))


def check_clip_demo(clip_demo) -> None:
    """``clip_demo`` must be None or ``{"lr_factor": a positive number}``."""
    if clip_demo is not None and not (
        isinstance(clip_demo, dict)
        and set(clip_demo) == {"lr_factor"}
        and isinstance(clip_demo["lr_factor"], (int, float))
        and clip_demo["lr_factor"] > 0
    ):
        raise FirstLayerError(
            f"clip_demo must be None or {{'lr_factor': a positive number}}, got {clip_demo!r}"
        )


@dataclass
class SelectionRuns:
    """The trainings behind Fig. 6 and section 3's clipping claim: ``runs`` maps a label of
    :data:`RUN_KEYS` to its :class:`zfcore.train.TrainRun` (the two layouts first, then the
    clipping comparison if clipping engaged); ``clipped`` the filters clipping renormalised in
    the run the comparison uses; ``clip_setting`` that run's overrides; ``noclip_rms`` the largest
    filter RMS without clipping; ``note`` the sentence on the higher-rate demo ("" if not tried)."""

    runs: dict
    epochs: int
    clipped: int
    clip_setting: dict
    noclip_rms: float
    clip_radius: "float | None"
    lr: float
    note: str = ""

    def layout_models(self) -> dict:
        """The two layouts' trained networks (7x7/2 and 11x11/4), by label."""
        return {name: r.model() for name, r in list(self.runs.items())[:2]}

    def text(self) -> str:
        """Per run: validation accuracy, filters renormalised by clipping, largest filter RMS."""
        return "\n".join(
            f"{name:32s} val accuracy {r.final.val_accuracy:5.1f}%  filters renormalised by "
            f"clipping: {sum(h.clipped_filters for h in r.history)}; largest filter RMS at the end "
            f"{largest_filter_rms(r.model()):.3f}"
            for name, r in self.runs.items()
        )

    def untestable_text(self, main_rms: float, clip_demo: "Mapping | None" = None) -> str:
        """Why section 3's clipping claim cannot be tested here (clipping never engaged), with the
        largest filter RMS reached on this schedule and by the main run (``main_rms``)."""
        demo = (
            ""
            if not clip_demo
            else ", not even at " + format(clip_demo["lr_factor"], "g") + "x the rate"
        )
        return (
            f"Clipping: not testable here - it never engaged on this schedule (largest filter RMS "
            f"{self.noclip_rms:.3f} < {self.clip_radius}{demo}; the main run's largest at its end: "
            f"{main_rms:.3f}), so no filter could come to dominate; set clip_demo to compare at a higher rate."
        )


def selection_runs(profile, schedule: Mapping, clip_demo: "Mapping | None" = None) -> SelectionRuns:
    """Train (or load) the 7x7/2 and 11x11/4 layouts on ``schedule`` (section 4.1), and, when
    feature-scale clipping renormalised filters, the 7x7/2 layout without it (section 3). When it
    never engaged on the profile's recipe and ``clip_demo`` is set, the same schedule at
    ``clip_demo["lr_factor"]`` times the rate is tried, and used when clipping engages there."""
    from .profiles import get_profile
    from .train import training_run

    check_clip_demo(clip_demo)
    P = get_profile(profile)
    runs = {
        "ZF 7x7/2": training_run(profile, **schedule),
        "Krizhevsky 11x11/4": training_run(profile, arch="krizhevsky", **schedule),
    }
    clipped = sum(h.clipped_filters for h in runs["ZF 7x7/2"].history)
    clip_setting, note = dict(schedule), ""
    if not clipped and P.clip_rms is not None and clip_demo:  # the same schedule at a higher rate
        clip_setting["lr"] = P.lr * clip_demo["lr_factor"]
        demo = training_run(profile, **clip_setting)
        clipped_demo = sum(h.clipped_filters for h in demo.history)
        note = (
            f"Feature-scale clipping never engaged on the profile's recipe (radius {P.clip_rms}; no filter's RMS "
            f"exceeded it in {schedule['epochs']} epoch(s)). At {clip_demo['lr_factor']:g}x the learning rate it "
            f"renormalised {clipped_demo} filter(s); the clipping comparison below uses that setting."
        )
        if clipped_demo:
            runs["ZF 7x7/2, clipping (demo rate)"] = demo
            clipped = clipped_demo
    if clipped:
        runs["ZF 7x7/2, no clipping"] = training_run(profile, clip_rms=None, **clip_setting)
    noclip_rms = (
        largest_filter_rms(runs["ZF 7x7/2, no clipping"].model())
        if clipped
        else max(h.max_filter_rms for h in runs["ZF 7x7/2"].history)
    )
    return SelectionRuns(
        runs, schedule["epochs"], clipped, clip_setting, noclip_rms, P.clip_rms, P.lr, note
    )


def first_layer_reports(runs: Mapping, images: torch.Tensor, top: int = 3) -> list[FirstLayer]:
    """:func:`first_layer_report` of every run's final network (``{label: TrainRun}``), in order."""
    return [first_layer_report(r.model(), images, name, top=top) for name, r in runs.items()]


def reports_text(reports: Sequence[FirstLayer]) -> str:
    """Section 4.1's numbers per network as printed text: dead maps, aliased energy, frequency
    bands, the norm share of the top filters."""
    top = reports[0].top
    lines = [
        f"{'network':32s} {'dead maps':>9s} {'aliased':>8s} {'low':>6s} {'mid':>6s} {'high':>6s} "
        f"{'top-' + str(top) + ' norm share':>16s}"
    ]
    for r in reports:
        lines.append(
            f"{r.name:32s} {r.dead_fraction:9.1%} {r.mean_aliased:8.1%} {r.bands['low']:6.1%} "
            f"{r.bands['mid']:6.1%} {r.bands['high']:6.1%} {r.top_norm_share:16.1%}"
        )
    return "\n".join(lines)


def section41_numbers(reports: Sequence[FirstLayer], sel: SelectionRuns) -> dict:
    """The numbers notebook 06 records for section 4.1: per network (prefix from
    :data:`RUN_KEYS`) dead fraction, aliased energy, mid-frequency share, top-filter norm share and
    validation accuracy; then the schedule, the uniform norm share and the clipping setting."""
    top, out = reports[0].top, {}
    for r in reports:
        k = RUN_KEYS[r.name]
        out.update(
            {
                f"{k}_dead_fraction": r.dead_fraction,
                f"{k}_aliased_energy": r.mean_aliased,
                f"{k}_mid_frequency_share": r.bands["mid"],
                f"{k}_top{top}_norm_share": r.top_norm_share,
                f"{k}_val_accuracy": sel.runs[r.name].final.val_accuracy,
            }
        )
    out.update(
        schedule_epochs=sel.epochs,
        uniform_norm_share=top / len(reports[0].filters),
        zf_filters_clipped=sel.clipped,
        clip_radius=sel.clip_radius,
        max_filter_rms_without_clipping=sel.noclip_rms,
        clip_comparison_lr=sel.clip_setting.get("lr", sel.lr),
    )
    return out


def mid_frequency_verdict(zf: FirstLayer, krizhevsky: FirstLayer) -> str:
    """Section 4.1's "little coverage of the mid frequencies" in the 11x11/4 layer: "held" when
    the 7x7/2 filters put a larger share of their power in the mid band, else "did not hold"."""
    return "held" if zf.bands["mid"] > krizhevsky.bands["mid"] else "did not hold"


def dead_filter_verdict(krizhevsky: FirstLayer, zf: FirstLayer) -> Verdict:
    """Fig. 6's dead filters: the share of dead first-layer maps of the 11x11/4 layout minus the
    7x7/2 one's, in points, bootstrapped over each network's filters (seed variance not included)."""
    return unpaired_bootstrap(
        "fig6_krizhevsky_more_dead_filters",
        krizhevsky.dead.float().numpy(),
        zf.dead.float().numpy(),
        scale=100,
        unit="points",
        what="filters",
    )


def clipping_pair(reports: Sequence[FirstLayer]) -> "tuple[FirstLayer, FirstLayer] | None":
    """``(without clipping, with clipping)`` among the reports of :func:`selection_runs`'s runs:
    the demo-rate run when there is one, else the 7x7/2 run; None when clipping never engaged."""
    by_name = {r.name: r for r in reports}
    if "ZF 7x7/2, no clipping" not in by_name:
        return None
    return by_name["ZF 7x7/2, no clipping"], by_name.get(
        "ZF 7x7/2, clipping (demo rate)", by_name["ZF 7x7/2"]
    )


def _top_share(top: int):
    def share(x):  # rows of filter norms -> share of the top filters
        return np.sort(x, axis=-1)[..., -top:].sum(-1) / x.sum(-1)

    return share


def clipping_verdict(no_clip: FirstLayer, with_clip: FirstLayer, top: int = 3) -> Verdict:
    """Section 3: without feature-scale clipping "a few of the first layer filters ... dominate".
    The share of the first layer's total filter norm held by its ``top`` largest filters without
    clipping minus with it, in points, bootstrapped over each network's filters."""

    def norms(r):
        return r.filters.flatten(1).norm(dim=1).double().numpy()

    return unpaired_bootstrap(
        "fig6_clipping_stops_domination",
        norms(no_clip),
        norms(with_clip),
        stat=_top_share(top),
        scale=100,
        unit="points",
        what="filters",
    )


def layer2_features(
    models: Mapping[str, nn.Module], images: torch.Tensor, n_maps: int, seed: int = 0
) -> dict:
    """Fig. 6 (d)-(e): for ``n_maps`` layer-2 maps of each network drawn at random (one generator
    seeded ``seed``, drawn network after network), their strongest activation over ``images``
    projected to pixels (:func:`zfcore.evolution.strongest_projections`), by network."""
    from .evolution import strongest_projections
    from .train import layer_parameters

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in models.items():
        n = layer_parameters(m)["layer2"][0].shape[0]
        maps = sorted(torch.randperm(n, generator=g)[:n_maps].tolist())
        out[name] = strongest_projections(m, images, {"layer2": maps})
    return out


def aliasing_study(profile, schedule: Mapping) -> dict:
    """:func:`aliasing_controls` of both :data:`LAYOUTS` trained on ``schedule`` beside their
    untrained networks (the weights training started from), by record key."""
    from .train import build_model, make_spec, trained_model

    return {
        key: aliasing_controls(
            trained_model(profile, arch=arch, **schedule),
            build_model(make_spec(profile, arch)).eval(),
        )
        for key, arch in LAYOUTS.items()
    }


def aliasing_numbers(alias: Mapping[str, dict]) -> dict:
    """The mean power shares notebook 06 records per layout, filter set and band, and each
    layout's aliased share of the untrained and the noise filters."""
    out = {}
    for key, a in alias.items():
        for which in ("trained", "untrained", "noise"):
            out.update(
                {f"{key}_power_{b}_{which}": float(a[which][b].mean()) for b in ALIASING_BANDS}
            )
        out.update(
            {
                f"{key}_aliased_energy_untrained": float(a["untrained"]["own"].mean()),
                f"{key}_aliased_energy_noise": float(a["noise"]["own"].mean()),
            }
        )
    return out


def aliasing_text(alias: Mapping[str, dict]) -> str:
    """The mean share of power per layout, filter set and band, as printed text."""
    lines = [
        f"{'layout':12s} {'filters':10s} "
        + " ".join(f"{b:>10s}" for b in ALIASING_BANDS)
        + "   (mean share of power)"
    ]
    for key, a in alias.items():
        for which in ("trained", "untrained", "noise"):
            lines.append(
                f"{key:12s} {which:10s} "
                + " ".join(f"{a[which][b].mean():10.1%}" for b in ALIASING_BANDS)
            )
    return "\n".join(lines)


def aliasing_verdicts(alias: Mapping[str, dict]) -> list[Verdict]:
    """Section 4.1's aliasing, three verdicts, each 11x11/4 minus 7x7/2 in percentage points with
    a bootstrap over filters: the trained filters' share above their own Nyquist frequency; what
    training changed there (trained minus untrained, filter by filter); and what training changed
    above 1/8 cycle per pixel (the same absolute band for both layouts)."""
    kr, zf = alias["krizhevsky"], alias["zf"]

    def learned(a, b):
        return a["trained"][b] - a["untrained"][b]

    kw = dict(scale=100, unit="pp", what="filters")
    return [
        unpaired_bootstrap(
            "aliasing_krizhevsky_vs_zf_trained", kr["trained"]["own"], zf["trained"]["own"], **kw
        ),
        unpaired_bootstrap(
            "aliasing_krizhevsky_vs_zf_from_training", learned(kr, "own"), learned(zf, "own"), **kw
        ),
        unpaired_bootstrap(
            "power_above_1_8_krizhevsky_vs_zf_from_training",
            learned(kr, "above_1_8"),
            learned(zf, "above_1_8"),
            **kw,
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Fig. 6 across training seeds: the comparison study's records of both layouts
# ---------------------------------------------------------------------------------------------


def _record_conv(record, untrained: nn.Module) -> "tuple[nn.Conv2d, nn.Conv2d]":
    """The recorded network's first layer (its filters in a copy of the untrained layout's first
    convolution, so the stride comes with it) and the untrained one it started from."""
    import copy

    start = _first_conv(untrained)
    conv = copy.deepcopy(start)
    if tuple(record.layer1_filters.shape) != tuple(conv.weight.shape):
        raise FirstLayerError(
            f"record {record.job.name}: filters {tuple(record.layer1_filters.shape)} do not fit "
            f"the layout's first layer {tuple(conv.weight.shape)}"
        )
    with torch.no_grad():
        conv.weight.copy_(record.layer1_filters)
    return conv, start


def record_reports(
    profile, records: Sequence, name: str, top: int = 3, rel: float = 0.01, pad: int = 64
) -> "list[tuple[FirstLayer, dict]]":
    """Per seed of one layout (``records``: :class:`zfcore.comparisons.NetworkRecord` of its
    seeds), its :class:`FirstLayer` (dead maps from the recorded layer-1 activity: mean below
    ``rel`` times the median map) and its :func:`aliasing_controls`-style bands beside the
    untrained network that seed started from."""
    from .profiles import get_profile
    from .train import build_model

    P = get_profile(profile)
    out = []
    for rec in records:
        untrained = build_model(rec.job.spec(P)).eval()
        conv, start = _record_conv(rec, untrained)
        act = rec.layer1_activity
        report = FirstLayer(
            name=name,
            kernel=conv.kernel_size[0],
            stride=conv.stride[0],
            filters=conv.weight.detach().clone(),
            dead=act < rel * act.median().clamp_min(1e-30),
            aliased=aliased_energy(conv, pad),
            bands=frequency_profile(conv, pad),
            top_norm_share=norm_share(conv, top),
            top=top,
        )
        out.append((report, _aliasing_bands(conv, start, pad=pad)))
    return out


def seed_verdicts(seeds: Mapping[str, list]) -> list[Verdict]:
    """Section 4.1's claims across training seeds (``seeds``: ``{"zf": ..., "krizhevsky": ...}``
    of :func:`record_reports`), 11x11/4 minus 7x7/2 in percentage points, each a hierarchical
    bootstrap (each layout's seeds, then its filters): more dead first-layer maps
    (``fig6_krizhevsky_more_dead_filters``); more power above the own stride's Nyquist frequency
    as trained; more of it from training (trained minus untrained, filter by filter), on the own
    Nyquist frequency and above 1/8 cycle per pixel."""
    from .paper.verdicts import hierarchical_bootstrap

    def arrays(fn):
        return {
            k: {f"{k}_filters": np.stack([np.asarray(fn(r, b), dtype=float) for r, b in v])}
            for k, v in seeds.items()
        }

    def diff(m):
        return 100 * (m["krizhevsky"]["krizhevsky_filters"] - m["zf"]["zf_filters"])

    kw = dict(unit="pp", what="filters")
    return [
        hierarchical_bootstrap(claim, arrays(fn), diff, **kw)
        for claim, fn in (
            ("fig6_krizhevsky_more_dead_filters", lambda r, b: r.dead.numpy()),
            ("aliasing_krizhevsky_vs_zf_trained", lambda r, b: b["trained"]["own"]),
            (
                "aliasing_krizhevsky_vs_zf_from_training",
                lambda r, b: b["trained"]["own"] - b["untrained"]["own"],
            ),
            (
                "power_above_1_8_krizhevsky_vs_zf_from_training",
                lambda r, b: b["trained"]["above_1_8"] - b["untrained"]["above_1_8"],
            ),
        )
    ]


def seed_numbers(seeds: Mapping[str, list], records: Mapping[str, Sequence]) -> dict:
    """The numbers notebook 06 records across seeds, per layout (mean over seeds): dead fraction,
    aliased energy, mid-frequency share, top-filter norm share, validation accuracy, and the
    mean power shares per filter set and band; plus ``seeds``."""
    out: dict = {"seeds": min(len(v) for v in seeds.values())}
    for key, v in seeds.items():
        reps = [r for r, _ in v]
        top = reps[0].top
        out.update(
            {
                f"{key}_dead_fraction": float(np.mean([r.dead_fraction for r in reps])),
                f"{key}_aliased_energy": float(np.mean([r.mean_aliased for r in reps])),
                f"{key}_mid_frequency_share": float(np.mean([r.bands["mid"] for r in reps])),
                f"{key}_top{top}_norm_share": float(np.mean([r.top_norm_share for r in reps])),
                f"{key}_val_accuracy": float(
                    np.mean([100 - x.val_top1_error for x in records[key]])
                ),
                f"{key}_val_accuracy_per_seed": [100 - x.val_top1_error for x in records[key]],
            }
        )
        for which in ("trained", "untrained", "noise"):
            out.update(
                {
                    f"{key}_power_{b}_{which}": float(np.mean([bd[which][b].mean() for _, bd in v]))
                    for b in ALIASING_BANDS
                }
            )
        out[f"{key}_aliased_energy_untrained"] = out[f"{key}_power_own_untrained"]
        out[f"{key}_aliased_energy_noise"] = out[f"{key}_power_own_noise"]
    return out
