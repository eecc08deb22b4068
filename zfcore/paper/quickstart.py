"""Section 2 in one pass (notebook 00): the trained network, its accuracy against chance, and
one projection of its strongest layer-5 activation measured against the object's box.

The numbers every later notebook builds on: the network is far above chance, and the deconvnet
(section 2.1) puts the strongest unit's evidence on the object (section 4's reading of Fig. 2).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..boxes import box_area_share, energy_in_boxes
from ..deconv import project
from ..mining import strongest_activation
from ..models import eval_mode
from .headline import Numbers

__all__ = ["chance_top1_error", "accuracy_numbers", "ProjectionOnObject", "projection_on_object"]


def chance_top1_error(num_classes: int) -> float:
    """Top-1 error (%) of guessing uniformly among ``num_classes`` classes."""
    return 100 * (1 - 1 / num_classes)


def accuracy_numbers(metrics: dict, num_classes: int) -> dict:
    """Notebook 00's record of the test accuracy: top-1 and top-5 error against chance."""
    return {
        "test_top1_error": metrics["top1_error"],
        "test_top5_error": metrics["top5_error"],
        "chance_top1_error": chance_top1_error(num_classes),
    }


class ProjectionOnObject:
    """The strongest layer-5 map of one image, projected to pixels, and its energy on the box:
    ``map``, ``y``, ``x`` (where it peaks), ``pixels`` (the projection), ``p_true`` (the
    network's probability of the true class), ``inside`` (share of the projection's energy in the
    box) and ``box_area`` (the box's share of the image, the chance level)."""

    def __init__(self, fmap, y, x, pixels, p_true, inside, box_area):
        self.map, self.y, self.x, self.pixels = fmap, y, x, pixels
        self.p_true, self.inside, self.box_area = p_true, inside, box_area

    def numbers(self) -> dict:
        """Notebook 00's record of the projection."""
        return {
            "projection_layer5_map": self.map,
            "projection_energy_inside_box": self.inside,
            "object_box_area_share": self.box_area,
        }


def projection_on_object(
    model: nn.Module, x: torch.Tensor, label: int, box, layer: str = "layer5"
) -> ProjectionOnObject:
    """Project the strongest activation of ``layer`` for image ``x`` (``(1, C, H, W)``) and
    measure its energy inside the object ``box`` (:mod:`zfcore.boxes`)."""
    fmap, y, xx = strongest_activation(model, x, layer)
    proj = project(model, x, layer, [(0, fmap, y, xx)])
    boxes = torch.as_tensor(box, dtype=torch.float32).reshape(1, 4)
    inside = float(energy_in_boxes(proj.pixels, boxes)[0])
    area = float(box_area_share(boxes, tuple(x.shape[-2:]))[0])
    with eval_mode(model), torch.no_grad():
        p_true = float(model(x).softmax(1)[0, label])
    return ProjectionOnObject(fmap, y, xx, proj.pixels, p_true, inside, area)


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 00_quickstart records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "the network trained here: far above chance",
        lambda n: (
            f"test accuracy {n.calc(lambda e: 100 - e, ['test_top1_error'], '.1f', ' %')}, top-5 "
            "error "
            f"{n.f('test_top5_error', '.1f', unit=' %')} (chance accuracy "
            f"{n.calc(lambda e: 100 - e, ['chance_top1_error'], '.0f', ' %')})"
        ),
    ),
]

#: Numbers of notebook 00_quickstart in the README's prose (``<!-- value:NAME -->``).
README_VALUES: dict[str, Callable[[Numbers], str]] = {
    "test_accuracy": lambda n: n.calc(lambda e: 100 - e, ["test_top1_error"], ".1f", " %"),
    "chance_accuracy": lambda n: n.calc(lambda e: 100 - e, ["chance_top1_error"], ".0f", " %"),
}
