"""The figure of ``python -m zfcore.explain`` for one photo: Fig. 1's projection of one unit.

Takes the results computed by :mod:`zfcore.explain` (a :class:`~zfcore.deconv.Projection` and the
unit's receptive field) and returns a matplotlib figure; nothing here computes an analysis.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .deconv import to_display, to_hwc

__all__ = ["unit_projection_figure"]


def unit_projection_figure(
    image01: torch.Tensor,
    pixels: torch.Tensor,
    title: str,
    field_box: "tuple[int, int, int, int] | None" = None,
):
    """Section 2.1 / Fig. 1 for one activation: (a) the photo with the activation's receptive
    field, (b) the deconvnet projection of the activation to pixels (grey is zero), and where the
    field is known (c) the projection and (d) the photo cut to it, as the panels of Fig. 2."""
    panels = [(to_hwc(image01), "input"), (to_display(pixels), "projection (deconvnet)")]
    if field_box is not None:
        x0, y0, x1, y1 = (int(v) for v in field_box)
        H, W = image01.shape[-2:]
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if xb > xa and yb > ya:
            panels += [
                (to_display(pixels[:, ya:yb, xa:xb]), "projection, receptive field"),
                (to_hwc(image01[:, ya:yb, xa:xb]), "image patch"),
            ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 3.5), squeeze=False)
    for ax, (img, name) in zip(axes[0], panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if field_box is not None:
        x0, y0, x1, y1 = field_box
        axes[0, 0].add_patch(
            plt.Rectangle(
                (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="yellow", linewidth=1.2
            )
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
