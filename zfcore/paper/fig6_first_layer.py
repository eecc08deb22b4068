"""Section 4.1 of Zeiler & Fergus (2014): Fig. 6, architecture selection (notebook 06).

"The first layer filters are a mix of extremely high and low frequency information, with little
coverage of the mid frequencies. Additionally, the 2nd layer visualization shows aliasing
artifacts caused by the large stride 4 used in the 1st layer convolutions. To remedy these
problems, we (i) reduced the 1st layer filter size from 11x11 to 7x7 and (ii) made the stride of
the convolution 2, rather than 4." Fig. 6 (b) shows "dead" first-layer features of the 11x11/4
layout; section 3 adds that without feature-scale clipping "a few of the first layer filters ...
dominate". The measures are :mod:`zfcore.firstlayer`'s; here are the study, its numbers and its
verdicts:

* :func:`layout_records`: both layouts' records from the comparison study
  (:mod:`zfcore.paper.comparisons`), every seed on the complete schedule;
  :func:`record_reports` measures each seed's first layer beside the untrained network it started
  from; :func:`seed_numbers` and :func:`seed_verdicts` (hierarchical bootstraps over seeds, then
  filters) are the section's numbers and verdicts across seeds;
* :func:`selection_runs`: seed 0 of both layouts (and the clipping comparison where clipping
  engages), :func:`first_layer_reports`, :func:`section41_numbers`, :func:`reports_text`,
  :func:`mid_frequency_verdict`, :func:`clipping_pair` and :func:`clipping_verdict`;
* :func:`layer2_features`: Fig. 6 (d)-(e), the strongest layer-2 activations projected;
* :func:`aliasing_study` with :func:`aliasing_numbers`, :func:`aliasing_text`,
  :func:`aliasing_verdicts` and :func:`dead_filter_verdict`: the same claims on one seed of each
  layout, bootstrapped over filters only.

The paper's "dead" filters are measured as *weak* maps (:func:`zfcore.firstlayer.weak_maps`: mean
activity below 1 % of the median map); the record keys keep the paper's word
(``<layout>_dead_fraction``, ``fig6_krizhevsky_more_dead_filters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ZFCoreError
from ..evolution import strongest_projections
from ..firstlayer import (
    ALIASING_BANDS,
    FirstLayer,
    FirstLayerError,
    aliasing_bands,
    aliasing_controls,
    conv_with_filters,
    first_conv,
    first_layer_from,
    first_layer_report,
    largest_filter_rms,
)
from ..profiles import Profile, get_profile
from ..train import build_model, layer_parameters, make_spec, trained_model, training_run
from .comparisons import NetworkRecord, network_records, study_jobs
from .headline import Numbers
from .verdicts import Verdict, hierarchical_bootstrap, unpaired_bootstrap

__all__ = [
    "Fig6Error",
    "LAYOUTS",
    "RUN_KEYS",
    "LAYOUT_NAMES",
    "layout_records",
    "record_reports",
    "seed_verdicts",
    "seed_numbers",
    "SelectionRuns",
    "check_clip_demo",
    "selection_runs",
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
]


class Fig6Error(ZFCoreError, ValueError):
    """Bad input to notebook 06's study (a clip_demo setting, a record of another layout)."""


#: The two first-layer layouts of Fig. 6 (record key -> architecture): 7x7/2 and 11x11/4.
LAYOUTS = {"zf": "zfnet", "krizhevsky": "krizhevsky"}

#: The label of each network of notebook 06 and the prefix of its recorded numbers.
RUN_KEYS = {
    "ZF 7x7/2": "zf",
    "Krizhevsky 11x11/4": "krizhevsky",
    "ZF 7x7/2, no clipping": "zf_noclip",
    "ZF 7x7/2, clipping (demo rate)": "zf_clip_demo",
}

#: The label of each layout's seeds (record key -> the network's name in notebook 06).
LAYOUT_NAMES = {"zf": "ZF 7x7/2", "krizhevsky": "Krizhevsky 11x11/4"}


def check_clip_demo(clip_demo) -> None:
    """``clip_demo`` must be None or ``{"lr_factor": a positive number}``."""
    if clip_demo is not None and not (
        isinstance(clip_demo, dict)
        and set(clip_demo) == {"lr_factor"}
        and isinstance(clip_demo["lr_factor"], (int, float))
        and clip_demo["lr_factor"] > 0
    ):
        raise Fig6Error(
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
            f"{main_rms:.3f}), so no filter could come to dominate; set clip_demo to compare at a "
            f"higher rate."
        )


def selection_runs(profile, schedule: Mapping, clip_demo: "Mapping | None" = None) -> SelectionRuns:
    """Train (or load) the 7x7/2 and 11x11/4 layouts on ``schedule`` (section 4.1), and, when
    feature-scale clipping renormalised filters, the 7x7/2 layout without it (section 3). When it
    never engaged on the profile's recipe and ``clip_demo`` is set, the same schedule at
    ``clip_demo["lr_factor"]`` times the rate is tried, and used when clipping engages there."""
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
            f"Feature-scale clipping never engaged on the profile's recipe (radius {P.clip_rms}; "
            f"no filter's RMS exceeded it in {schedule['epochs']} epoch(s)). At "
            f"{clip_demo['lr_factor']:g}x the learning rate it renormalised {clipped_demo} "
            f"filter(s); the clipping comparison below uses that setting."
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
            f"{r.name:32s} {r.weak_fraction:9.1%} {r.mean_aliased:8.1%} {r.bands['low']:6.1%} "
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
                f"{k}_dead_fraction": r.weak_fraction,
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
    """Fig. 6's dead filters: the share of weak first-layer maps of the 11x11/4 layout minus the
    7x7/2 one's, in points, bootstrapped over each network's filters (seed variance not
    included)."""
    return unpaired_bootstrap(
        "fig6_krizhevsky_more_dead_filters",
        krizhevsky.weak.float().numpy(),
        zf.weak.float().numpy(),
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
    return {
        key: aliasing_controls(
            trained_model(profile, arch=arch, **schedule),
            build_model(make_spec(profile, arch)).eval(),
        )
        for key, arch in LAYOUTS.items()
    }


def aliasing_numbers(alias: Mapping[str, dict]) -> dict:
    """The mean power shares per layout, filter set and band (``<layout>_power_<band>_<set>``;
    the ``own`` band is the aliased share)."""
    out = {}
    for key, a in alias.items():
        for which in ("trained", "untrained", "noise"):
            out.update(
                {f"{key}_power_{b}_{which}": float(a[which][b].mean()) for b in ALIASING_BANDS}
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


def layout_records(
    profile: "str | Profile",
    seeds: "int | None" = None,
    *,
    workers: int = 1,
    train_missing: bool = True,
) -> "dict[str, list[NetworkRecord]]":
    """Both layouts' records from the comparison study, ``{"zf": [...], "krizhevsky": [...]}`` in
    seed order: the Fig. 3 network (Table 3's ``zf``) and Krizhevsky's 11x11/4 layout, each with
    ``seeds`` seeds (default the profile's ``comparison_seeds``) on the complete schedule,
    trained first where missing unless ``train_missing`` is False."""
    P = get_profile(profile)
    jobs = study_jobs(P, ["table3", "krizhevsky"], ["zf"], seeds)
    records = network_records(P, jobs, workers=workers, train_missing=train_missing)
    group = {"zf": "table3", "krizhevsky": "krizhevsky"}
    return {
        key: [records[j.name] for j in jobs if j.group == g and j.name in records]
        for key, g in group.items()
    }


def _record_conv(record: NetworkRecord, untrained: nn.Module) -> "tuple[nn.Conv2d, nn.Conv2d]":
    """The recorded network's first layer (its filters in a copy of the untrained layout's first
    convolution, so the stride comes with it) and the untrained one it started from."""
    start = first_conv(untrained)
    try:
        return conv_with_filters(start, record.layer1_filters), start
    except FirstLayerError as e:
        raise Fig6Error(f"record {record.job.name}: {e}") from None


def record_reports(
    profile, records: Sequence, name: str, top: int = 3, rel: float = 0.01, pad: int = 64
) -> "list[tuple[FirstLayer, dict]]":
    """Per seed of one layout (``records``: :class:`zfcore.paper.comparisons.NetworkRecord` of
    its seeds), its :class:`~zfcore.firstlayer.FirstLayer` (weak maps from the recorded layer-1
    activity: mean below ``rel`` times the median map) and its
    :func:`~zfcore.firstlayer.aliasing_controls` bands beside the untrained network that seed
    started from."""
    P = get_profile(profile)
    out = []
    for rec in records:
        untrained = build_model(rec.job.spec(P)).eval()
        conv, start = _record_conv(rec, untrained)
        report = first_layer_from(conv, rec.layer1_activity, name, top=top, rel=rel, pad=pad)
        out.append((report, aliasing_bands(conv, start, pad=pad)))
    return out


def seed_verdicts(seeds: Mapping[str, list]) -> list[Verdict]:
    """Section 4.1's claims across training seeds (``seeds``: ``{"zf": ..., "krizhevsky": ...}``
    of :func:`record_reports`), 11x11/4 minus 7x7/2 in percentage points, each a hierarchical
    bootstrap (each layout's seeds, then its filters): more dead first-layer maps
    (``fig6_krizhevsky_more_dead_filters``); more power above the own stride's Nyquist frequency
    as trained; more of it from training (trained minus untrained, filter by filter), on the own
    Nyquist frequency and above 1/8 cycle per pixel."""

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
            ("fig6_krizhevsky_more_dead_filters", lambda r, b: r.weak.numpy()),
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
    """The numbers notebook 06 records across seeds, per layout (mean over seeds): dead (weak)
    fraction, aliased energy, mid-frequency share, top-filter norm share, validation accuracy,
    and the mean power shares per filter set and band (``<layout>_power_<band>_<set>``); plus
    ``seeds``."""
    out: dict = {"seeds": min(len(v) for v in seeds.values())}
    for key, v in seeds.items():
        reps = [r for r, _ in v]
        top = reps[0].top
        out.update(
            {
                f"{key}_dead_fraction": float(np.mean([r.weak_fraction for r in reps])),
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
    return out


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 06_architecture_selection records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 6: 11x11/4 first layers alias more than 7x7/2",
        lambda n: (
            "filter energy above the stride's Nyquist frequency: "
            f"{n.pct('krizhevsky_aliased_energy')} "
            f"(11x11/4) against {n.pct('zf_aliased_energy')} (7x7/2); mid-frequency share "
            f"{n.pct('krizhevsky_mid_frequency_share')} against {n.pct('zf_mid_frequency_share')} "
            f"(means over {n.f('seeds', 'd')}+ seeds)"
        ),
    ),
    (
        "Fig. 6: 11x11/4 leaves dead filters",
        lambda n: (
            f"dead first-layer maps: {n.pct('krizhevsky_dead_fraction')} (11x11/4) against "
            f"{n.pct('zf_dead_fraction')} (7x7/2)"
        ),
    ),
]
