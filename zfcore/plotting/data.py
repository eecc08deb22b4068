"""Figures of the data: a grid of procedural scenes with their ground truth drawn on top
(object boxes and the face keypoints used by Table 1's correspondence experiment)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ..errors import ZFCoreError

__all__ = ["sample_grid", "PlotError", "PlotTypeError"]


class PlotError(ZFCoreError, ValueError):
    """Nothing to draw (an empty batch)."""


class PlotTypeError(PlotError, TypeError):
    """An object the figure cannot be drawn from."""


_KEYPOINT_STYLE = {
    "left_eye": ("o", "#00e5ff"),
    "right_eye": ("o", "#ff3df5"),
    "nose": ("^", "#ffe600"),
}


def sample_grid(
    batch,
    ncols: int = 8,
    show_boxes: bool = True,
    show_keypoints: bool = True,
    title: str | None = None,
    panel_size: float = 1.6,
):
    """Draw a :class:`~zfcore.data.SceneBatch` as a grid: each image with its class name, its
    object box (when ``show_boxes``) and its part keypoints (when ``show_keypoints``).
    Returns the matplotlib figure."""
    if not hasattr(batch, "images") or not hasattr(batch, "labels"):
        raise PlotTypeError(
            "sample_grid needs a SceneBatch (from dataset.scenes(indices)), not "
            f"{type(batch).__name__}"
        )
    n = len(batch.labels)
    if n == 0:
        raise PlotError("sample_grid got an empty batch")
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.3), squeeze=False
    )
    imgs = batch.images.detach().permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy()
    names = getattr(batch, "classes", ()) or ()
    used = set()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(imgs[i], interpolation="nearest")
        lab = int(batch.labels[i])
        ax.set_title(names[lab] if lab < len(names) else str(lab), fontsize=8, pad=2)
        if show_boxes and batch.boxes is not None:
            x0, y0, x1, y1 = (float(v) for v in batch.boxes[i])
            ax.add_patch(
                plt.Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor="#39ff14",
                    linewidth=1.0,
                )
            )
        if show_keypoints:
            for name, xy in batch.keypoints.items():
                x, y = (float(v) for v in xy[i])
                if np.isnan(x) or np.isnan(y):
                    continue
                marker, colour = _KEYPOINT_STYLE.get(name, ("x", "white"))
                ax.plot(
                    x - 0.5,
                    y - 0.5,
                    marker,
                    color=colour,
                    markersize=4,
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    label=name,
                )
                used.add(name)
    if used:
        handles = [
            plt.Line2D(
                [],
                [],
                marker=_KEYPOINT_STYLE.get(k, ("x", "w"))[0],
                linestyle="",
                color=_KEYPOINT_STYLE.get(k, ("x", "w"))[1],
                markeredgecolor="black",
                label=k.replace("_", " "),
            )
            for k in sorted(used)
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, -0.01),
        )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
