"""Fig. 2 and section 4 (notebook 03): the top-9 of each feature map, measured.

Zeiler & Fergus show, "for a given feature map, the top 9 activations" over the validation set,
each projected to pixel space beside its image patch (Fig. 2), and read the figure two ways:
higher layers are more class-specific ("greater invariance ... and more class-specific", section
4), and the projections fall on the object. The engine mines and projects the top-9
(:mod:`zfcore.mining`) and measures projection energy on the object box (:mod:`zfcore.focus`);
this module turns the two readings into numbers, verdicts, record keys and sentences:

* class-specificity: :func:`majority_share` of the top-k images' classes per map,
  :func:`class_specificity` per layer against :func:`chance_majority_share`, and
  :func:`class_specificity_checks` (deepest layer against the first, against chance);
* projection energy on the object: :func:`box_energy` and, per layer, :func:`layer_measures`
  (:class:`LayerMeasures`, notebook 03's ``layerN_*`` keys);
* the same energy against the untrained network of the same layout:
  :func:`projection_on_object_control` (:class:`ObjectControl`, the ``projection_on_object_*``
  verdicts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ZFCoreError
from ..focus import box_energy_items
from ..mining import TopImages, TopK, mine_dataset, pick_maps
from ..profiles import get_profile
from . import verdicts
from .controls import box_energy_shares, per_image_mean, two_sample_bootstrap, untrained_model
from .headline import Numbers, layer_keys

__all__ = [
    "Fig2Error",
    "majority_share",
    "chance_majority_share",
    "class_specificity",
    "firing_map_shares",
    "class_specificity_checks",
    "box_energy",
    "LayerMeasures",
    "layer_measures",
    "ObjectControl",
    "projection_on_object_control",
    "object_control_sentence",
]


class Fig2Error(ZFCoreError, ValueError):
    """Labels of the wrong shape, or mined entries without labels, for Fig. 2's measures."""


# ---------------------------------------------------------------------------------------------
# Class-specificity of the top-k
# ---------------------------------------------------------------------------------------------


def majority_share(labels: torch.Tensor) -> torch.Tensor:
    """``(C,)``: for each row of ``labels`` ``(C, k)``, the share of its most common class
    (1 = all k images of one class). Entries ``< 0`` (unknown or unfilled) are ignored; a row with
    none gives NaN."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.dim() != 2:
        raise Fig2Error(
            f"labels must be (C, k), one row of classes per feature map, got shape "
            f"{tuple(labels.shape)}"
        )
    valid = labels >= 0
    n_cls = int(labels.max()) + 1 if valid.any() else 1
    counts = torch.zeros(labels.shape[0], n_cls).scatter_add_(1, labels.clamp(min=0), valid.float())
    return counts.amax(1) / valid.sum(1).float()  # 0/0 = NaN for empty rows


def chance_majority_share(
    labels: torch.Tensor, k: int, trials: int = 20000, seed: int = 0
) -> float:
    """The expected :func:`majority_share` of ``k`` images drawn at random from a data set with
    these ``labels`` (Monte Carlo, with replacement): what class-specificity is without any
    selectivity. For 10 balanced classes and k = 9 it is about 0.29."""
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    labels = labels[labels >= 0]
    if labels.numel() == 0:
        raise Fig2Error(
            "chance_majority_share needs at least one known label: pass the data set's labels"
        )
    g = torch.Generator().manual_seed(seed)
    picks = labels[torch.randint(0, labels.numel(), (trials, k), generator=g)]
    return float(majority_share(picks).mean())


def class_specificity(result: TopK, layer: str) -> tuple[float, int]:
    """Fig. 2's claim in a number: the mean :func:`majority_share` of the top-k images of
    ``layer``'s feature maps, over the maps that ever fire (top value > 0); returns
    ``(mean share, number of such maps)``. Needs mined labels."""
    lt = result[layer]
    if (lt.labels[lt.images >= 0] < 0).any():
        raise Fig2Error(
            "the mined entries have no labels: mine (images, labels) batches or a labelled Dataset"
        )
    alive = lt.values[:, 0] > 0
    if not alive.any():
        return float("nan"), 0
    return float(majority_share(lt.labels[alive]).nanmean()), int(alive.sum())


def firing_map_shares(result: TopK, layer: str) -> np.ndarray:
    """Per map of ``layer`` that fires (top value > 0), the :func:`majority_share` of its top-k
    images' classes: the items of a bootstrap of Fig. 2's class-specificity."""
    lt = result[layer]
    return majority_share(lt.labels[lt.values[:, 0] > 0]).numpy()


def class_specificity_checks(result: TopK, layers: Sequence[str], chance: float) -> list:
    """Section 4's hierarchy in two verdicts (:mod:`zfcore.paper.verdicts`): the top-k majority
    share of the deepest layer's firing maps against the first layer's (unpaired bootstrap over
    maps), and the deepest layer's against ``chance``."""
    first, last = layers[0], layers[-1]
    return [
        verdicts.unpaired_bootstrap(
            "class_specificity_rises_with_depth",
            firing_map_shares(result, last),
            firing_map_shares(result, first),
            what="firing maps",
        ),
        verdicts.bootstrap(
            "class_specificity_above_chance_deepest", firing_map_shares(result, last), chance
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Projection energy on the object, per layer
# ---------------------------------------------------------------------------------------------


def box_energy(
    model: nn.Module,
    result: TopK,
    layer: str,
    channels: Sequence[int],
    images: TopImages,
    rule: str = "deconvnet",
) -> tuple[float, float]:
    """The means of :func:`zfcore.focus.box_energy_items`: the energy share inside the box over
    the projections that are not all zero, and the box's share of the image."""
    items = box_energy_items(model, result, layer, channels, images, rule)
    return float(items["energy"].nanmean()), float(items["area"].mean())


@dataclass
class LayerMeasures:
    """Fig. 2 measured per layer (:func:`layer_measures`): ``specificity`` (mean top-k majority
    share over the firing maps), ``firing`` (how many maps fire), the ``chance`` share of k random
    images, and, with object boxes, ``energy`` (projection energy share in the box) and ``area``
    (the box's share of the image), ``items`` the per-projection values behind them
    (:func:`zfcore.focus.box_energy_items`, for the controls); ``n_images`` mined."""

    layers: list
    n_images: int
    chance: float
    specificity: dict
    firing: dict
    energy: dict
    area: dict
    items: dict = field(default_factory=dict)

    def as_record(self) -> dict:
        """The flat JSON keys of notebook 03."""
        return {
            "n_images_mined": self.n_images,
            "chance_majority_share": self.chance,
            **{f"{l}_top9_majority_share": self.specificity[l] for l in self.layers},
            **{f"{l}_maps_firing": self.firing[l] for l in self.layers},
            **{f"{l}_projection_energy_in_box": self.energy[l] for l in self.energy},
            **{f"{l}_box_area_share": self.area[l] for l in self.area},
        }

    def table(self) -> str:
        """The measures as a text table, one row per layer."""
        head = f"{'layer':7s} {'maps firing':>11s} {'top-9 majority share':>21s}" + (
            "  energy in box  box area" if self.energy else ""
        )
        rows = [head]
        for l in self.layers:
            line = f"{l:7s} {self.firing[l]:11d} {self.specificity[l]:21.3f}"
            if self.energy:
                line += f"  {self.energy[l]:13.3f}  {self.area[l]:8.3f}"
            rows.append(line)
        rows.append(f"chance majority share of 9 random images: {self.chance:.3f}")
        return "\n".join(rows)

    def specificity_sentence(self, checks: list) -> str:
        """Section 4's hierarchy in words: the verdicts of :func:`class_specificity_checks`
        (``checks``) and the majority share layer by layer."""
        first, last = self.layers[0], self.layers[-1]
        return (
            f"The paper's claim that class-specificity rises with depth: {checks[0].verdict} here "
            f"- the top-9 majority share goes "
            f"{' > '.join(f'{self.specificity[l]:.2f}' for l in self.layers)} from {first} to "
            f"{last} (chance {self.chance:.2f}; {last} against chance: {checks[1].verdict})."
        )

    def energy_sentence(self) -> str:
        """The projections' energy inside the object box against the box's area, in words (empty
        without object boxes)."""
        if not self.energy:
            return ""
        on = [l for l in self.layers if self.energy[l] > self.area[l]]
        return (
            f"Projections concentrate on the object in {len(on)} of {len(self.layers)} layers: "
            f"energy inside the box {', '.join(f'{self.energy[l]:.2f}' for l in self.layers)} "
            f"against box areas {', '.join(f'{self.area[l]:.2f}' for l in self.layers)} (the "
            f"verdicts against the untrained network follow)."
        )


def layer_measures(
    model: nn.Module,
    result: TopK,
    layers: Sequence[str],
    labels: torch.Tensor,
    measured: "dict[str, Sequence[int]]",
    images: TopImages,
    rule: str = "deconvnet",
) -> LayerMeasures:
    """Fig. 2's two readings for each of ``layers``: class-specificity (:func:`class_specificity`)
    against :func:`chance_majority_share` of the first ``result.n_images`` ``labels``, and, when
    ``images`` have object boxes, the projection energy in the box of the ``measured`` maps
    (:func:`zfcore.focus.box_energy_items`, averaged as :func:`box_energy`)."""
    chance = chance_majority_share(labels[: result.n_images], result.k)
    spec, firing, energy, area, items = {}, {}, {}, {}, {}
    for l in layers:
        spec[l], firing[l] = class_specificity(result, l)
    if images.boxes is not None:
        for l in layers:
            items[l] = box_energy_items(model, result, l, measured[l], images, rule)
            energy[l], area[l] = float(items[l]["energy"].nanmean()), float(items[l]["area"].mean())
    return LayerMeasures(list(layers), result.n_images, chance, spec, firing, energy, area, items)


# ---------------------------------------------------------------------------------------------
# The projections on the object, against the untrained network
# ---------------------------------------------------------------------------------------------


@dataclass
class ObjectControl:
    """One layer of :func:`projection_on_object_control`: ``numbers`` (the mean energy share in
    the box of the untrained network's projections and its boxes' area share; the trained
    network's are :class:`LayerMeasures`' ``layerN_projection_energy_in_box``) and ``checks``,
    the two verdicts (empty when either network has fewer than 2 images with a non-zero
    projection)."""

    numbers: dict
    checks: list = field(default_factory=list)


def projection_on_object_control(
    model: nn.Module,
    profile,
    top,
    measured: dict,
    n_maps: int,
    rule: str = "deconvnet",
    n_images: "int | None" = None,
    untrained: "nn.Module | None" = None,
    trained: "dict | None" = None,
) -> "dict[str, ObjectControl]":
    """Section 4 / Fig. 2's "the projections fall on the object", against the untrained network.

    For each layer of ``measured`` (``{layer: maps}`` of ``model``'s top-9 ``top``): the untrained
    network of the same layout (:func:`zfcore.paper.controls.untrained_model`, or ``untrained``)
    is mined over the same first ``n_images`` validation images, ``n_maps`` of its maps are chosen
    the same way (:func:`zfcore.mining.pick_maps`) and projected with the same ``rule``. The
    effect is the energy share in excess of the box's area, averaged per image
    (:func:`zfcore.paper.controls.box_energy_shares`, :func:`zfcore.paper.controls.per_image_mean`):
    trained against zero (a bootstrap over images) and trained minus untrained
    (:func:`zfcore.paper.controls.two_sample_bootstrap`). ``trained``: the trained network's
    per-projection values already computed (``LayerMeasures.items`` of :func:`layer_measures`,
    ``{layer: {"energy", "area", "image"}}``), so its projections are not made twice."""
    P = get_profile(profile)
    untrained = untrained_model(P) if untrained is None else untrained
    top0 = mine_dataset(untrained, P, split="val", k=9, n_images=n_images)
    out = {}
    for layer, maps in measured.items():
        t = (
            box_energy_shares(model, P, top, layer, maps, rule=rule)
            if trained is None
            else {
                k: v.double().numpy() if k != "image" else v.numpy().astype(int)
                for k, v in trained[layer].items()
            }
        )
        u = box_energy_shares(untrained, P, top0, layer, pick_maps(top0, layer, n_maps), rule=rule)
        excess = {
            "trained": per_image_mean(t["energy"] - t["area"], t["image"]),
            "untrained": per_image_mean(u["energy"] - u["area"], u["image"]),
        }
        nan = float("nan")
        out[layer] = ObjectControl(
            {
                f"box_energy_share_untrained_{layer}": float(np.nanmean(u["energy"]))
                if len(u["energy"])
                else nan,
                f"box_area_share_untrained_{layer}": float(np.mean(u["area"]))
                if len(u["area"])
                else nan,
            }
        )
        if min(len(excess["trained"]), len(excess["untrained"])) >= 2:
            out[layer].checks = [
                verdicts.bootstrap(f"projection_on_object_{layer}", excess["trained"]),
                two_sample_bootstrap(
                    f"projection_on_object_vs_untrained_{layer}",
                    excess["trained"],
                    excess["untrained"],
                ),
            ]
    return out


def object_control_sentence(controls: "dict[str, ObjectControl]") -> str:
    """The verdicts of :func:`projection_on_object_control`, layer by layer, in words."""
    return (
        "Projections on the object, layer by layer (energy share beyond the box's area; against "
        "the area alone / against the untrained network): "
        + "; ".join(
            f"{l} {c.checks[0].verdict} / {c.checks[1].verdict}"
            for l, c in controls.items()
            if c.checks
        )
        + "."
    )


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 03_feature_visualization records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 2: top-9 become class-specific with depth",
        lambda n: (
            f"majority-class share of the top-9, layers 1-5: "
            f"{n.seq(layer_keys('', '_top9_majority_share'))} (chance "
            f"{n.f('chance_majority_share')})"
        ),
    ),
    (
        "Fig. 2: projections sit on the object",
        lambda n: (
            f"share of projection energy inside the object box, layers 1-5: "
            f"{n.seq(layer_keys('', '_projection_energy_in_box'))} (box area "
            f"{n.span(layer_keys('', '_box_area_share'))})"
        ),
    ),
    (
        "a healthy network: every map fires",
        lambda n: (
            f"maps that never fire on {n.f('dead_maps_images', 'd')} validation images, layers "
            "1-7: "
            f"{n.seq(layer_keys('dead_map_share_', '', range(1, 8)), '.0f', ', ', scale=100)} %"
        ),
    ),
]

#: Numbers of notebook 03_feature_visualization in the README's prose (``<!-- value:NAME -->``).
README_VALUES: dict[str, Callable[[Numbers], str]] = {
    "dead_maps": lambda n: (
        n.seq([f"dead_map_share_layer{i}" for i in range(1, 8)], ".0f", ", ", scale=100) + " %"
    ),
}
