"""Controls for the paper's readings: the untrained network of the same layout, and bootstraps over images.

Zeiler & Fergus read their figures as evidence of what *training* put in the network: the
projections of Fig. 2 fall on the object (section 4), the strong layer-5 features respond to the
object (section 4.2, Figs. 2 and 7), the occluder that hurts most lies on the object (Fig. 7).
Each such reading is compared here with the same measurement on the **untrained** network of the
same layout (:func:`untrained_model`: the weights the training started from), on the same images,
with units chosen the same way; a contrasted object alone already draws a projection's energy.

The numbers come per image so that a verdict (:mod:`zfcore.paper.verdicts`) can be decided with a
bootstrap over images (seed variance is *not* included):

* :func:`untrained_model`: the untrained network of a profile and layout;
* :func:`box_energy_shares`: per projection of the mined top-9 of some maps, the share of its
  energy inside its image's object box, the box's share of the image and the image index;
* :func:`per_image_mean`: those values averaged per image (the unit of the bootstrap);
* :func:`two_sample_bootstrap`: a verdict on ``mean(a) - mean(b)`` when ``a`` and ``b`` are
  measured on different items (e.g. the top-9 images of two networks);
* :func:`projection_on_object_control`: Fig. 2's "the projections fall on the object", trained
  against untrained, per layer, with its verdicts;
* :func:`paired_object_focus`: notebook 12's "strongest map on the object" measure for two
  explorer sessions on the same images, aligned image by image.

It sits on the top floor (it measures explorer sessions, :mod:`zfcore.widgets`, through
:mod:`zfcore.focus`) and computes no analysis of its own: it calls the analyses below and pairs
their numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ZFCoreError
from ..focus import object_focus
from .verdicts import unpaired_bootstrap

__all__ = [
    "ControlError",
    "untrained_model",
    "box_energy_shares",
    "per_image_mean",
    "two_sample_bootstrap",
    "paired_object_focus",
    "finite_pairs",
    "ObjectControl",
    "projection_on_object_control",
]


class ControlError(ZFCoreError, ValueError):
    """Bad input to a control measurement."""


def untrained_model(profile, arch: str = "zfnet", **overrides) -> nn.Module:
    """The untrained network of ``profile`` and ``arch`` (same layout and initialisation as the
    training's start, :func:`zfcore.train.build_model`), in eval mode."""
    from ..train import build_model, make_spec

    return build_model(make_spec(profile, arch, **overrides)).eval()


def box_energy_shares(
    model: nn.Module,
    profile,
    top,
    layer: str,
    channels: Sequence[int],
    rule: str = "deconvnet",
    split: str = "val",
) -> dict:
    """Section 4 / Fig. 2's "the projections fall on the object", per projection.

    For the mined top-k (``top``, a :class:`zfcore.mining.TopK` of ``model`` over ``split``) of
    ``channels`` of ``layer``: project each entry with ``rule`` and return numpy arrays
    ``energy`` (share of the projection's energy inside its image's object box, NaN for an
    all-zero projection), ``area`` (the box's share of the image) and ``image`` (data set index).
    """
    from ..data import get_dataset, normalize
    from ..boxes import box_area_share, energy_in_boxes
    from ..mining import project_top
    from ..profiles import get_profile

    P = get_profile(profile)
    ds = get_dataset(P, split)
    if not hasattr(ds, "scenes"):
        raise ControlError(
            f"profile {P.name!r} has no object boxes: the box-energy share needs "
            f"a procedural profile (tiny or mini)"
        )
    cache: dict = {}

    def load(indices):
        sb = ds.scenes(list(indices))
        cache.update({int(i): b for i, b in zip(indices, sb.boxes)})
        return normalize(sb.images, P)

    tp = project_top(model, top, layer, load, channels=list(channels), rule=rule)
    boxes = torch.stack([cache[int(i)] for i in tp.images]) if len(tp.images) else torch.zeros(0, 4)
    return {
        "energy": energy_in_boxes(tp.pixels, boxes).double().numpy(),
        "area": box_area_share(boxes, P.image_size).double().numpy(),
        "image": tp.images.numpy().astype(int),
    }


def per_image_mean(values, images) -> np.ndarray:
    """``values`` averaged over the entries of each distinct image in ``images`` (NaN entries
    left out; images whose entries are all NaN dropped), in increasing image order."""
    v, im = np.asarray(values, dtype=float), np.asarray(images)
    if v.shape != im.shape:
        raise ControlError(f"values {v.shape} and images {im.shape} differ in shape")
    out = []
    for i in np.unique(im):
        x = v[(im == i) & np.isfinite(v)]
        if len(x):
            out.append(x.mean())
    return np.array(out)


def finite_pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` (same items) with the items where either is not finite left out."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ControlError(f"paired values differ in shape: {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


#: Model and control measured on different items, each resampled on its own
#: (:func:`zfcore.paper.verdicts.unpaired_bootstrap`; the mean is the statistic).
two_sample_bootstrap = unpaired_bootstrap


@dataclass
class ObjectControl:
    """One layer of :func:`projection_on_object_control`: ``numbers`` (the mean energy share in
    the box of the trained and the untrained network's projections, the untrained boxes' area
    share) and ``checks``, the two verdicts (empty when either network has fewer than 2 images
    with a non-zero projection)."""

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
    network of the same layout (:func:`untrained_model`, or ``untrained``) is mined over the same
    first ``n_images`` validation images, ``n_maps`` of its maps are chosen the same way
    (:func:`zfcore.mining.pick_maps`) and projected with the same ``rule``. The effect is the
    energy share in excess of the box's area, averaged per image (:func:`box_energy_shares`,
    :func:`per_image_mean`): trained against zero (a bootstrap over images) and trained minus
    untrained (:func:`two_sample_bootstrap`). ``trained``: the trained network's per-projection
    values already computed (``LayerMeasures.items`` of :func:`zfcore.mining.layer_measures`,
    ``{layer: {"energy", "area", "image"}}``), so its projections are not made twice."""
    from . import verdicts
    from ..mining import mine_dataset, pick_maps
    from ..profiles import get_profile

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
                f"box_energy_share_{layer}": float(np.nanmean(t["energy"])),
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


def paired_object_focus(sessions: dict, indices: Sequence[int], layer: str = "layer5") -> dict:
    """Notebook 12's object focus (:func:`zfcore.focus.object_focus`) for several explorer
    sessions on the same images, aligned: ``{name: {"energy_share", "area_share", "units"}}``
    numpy arrays over the images every session could measure (a projection of all zeros or an
    image without a box is left out for all)."""
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
