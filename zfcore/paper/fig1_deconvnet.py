"""Section 2.1, Fig. 1: the deconvnet, step by step, on a real activation (notebook 02).

Zeiler & Fergus (2014), section 2.1: "to examine a given convnet activation, we set all other
activations in the layer to zero and pass the feature maps as input to the attached deconvnet
layer. Then we successively (i) unpool, (ii) rectify and (iii) filter to reconstruct the activity
in the layer beneath that gave rise to the chosen activation."

The engine (:func:`zfcore.deconv.deconv_steps`) runs that walk; this module measures what Fig. 1
claims about it on the strongest activation of one image:

* the projection lights up only pixels inside the activation's receptive field
  (:func:`zfcore.receptive.receptive_field`): the share of its energy inside the field;
* overlapping 3x3/2 pools make windows share a switch (:func:`shared_switch_share`), where
  unpooling must *add* the contributions; ``F.max_unpool2d`` keeps one of them, and the same walk
  with it changes the projection by :attr:`Fig1Walk.max_unpool2d_change` (relative L2);
* the same activation under the two rules later work compared the deconvnet with (guided
  backpropagation, the plain gradient): the cosine similarity of their projections
  (:func:`rule_cosines`).

:meth:`Fig1Walk.numbers` and :func:`rule_cosines` hold the keys notebook 02 records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..boxes import energy_in_boxes
from ..deconv import RULES, DeconvStep, deconv_steps, layer_activations, project, requests
from ..mining import strongest_activation
from ..receptive import ReceptiveField, receptive_field
from .headline import Numbers

__all__ = [
    "shared_switch_share",
    "Fig1Walk",
    "fig1_walk",
    "rule_projections",
    "rule_cosines",
    "rules_text",
]


def shared_switch_share(switches: torch.Tensor) -> float:
    """Share of a max pool's outputs whose switch (argmax position) is also the switch of another
    window of the same map: where overlapping 3x3/2 pooling makes unpooling *add* (section 2.1).
    ``switches``: ``(C, h, w)`` or ``(N, C, h, w)`` flat indices, as in
    :class:`zfcore.deconv.DeconvStep`."""
    sw = switches.reshape(-1, switches.shape[-2] * switches.shape[-1])
    size = int(sw.max()) + 1
    counts = torch.zeros(sw.shape[0], size, device=sw.device).scatter_add_(
        1, sw, torch.ones_like(sw, dtype=torch.float32)
    )
    return float((torch.gather(counts, 1, sw) > 1).float().mean())


def _relative_change(changed: torch.Tensor, reference: torch.Tensor) -> float:
    return float((changed - reference).norm() / reference.norm().clamp_min(1e-30))


@dataclass
class Fig1Walk:
    """Fig. 1 on one activation: the walk's ``steps`` (:func:`zfcore.deconv.deconv_steps`), the
    activation (``layer``, ``channel``, ``y``, ``x``, its ``value``), the receptive ``field`` and
    its image ``box`` ``(x0, y0, x1, y1)`` (end exclusive), the share of the projection's energy
    inside the box, the relative L2 change of the projection when unpooling overwrites
    (``F.max_unpool2d``) instead of adding, and ``switch_shares``: per pool (by module name), the
    share of pooled values that share their switch with another window."""

    layer: str
    channel: int
    y: int
    x: int
    value: float
    rule: str
    steps: list[DeconvStep]
    field: ReceptiveField
    box: tuple[int, int, int, int]
    energy_inside_field: float
    max_unpool2d_change: float
    switch_shares: dict[str, float]

    @property
    def pixels(self) -> torch.Tensor:
        """The projection in pixel space, ``(C, H, W)``: the walk's last signal."""
        return self.steps[-1].signal

    def numbers(self) -> dict:
        """Notebook 02's record of the walk."""
        return {
            "layer": self.layer,
            "feature_map": self.channel,
            "activation_y": self.y,
            "activation_x": self.x,
            "activation_value": self.value,
            "receptive_field_size": self.field.size,
            "receptive_field_stride": self.field.stride,
            "projection_energy_inside_receptive_field": self.energy_inside_field,
            "max_unpool2d_relative_change": self.max_unpool2d_change,
            **{f"shared_switch_share_{k.split('.')[-1]}": v for k, v in self.switch_shares.items()},
        }

    def activation_text(self, caption: str) -> str:
        """Which activation is walked, on which image."""
        return (
            f"{caption}; strongest {self.layer} activation: map {self.channel} at "
            f"({self.y}, {self.x}), value {self.value:.3f}"
        )

    def text(self) -> str:
        """The measurements under Fig. 1: the field, the energy inside it, the shared switches
        per pool and what overwriting them would change."""
        lines = [
            f"receptive field of {self.layer}: {self.field.size} px, stride {self.field.stride}; "
            f"box (x0, y0, x1, y1) = {self.box}",
            f"share of the projection's energy inside the receptive field: "
            f"{self.energy_inside_field:.4f}",
        ]
        lines += [
            f"{name}: {share:.1%} of pooled values share their switch with another window"
            for name, share in self.switch_shares.items()
        ]
        lines.append(
            f"max_unpool2d instead of adding changes the projection by "
            f"{self.max_unpool2d_change:.1%} (relative L2)"
        )
        return "\n".join(lines)

    def claim_text(self) -> str:
        """The notebook's closing sentence: what section 2.1's mechanism did on this activation."""
        head = (
            f"Section 2.1 held here: the projection of {self.layer} map {self.channel} keeps "
            f"{self.energy_inside_field:.1%} of its energy inside the {self.field.size}-px "
            f"receptive field; "
        )
        if not self.switch_shares:
            return head + "this layer's walk has no pooling, so no switches were shared."
        shared = max(self.switch_shares.values())
        return head + (
            f"overlapping pooling shared up to {shared:.0%} of the switches, and overwriting them "
            f"(max_unpool2d) would have changed the projection by {self.max_unpool2d_change:.0%}."
        )


def fig1_walk(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    channel: int | None = None,
    y: int | None = None,
    xx: int | None = None,
    rule: str = "deconvnet",
) -> Fig1Walk:
    """Run Fig. 1's walk on one image ``x`` (``(1, C, H, W)``) from one activation of ``layer``
    (by default the strongest: :func:`zfcore.mining.strongest_activation`) and measure it: the
    energy inside the receptive field, the switches overlapping pools share, and the same walk
    with ``F.max_unpool2d`` (``unpool_mode="overwrite"``)."""
    if channel is None:
        channel, y, xx = strongest_activation(model, x, layer)
    value = float(layer_activations(model, x, [layer])[layer][0, channel, y, xx])
    steps = deconv_steps(model, x, layer, channel, y, xx, rule=rule)
    pixels = steps[-1].signal
    field = receptive_field(model, layer)
    box = tuple(int(v) for v in field.box(y, xx, tuple(x.shape[-2:])))
    inside = float(energy_in_boxes(pixels[None], torch.tensor([box], dtype=torch.float32))[0])
    overwrite = deconv_steps(model, x, layer, channel, y, xx, rule=rule, unpool_mode="overwrite")
    shares = {s.module: shared_switch_share(s.switches) for s in steps if s.op == "unpool"}
    return Fig1Walk(
        layer,
        int(channel),
        int(y),
        int(xx),
        value,
        rule,
        steps,
        field,
        box,
        inside,
        _relative_change(overwrite[-1].signal, pixels),
        shares,
    )


def rule_projections(
    model: nn.Module, x: torch.Tensor, layer: str, channel: int, y: int, xx: int
) -> dict[str, torch.Tensor]:
    """``{rule: (C, H, W) projection}`` of one activation of image ``x`` under every rule of
    :data:`zfcore.deconv.RULES` (the deconvnet, guided backpropagation, the plain gradient)."""
    return {
        r: project(model, x, layer, requests(0, channel, y, xx), rule=r).pixels[0] for r in RULES
    }


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


def rule_cosines(projections: dict[str, torch.Tensor]) -> dict:
    """Notebook 02's record of the rules: the cosine similarity of the deconvnet's projection to
    guided backpropagation's and to the gradient's (from :func:`rule_projections`)."""
    d = projections["deconvnet"]
    return {
        "cosine_deconvnet_guided": _cosine(d, projections["guided"]),
        "cosine_deconvnet_gradient": _cosine(d, projections["gradient"]),
    }


def rules_text(numbers: dict) -> str:
    """The sentence under the rules figure, from :func:`rule_cosines`' numbers."""
    return (
        f"cosine similarity of the deconvnet's projection to guided backpropagation's "
        f"{numbers['cosine_deconvnet_guided']:.2f}, to the gradient's "
        f"{numbers['cosine_deconvnet_gradient']:.2f}"
    )


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 02_deconvnet records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 1: unpooling needs the switches; overlapping pools share them",
        lambda n: (
            f"{n.pct('shared_switch_share_pool1', 1)} of pool-1 and "
            f"{n.pct('shared_switch_share_pool2', 1)} "
            f"of pool-2 switches are shared; `F.max_unpool2d` (which overwrites) would change the "
            f"projection by {n.pct('max_unpool2d_relative_change', 1)}"
        ),
    ),
]
