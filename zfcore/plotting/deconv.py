"""Figures of the deconvnet (Fig. 1), the top-9 projections (Fig. 2) and the sanity checks.

Every function takes results computed by :mod:`zfcore.deconv`, :mod:`zfcore.mining`,
:mod:`zfcore.paper.fig2_top9` or :mod:`zfcore.sanity` and returns a matplotlib figure; nothing
here computes an analysis. Projections are shown as the paper shows them: each scaled by its
largest absolute value around a grey zero (:func:`to_display`); images go to ``imshow`` through
:func:`to_hwc`.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..errors import ZFCoreError

__all__ = [
    "PlotError",
    "to_display",
    "to_hwc",
    "mosaic",
    "plot_deconv_steps",
    "plot_filters",
    "plot_top9",
    "plot_layer_measures",
    "plot_top9_measures",
    "plot_projection_on_image",
    "plot_sanity_maps",
    "plot_sanity_curves",
]


class PlotError(ZFCoreError, ValueError):
    """Nothing to draw: a figure asked for without its panels."""


def to_display(pixels: torch.Tensor, percentile: float = 99.5) -> np.ndarray:
    """Projections ``(N, 3, H, W)`` (or one ``(3, H, W)``) as images in [0, 1], ``(N, H, W, 3)``:
    each divided by twice the ``percentile`` of its absolute values (100: its maximum) and centred
    on grey, so zero is grey, the sign of every pixel is kept, and a few extreme pixels do not
    wash out the rest (they are clipped)."""
    p = pixels.detach().float()
    single = p.dim() == 3
    if single:
        p = p[None]
    v = torch.quantile(p.abs().flatten(1), percentile / 100.0, dim=1)
    v = torch.where(v > 0, v, p.abs().flatten(1).amax(1)).clamp_min(1e-12).view(-1, 1, 1, 1)
    out = (p / (2 * v) + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return out[0] if single else out


def to_hwc(images01: torch.Tensor) -> np.ndarray:
    """Images ``(..., 3, H, W)`` in [0, 1] as a numpy array ``(..., H, W, 3)`` for ``imshow``
    (values clamped to [0, 1])."""
    t = images01.detach().float().clamp(0, 1)
    return t.permute(*range(t.dim() - 3), -2, -1, -3).cpu().numpy()


def mosaic(tiles: np.ndarray, ncols: int = 3, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile ``(n, h, w, 3)`` images into one ``ncols``-wide image with ``pad`` pixels between."""
    n, h, w = tiles.shape[:3]
    nrows = math.ceil(n / ncols)
    out = np.full(
        (nrows * (h + pad) - pad, ncols * (w + pad) - pad, tiles.shape[3]), fill, dtype=np.float32
    )
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tiles[i]
    return out


def _magnitude(t: torch.Tensor) -> np.ndarray:
    return t.detach().abs().sum(0).cpu().numpy() if t.dim() == 3 else t.detach().abs().cpu().numpy()


def _group_steps(steps):
    """Split the walk into one group per layer, each ending with its ``filter`` step."""
    groups, cur = [], []
    for s in steps:
        cur.append(s)
        if s.op == "filter":
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    return groups


def plot_deconv_steps(steps, image01: torch.Tensor, title: str | None = None):
    """Fig. 1 run on a real activation: one row per layer, from the projected layer down to pixels.

    Columns: the layer's forward feature maps (summed magnitude over maps), the max-pooling
    switches used to unpool (where present), the unpooled, the rectified and the filtered
    reconstruction (the signal passed to the layer below); the last row ends with the projection
    in pixel space beside the input ``image01`` (``(3, H, W)`` in [0, 1]).
    """
    groups = _group_steps(steps)
    cols = [
        "forward: layer's feature maps",
        "switches",
        "unpooled",
        "rectified",
        "filtered (to the layer below)",
    ]
    nrows = len(groups) + 1
    fig, axes = plt.subplots(
        nrows, len(cols), figsize=(2.3 * len(cols), 2.2 * nrows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    n_layers = len(groups)
    for r, group in enumerate(groups):
        layer_no = n_layers - r
        row = axes[r]
        fwd = next((s for s in group if s.op == "rectify"), None)
        start = next((s for s in group if s.op == "start"), None)
        shown = start if start is not None else fwd
        if shown is not None and shown.forward is not None:
            # the layer's rectified feature maps (the rectify step records the ReLU's input)
            row[0].imshow(_magnitude(shown.forward.clamp(min=0)), cmap="magma")
            row[0].set_title(
                f"layer {layer_no}: {shown.forward.shape[0]} maps {tuple(shown.forward.shape[1:])}",
                fontsize=8,
            )
        for s in group:
            if s.op == "unpool":
                # the map carrying most of the reconstruction: its forward map (grey) and the
                # positions its pooling windows chose (red)
                c = int(s.signal.abs().flatten(1).sum(1).argmax())
                h, w = s.signal.shape[1:]
                chosen = torch.zeros(h * w)
                chosen[s.switches[c].flatten()] = 1.0
                if s.forward is not None:
                    row[1].imshow(s.forward[c].clamp(min=0).numpy(), cmap="gray")
                ys, xs = np.nonzero(chosen.view(h, w).numpy())
                row[1].plot(
                    xs,
                    ys,
                    "s",
                    color="red",
                    markersize=max(1.0, 60 / h),
                    markeredgewidth=0,
                    alpha=0.8,
                )
                row[1].set_xlim(-0.5, w - 0.5)
                row[1].set_ylim(h - 0.5, -0.5)
                row[1].set_title(
                    f"switches of {s.module.split('.')[-1]}, map {c}\n(red: positions chosen)",
                    fontsize=7,
                )
                row[2].imshow(_magnitude(s.signal), cmap="viridis")
                row[2].set_title("unpooled (scatter-add)", fontsize=8)
            elif s.op == "rectify":
                row[3].imshow(_magnitude(s.signal), cmap="viridis")
                row[3].set_title(
                    "rectified (ReLU)" if start is None else "kept activation, rectified",
                    fontsize=8,
                )
            elif s.op == "filter":
                sig = s.signal
                if sig.shape[0] == 3:
                    row[4].imshow(to_display(sig))
                    row[4].set_title("filtered: pixel space", fontsize=8)
                else:
                    row[4].imshow(_magnitude(sig), cmap="viridis")
                    row[4].set_title(
                        f"filtered: {sig.shape[0]} maps {tuple(sig.shape[1:])}", fontsize=8
                    )
        row[0].set_ylabel(f"layer {layer_no}")
    last = axes[-1]
    last[0].imshow(to_hwc(image01))
    last[0].set_title("input image", fontsize=8)
    final = groups[-1][-1].signal if groups else None
    if final is not None and final.shape[0] == 3:
        last[1].imshow(to_display(final))
        last[1].set_title("projection", fontsize=8)
        last[2].imshow(_magnitude(final), cmap="magma")
        last[2].set_title("projection magnitude", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_filters(weight: torch.Tensor, ncols: int = 12, title: str | None = None):
    """First-layer filters ``(out, 3, k, k)`` as colour images, each scaled to [0, 1] (Fig. 2's
    layer-1 panel, Fig. 6)."""
    w = weight.detach().float()
    lo = w.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = w.flatten(1).amax(1).view(-1, 1, 1, 1)
    tiles = ((w - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).cpu().numpy()
    ncols = min(ncols, len(tiles))
    img = mosaic(tiles, ncols=ncols, pad=1)
    fig, ax = plt.subplots(
        figsize=(min(12, 0.55 * ncols + 1), 0.55 * math.ceil(len(tiles) / ncols) + 0.6)
    )
    ax.imshow(img, interpolation="nearest")
    ax.axis("off")
    ax.set_title(title or f"layer 1 filters ({len(tiles)} of {tuple(w.shape[1:])})", fontsize=9)
    return fig


def plot_top9(layer: str, panels: Sequence[dict], ncols: int = 2, title: str | None = None):
    """Fig. 2 for one layer. Each panel is a dict with ``projections`` ``(9, 3, s, s)`` (pixel
    space, cropped to the receptive field), ``patches`` ``(9, 3, s, s)`` in [0, 1] and ``label``
    (e.g. the map index and the classes of its images); drawn as a 3x3 grid of projections beside
    the 3x3 grid of image patches."""
    n = len(panels)
    if n == 0:
        raise PlotError("plot_top9 needs at least one panel: pass the panels of one map or more")
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, 2 * ncols, figsize=(2.4 * 2 * ncols, 2.55 * nrows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, panel in enumerate(panels):
        r, c = divmod(i, ncols)
        k = len(panel["projections"])
        grid = int(math.ceil(math.sqrt(k)))
        axes[r, 2 * c].imshow(
            mosaic(to_display(panel["projections"]), ncols=grid), interpolation="nearest"
        )
        axes[r, 2 * c + 1].imshow(
            mosaic(to_hwc(panel["patches"]), ncols=grid), interpolation="nearest"
        )
        axes[r, 2 * c].set_title(panel.get("label", ""), fontsize=7, loc="left")
    fig.suptitle(
        title
        or f"{layer}: top-{len(panels[0]['projections'])} projections (left) and "
        f"their image patches (right)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_layer_measures(
    layers: Sequence[str],
    specificity: Sequence[float],
    chance: float,
    energy_inside: Sequence[float] | None = None,
    area_share: Sequence[float] | None = None,
    title: str | None = None,
):
    """Bars per layer: class-specificity of the top-9 (majority-class share) against its chance
    level and, when given, the share of projection energy inside the object box against the
    share of the image the box covers."""
    two = energy_inside is not None
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(9 if two else 4.8, 3.3), squeeze=False)
    x = np.arange(len(layers))
    ax = axes[0, 0]
    ax.bar(x, specificity, color="#4c72b0", label="top-9 majority-class share")
    ax.axhline(chance, color="k", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    ax.set_xticks(x, layers)
    ax.set_ylim(0, 1)
    ax.set_title("class-specificity of the top-9", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    if two:
        ax = axes[0, 1]
        ax.bar(x - 0.2, energy_inside, width=0.4, color="#dd8452", label="projection energy in box")
        ax.bar(x + 0.2, area_share, width=0.4, color="#bbbbbb", label="image area in box")
        ax.set_xticks(x, layers)
        ax.set_ylim(0, 1)
        ax.set_title("projection energy inside the object box", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_top9_measures(measures, title: str | None = None):
    """:func:`plot_layer_measures` of a :class:`zfcore.paper.fig2_top9.LayerMeasures` (Fig. 2
    measured)."""
    m, layers = measures, measures.layers
    return plot_layer_measures(
        layers,
        [m.specificity[l] for l in layers],
        m.chance,
        [m.energy[l] for l in layers] if m.energy else None,
        [m.area[l] for l in layers] if m.energy else None,
        title=title,
    )


def plot_projection_on_image(
    image01: torch.Tensor, box, pixels: torch.Tensor, image_title: str, projection_title: str
):
    """Section 2.1 for one activation: the image ``(3, H, W)`` in [0, 1] with its object ``box``
    ``(x0, y0, x1, y1)`` (yellow) beside the projection ``pixels`` ``(3, H, W)``, scaled by its
    largest absolute value around a grey zero."""
    x0, y0, x1, y1 = [float(v) for v in box]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(image01.permute(1, 2, 0).numpy())
    axes[0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow"))
    axes[0].set_title(image_title)
    v = pixels.abs().max()
    axes[1].imshow((pixels / (2 * v) + 0.5).clamp(0, 1).permute(1, 2, 0).numpy())
    axes[1].set_title(projection_title)
    for ax in axes:
        ax.axis("off")
    return fig


def plot_sanity_maps(result, images01: torch.Tensor, example: int = 0):
    """Adebayo et al.'s Fig. 2 layout: one row per rule, one column per randomisation stage
    (``trained``, then layers re-initialised from the top down), for one example image."""
    rules, stages = result.rules, result.stages
    fig, axes = plt.subplots(
        len(rules),
        len(stages) + 1,
        figsize=(1.45 * (len(stages) + 1), 1.6 * len(rules)),
        squeeze=False,
    )
    for r, rule in enumerate(rules):
        axes[r, 0].imshow(to_hwc(images01[example]))
        axes[r, 0].set_ylabel(rule, fontsize=9)
        for s, stage in enumerate(stages):
            m = result.maps[r, s, example].numpy()
            axes[r, s + 1].imshow(m, cmap="gray", vmin=0, vmax=max(float(m.max()), 1e-12))
            if r == 0:
                axes[r, s + 1].set_title(stage if s == 0 else f"to {stage}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    fig.suptitle(
        "cascading randomisation: |projection| as layers are re-initialised top-down", fontsize=9
    )
    fig.tight_layout()
    return fig


def plot_sanity_curves(result):
    """Mean similarity to the trained model's projections at each randomisation stage, per rule:
    Spearman rank correlation of |maps|, of signed maps, and SSIM; dotted lines: the same
    similarity between projections of *different* images (unrelated level)."""
    metrics = [
        ("spearman_abs", "baseline_spearman_abs", "rank correlation (|maps|)"),
        ("spearman", "baseline_spearman", "rank correlation (signed)"),
        ("ssim", "baseline_ssim", "SSIM (|maps|)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
    x = np.arange(len(result.stages))
    colours = ["#c44e52", "#4c72b0", "#55a868", "#8172b2"]
    for ax, (key, base, name) in zip(axes, metrics):
        vals = getattr(result, key)
        for r, rule in enumerate(result.rules):
            mean = vals[r].mean(1).numpy()
            sd = vals[r].std(1).numpy() if vals.shape[2] > 1 else np.zeros_like(mean)
            col = colours[r % len(colours)]
            ax.plot(x, mean, marker="o", color=col, label=rule)
            ax.fill_between(x, mean - sd, mean + sd, color=col, alpha=0.15)
            ax.axhline(float(getattr(result, base)[r]), color=col, linestyle=":", linewidth=1)
        ax.set_xticks(
            x, ["trained"] + [f"to {s}" for s in result.stages[1:]], rotation=50, fontsize=7
        )
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-1.05, 1.05)
    axes[0].set_ylabel("similarity to the trained model")
    axes[0].legend(fontsize=7)
    fig.suptitle("cascading randomisation (dotted: different images, trained model)", fontsize=9)
    fig.tight_layout()
    return fig
