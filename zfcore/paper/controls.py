"""Controls for the paper's readings: the untrained network of the same layout, per-image means.

Zeiler & Fergus read their figures as evidence of what *training* put in the network: the
projections of Fig. 2 fall on the object (section 4), the strong layer-5 features respond to the
object (section 4.2, Figs. 2 and 7), the occluder that hurts most lies on the object (Fig. 7).
Each such reading is compared with the same measurement on the **untrained** network of the
same layout (:func:`untrained_model`: the weights the training started from), on the same images,
with units chosen the same way; a contrasted object alone already draws a projection's energy.

The numbers come per image so that a verdict (:mod:`zfcore.paper.verdicts`) can be decided with a
bootstrap over images (seed variance is *not* included):

* :func:`untrained_model`: the untrained network of a profile and layout;
* :func:`box_energy_shares`: per projection of the mined top-9 of some maps of any network, the
  share of its energy inside its image's object box, the box's share of the image and the image
  index (:func:`zfcore.focus.box_energy_items` on a profile's validation scenes);
* :func:`per_image_mean`: those values averaged per image (the unit of the bootstrap);
* :func:`finite_pairs`: paired values with the non-finite items left out;
* :func:`two_sample_bootstrap`: a verdict on ``mean(a) - mean(b)`` when ``a`` and ``b`` are
  measured on different items (e.g. the top-9 images of two networks).

The paper items use them: :mod:`zfcore.paper.fig2_top9` (projections on the object against the
untrained network), :mod:`zfcore.paper.explorer` (object focus), and the notebooks of Figs. 5
and 7 (the untrained network). This module computes no analysis of its own: it calls the engine
and pairs its numbers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from ..data import get_dataset
from ..errors import ZFCoreError
from ..focus import box_energy_items
from ..mining import TopK, load_top_images
from ..profiles import get_profile
from ..train import build_model, make_spec
from .verdicts import unpaired_bootstrap

__all__ = [
    "ControlError",
    "untrained_model",
    "box_energy_shares",
    "per_image_mean",
    "two_sample_bootstrap",
    "finite_pairs",
]


class ControlError(ZFCoreError, ValueError):
    """Bad input to a control measurement."""


def untrained_model(profile, arch: str = "zfnet", **overrides) -> nn.Module:
    """The untrained network of ``profile`` and ``arch`` (same layout and initialisation as the
    training's start, :func:`zfcore.train.build_model`), in eval mode."""
    return build_model(make_spec(profile, arch, **overrides)).eval()


def box_energy_shares(
    model: nn.Module,
    profile,
    top: TopK,
    layer: str,
    channels: Sequence[int],
    rule: str = "deconvnet",
    split: str = "val",
) -> dict:
    """Section 4 / Fig. 2's "the projections fall on the object", per projection.

    For the mined top-k (``top``, a :class:`zfcore.mining.TopK` of ``model`` over ``split``) of
    ``channels`` of ``layer``: project each entry with ``rule`` and return numpy arrays
    ``energy`` (share of the projection's energy inside its image's object box, NaN for an
    all-zero projection), ``area`` (the box's share of the image) and ``image`` (data set index):
    :func:`zfcore.focus.box_energy_items` of the split's scenes.
    """
    P = get_profile(profile)
    ds = get_dataset(P, split)
    if not hasattr(ds, "scenes"):
        raise ControlError(
            f"profile {P.name!r} has no object boxes: the box-energy share needs "
            f"a procedural profile (tiny or mini)"
        )
    images = load_top_images(ds, P, top, {layer: list(channels)})
    items = box_energy_items(model, top, layer, channels, images, rule)
    return {
        "energy": items["energy"].double().numpy(),
        "area": items["area"].double().numpy(),
        "image": items["image"].numpy().astype(int),
    }


def per_image_mean(values, images) -> np.ndarray:
    """``values`` averaged over the entries of each distinct image in ``images`` (NaN entries
    left out; images whose entries are all NaN dropped), in increasing image order."""
    v, im = np.asarray(values, dtype=float), np.asarray(images)
    if v.shape != im.shape:
        raise ControlError(
            f"values {v.shape} and images {im.shape} differ in shape: pass the image index of "
            f"each value"
        )
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
        raise ControlError(
            f"paired values differ in shape: {a.shape} and {b.shape}; pass one value of each "
            f"per item"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


#: Model and control measured on different items, each resampled on its own
#: (:func:`zfcore.paper.verdicts.unpaired_bootstrap`; the mean is the statistic).
two_sample_bootstrap = unpaired_bootstrap
