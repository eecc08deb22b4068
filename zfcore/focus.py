"""How much of a projection lies on the object: projection energy inside the object box.

Section 4 of Zeiler & Fergus reads Fig. 2 as "the projections fall on the object", and section
4.2 reads Figs. 2 and 7 as showing that the strong layer-5 features respond to the object, not to
its surroundings. On the procedural scenes every image knows its object box, so the reading
becomes a number for each projection (the deconvnet of section 2.1, Fig. 1):

* the **energy share**: the part of the projection's energy (squared values, summed over the
  colour channels) that falls inside the object box, against
* the **area share**: the box's share of the image, the energy share of a projection that ignored
  where the object is.

:func:`box_shares` computes both for any number of projections, by the half-open pixel-centre
convention of :mod:`zfcore.boxes`; every other function here calls it:

* :func:`focus_on_box`: the two shares of one projection and one box;
* :func:`box_energy_items`: the shares of the projections of mined top-k entries
  (:func:`zfcore.mining.project_top`), with the data set image of each;
* :func:`object_focus`: the shares of the strongest map's projection over data set images, driven
  through an explorer session (:class:`zfcore.widgets.ExplorerSession`, or anything with the same
  selection methods), so the numbers are exactly what the explorer's "strongest map" button shows.

An analysis: it imports neither widgets nor plotting.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .boxes import as_boxes, box_area_share, energy_in_boxes
from .mining import TopImages, TopK, project_top

__all__ = ["box_shares", "focus_on_box", "box_energy_items", "object_focus"]


def box_shares(pixels: torch.Tensor, boxes) -> tuple[torch.Tensor, torch.Tensor]:
    """``(energy, area)``, each ``(R,)``, for projections ``pixels`` ``(R, C, H, W)`` and one
    object box ``(x0, y0, x1, y1)`` in pixels per projection: the share of each projection's
    energy (sum of squares over channels) inside its box (NaN for an all-zero projection:
    :func:`zfcore.boxes.energy_in_boxes`) and the box's share of the image
    (:func:`zfcore.boxes.box_area_share`)."""
    b = as_boxes(boxes, device=pixels.device)
    return energy_in_boxes(pixels, b), box_area_share(b, tuple(pixels.shape[-2:]))


def focus_on_box(
    projection: torch.Tensor, box: "tuple[int, int, int, int]"
) -> tuple[float, float] | None:
    """``(energy share, area share)`` of a ``(C, H, W)`` projection and an object box
    ``(x0, y0, x1, y1)`` in pixels (:func:`box_shares`; for a box in whole pixels, the pixels
    ``[y0:y1, x0:x1]``). ``None`` for a projection of all zeros (it has no energy to share)."""
    energy, area = box_shares(projection[None], [box])
    if math.isnan(float(energy[0])):
        return None
    return float(energy[0]), float(area[0])


def box_energy_items(
    model: nn.Module,
    result: TopK,
    layer: str,
    channels: Sequence[int],
    images: TopImages,
    rule: str = "deconvnet",
) -> dict:
    """The mined top-k entries of ``channels`` of ``layer`` projected with ``rule``
    (:func:`zfcore.mining.project_top`) and measured against their images' object boxes
    (:func:`box_shares`): per projection ``energy`` (NaN for an all-zero projection), ``area``
    and ``image`` (data set index), as tensors. ``images`` (:func:`zfcore.mining.load_top_images`
    of a procedural profile) holds the inputs and boxes."""
    tp = project_top(model, result, layer, images.load, channels=list(channels), rule=rule)
    energy, area = box_shares(tp.pixels, images.boxes_of(tp.images))
    return {"energy": energy, "area": area, "image": tp.images}


def object_focus(session, indices: Sequence[int], layer: str = "layer5") -> dict:
    """For data set images ``indices``: project the strongest map of ``layer`` (the explorer's
    "strongest map" button) and measure how much of the projection lies on the object
    (:func:`focus_on_box`, through the session's ``projection_on_object``).

    Returns ``{"energy_share": (N,), "area_share": (N,), "units": (N,)}`` (numpy arrays) over the
    images with a box and a non-zero projection; the session's state is restored afterwards.
    Section 4.2's reading of Figs. 2 and 7 is that the strong layer-5 features are about the
    object, not the background: ``energy_share`` clearly above ``area_share``; measure an
    untrained network too for the share that contrast alone gives.
    """
    before = session.state
    energy, area, units = [], [], []
    try:
        with session.computing():
            for i in indices:
                session.select_dataset_image(int(i))
                session.select_layer(layer)
                session.select_unit(session.strongest_unit())
                focus = session.projection_on_object()
                if focus is None:
                    continue
                energy.append(focus[0])
                area.append(focus[1])
                units.append(session.state.unit)
    finally:
        session.state = before
    return {
        "energy_share": np.array(energy),
        "area_share": np.array(area),
        "units": np.array(units),
    }
