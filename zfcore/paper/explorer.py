"""Figs. 1, 2 and 7 interactively (notebook 12): the explorer's responsiveness and object focus.

The explorer (:mod:`zfcore.widgets`) puts the paper's knobs in the reader's hands: layer, feature
map, projection rule (the deconvnet of section 2.1, Fig. 1), image, the map's top-9 (Fig. 2) and
the occlusion map (Fig. 7). Notebook 12 records two things about it:

* how fast it redraws: a scripted tour of user actions (:func:`zfcore.widgets.scripted_tour`),
  summed up by :func:`tour_numbers` (target: the 95th percentile under half a second);
* section 4.2's reading that the strong layer-5 features are about the object, measured with the
  explorer's own "strongest map" button (:func:`zfcore.focus.object_focus`) on the trained and
  the untrained network of the same layout: :func:`focus_numbers`, and, image by image
  (:func:`paired_object_focus`), the verdicts of :func:`paired_focus_checks`.

Sessions are taken as they come (anything with the explorer session's selection methods): this
module imports no widgets.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..focus import object_focus
from . import verdicts
from .headline import Numbers

__all__ = [
    "TARGET_P95_S",
    "tour_numbers",
    "tour_sentence",
    "focus_numbers",
    "focus_sentence",
    "paired_object_focus",
    "paired_focus_numbers",
    "paired_focus_checks",
    "paired_focus_sentence",
]

#: The responsiveness target: the 95th percentile of redraw times, in seconds.
TARGET_P95_S = 0.5


def tour_numbers(first_draw_s: float, tour) -> dict:
    """Notebook 12's responsiveness keys: the first draw (``first_draw_s``: loading the model and
    mining or loading the top-9) and the median and 95th percentile of a scripted tour's redraws
    (``tour``: :class:`zfcore.widgets.Timings`), with the number of actions."""
    return {
        "explorer_first_draw_s": first_draw_s,
        "explorer_redraw_p95_s": tour.percentile(95, skip_first=False),
        "explorer_redraw_median_s": tour.percentile(50, skip_first=False),
        "explorer_tour_actions": len(tour.records),
    }


def tour_sentence(numbers: dict) -> str:
    """:func:`tour_numbers` in words, against :data:`TARGET_P95_S`."""
    return (
        f"first draw {numbers['explorer_first_draw_s']:.2f} s; over "
        f"{numbers['explorer_tour_actions']} actions: median "
        f"{numbers['explorer_redraw_median_s']:.3f} s, 95th percentile "
        f"{numbers['explorer_redraw_p95_s']:.3f} s (target: under {TARGET_P95_S} s)"
    )


def focus_numbers(trained: dict, untrained: dict) -> dict:
    """Notebook 12's object-focus keys from :func:`zfcore.focus.object_focus` of the trained and
    the untrained network over the same images: how many images the trained network measured,
    its mean energy and area shares, the share of images whose energy share beats the area, and
    the untrained network's mean energy share."""
    e, a = trained["energy_share"], trained["area_share"]
    return {
        "object_focus_images": len(e),
        "object_focus_energy_share_mean": e.mean(),
        "object_focus_area_share_mean": a.mean(),
        "object_focus_images_above_area": (e > a).mean(),
        "object_focus_untrained_energy_share_mean": untrained["energy_share"].mean(),
    }


def focus_sentence(numbers: dict, split: str, layer: str = "layer5") -> str:
    """:func:`focus_numbers` in words (``split``: where the images come from)."""
    return (
        f"On {numbers['object_focus_images']} {split} images the strongest "
        f"{layer.replace('layer', 'layer-')} map's projection put "
        f"{numbers['object_focus_energy_share_mean']:.0%} of its energy on the object, which "
        f"covers {numbers['object_focus_area_share_mean']:.0%} of the image; the untrained "
        f"network put {numbers['object_focus_untrained_energy_share_mean']:.0%} there "
        f"(verdicts below)."
    )


def paired_object_focus(sessions: dict, indices: Sequence[int], layer: str = "layer5") -> dict:
    """:func:`zfcore.focus.object_focus` for several explorer sessions on the same images,
    aligned: ``{name: {"energy_share", "area_share", "units"}}`` numpy arrays over the images
    every session could measure (a projection of all zeros or an image without a box is left out
    for all)."""
    per = {
        name: [object_focus(s, [int(i)], layer) for i in indices] for name, s in sessions.items()
    }
    ok = [k for k in range(len(indices)) if all(len(per[n][k]["energy_share"]) for n in per)]
    return {
        n: {
            key: np.array([per[n][k][key][0] for k in ok])
            for key in ("energy_share", "area_share", "units")
        }
        for n in per
    }


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def paired_focus_numbers(paired: dict, layer: str = "layer5") -> dict:
    """The keys of :func:`paired_object_focus` of a ``"trained"`` and an ``"untrained"`` session:
    the images both measured, the mean energy share of each and the trained boxes' area share."""
    t, u = paired["trained"], paired["untrained"]
    return {
        "object_focus_paired_images": len(t["energy_share"]),
        f"box_energy_share_{layer}": _mean(t["energy_share"]),
        f"box_energy_share_untrained_{layer}": _mean(u["energy_share"]),
        f"box_area_share_{layer}": _mean(t["area_share"]),
    }


def paired_focus_checks(paired: dict) -> list:
    """Section 4.2's reading in two verdicts (paired bootstraps over images): the trained
    network's energy share on the object above the box's area (``object_focus_above_area``) and
    above the untrained network's (``object_focus_above_untrained``). Empty with fewer than two
    images measured by both."""
    t, u = paired["trained"], paired["untrained"]
    if len(t["energy_share"]) < 2:
        return []
    return [
        verdicts.paired_bootstrap("object_focus_above_area", t["energy_share"], t["area_share"]),
        verdicts.paired_bootstrap(
            "object_focus_above_untrained", t["energy_share"], u["energy_share"]
        ),
    ]


def paired_focus_sentence(paired: dict, checks: list, layer: str = "layer5") -> str:
    """:func:`paired_focus_checks` in words."""
    if not checks:
        return "fewer than 2 images measurable by both networks: no verdict"
    return (
        f"Over {len(paired['trained']['energy_share'])} images, the trained "
        f"{layer.replace('layer', 'layer-')} focus on the object {checks[0].verdict} against the "
        f"box area and {checks[1].verdict} against the untrained network."
    )


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 12_explorer records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "the explorer redraws in < 0.5 s",
        lambda n: (
            f"redraw p95 {n.f('explorer_redraw_p95_s', '.2f', unit=' s')} (median "
            f"{n.f('explorer_redraw_median_s', '.2f', unit=' s')}) over "
            f"{n.f('explorer_tour_actions', 'd')} actions"
        ),
    ),
]
