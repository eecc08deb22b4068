"""Do the strong higher-layer features look at the object? Notebook 12's object-focus measure.

Section 4.2 of Zeiler & Fergus reads Figs. 2 and 7 as showing that the strong layer-5 features of
a trained network respond to the object, not to its surroundings. On the procedural scenes every
image knows its object box, so the reading becomes a number: project the strongest activation of
the layer's most active map to pixels (the deconvnet of section 2.1, Fig. 1) and measure

* the **energy share**: the part of the projection's energy (squared values, summed over the
  colour channels) that falls inside the object box, against
* the **area share**: the box's share of the image, the energy share of a projection that ignored
  where the object is.

A share clearly above the area says the feature is about the object; objects are also the most
contrasted part of a scene, so :mod:`zfcore.paper.controls` measures the untrained network of the same
layout too, image by image (:func:`zfcore.paper.controls.paired_object_focus`).

* :func:`focus_on_box`: the two shares for one projection and one box;
* :func:`object_focus`: the measure over data set images, driven through an explorer session
  (:class:`zfcore.widgets.ExplorerSession`, or anything with the same selection methods), so the
  numbers are exactly what the explorer's "strongest map" button shows.

An analysis: it imports neither widgets nor plotting.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["focus_on_box", "object_focus"]


def focus_on_box(
    projection: torch.Tensor, box: "tuple[int, int, int, int]"
) -> tuple[float, float] | None:
    """``(energy share, area share)`` of a ``(C, H, W)`` projection and an object box
    ``(x0, y0, x1, y1)`` in pixels: the share of the projection's energy (sum of squares over
    channels) inside the box, and the box's share of the image, by the pixel-centre convention of
    :func:`zfcore.boxes.energy_in_boxes` and :func:`zfcore.boxes.box_area_share` (for a box
    in whole pixels, the pixels ``[y0:y1, x0:x1]``). ``None`` for a projection of all zeros (it has
    no energy to share)."""
    from .boxes import box_area_share, energy_in_boxes

    boxes = torch.tensor([box], dtype=torch.float32)
    energy = float(energy_in_boxes(projection[None], boxes)[0])
    if math.isnan(energy):  # an all-zero projection
        return None
    return energy, float(box_area_share(boxes, tuple(projection.shape[-2:]))[0])


def object_focus(session, indices: Sequence[int], layer: str = "layer5") -> dict:
    """For data set images ``indices``: project the strongest map of ``layer`` (the explorer's
    "strongest map" button) and measure how much of the projection lies on the object
    (:func:`focus_on_box`, through the session's ``projection_on_object``).

    Returns ``{"energy_share": (N,), "area_share": (N,), "units": (N,)}`` (numpy arrays); the
    session's state is restored afterwards. Section 4.2's reading of Figs. 2 and 7 is that the
    strong layer-5 features are about the object, not the background: ``energy_share`` clearly
    above ``area_share``; measure an untrained network too for the share that contrast alone
    gives.
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
