"""Fig. 7 (occlusion sensitivity) and the pointing-game summary, drawn from
:class:`zfcore.occlusion.OcclusionResult` /
:class:`~zfcore.paper.fig7_occlusion.PointingGameResult`."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from ..occlusion import OcclusionResult
from ..paper.fig7_occlusion import PointingGameResult
from .deconv import to_display

__all__ = ["occlusion_figure", "pointing_game_figure"]


def _hwc(img) -> np.ndarray:
    a = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a.transpose(1, 2, 0)
    return np.clip(a, 0, 1)


def _extent(res: OcclusionResult) -> list[float]:
    """imshow extent that puts each map cell at its square's centre, in image pixels."""
    cy, cx = (t.numpy() for t in res.centres)
    hx = (cx[1] - cx[0]) / 2 if len(cx) > 1 else res.window / 2
    hy = (cy[1] - cy[0]) / 2 if len(cy) > 1 else res.window / 2
    return [cx[0] - hx, cx[-1] + hx, cy[-1] + hy, cy[0] - hy]


def _box(ax, box, colour="w", lw=1.2):
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=lw))


def occlusion_figure(
    images01,
    results: Sequence[OcclusionResult],
    class_names: Sequence[str],
    projections=None,
    boxes=None,
    titles: "Sequence[str] | None" = None,
    projection_boxes=None,
):
    """Fig. 7's five panels per image (one row each): (a) the input with the square drawn to
    scale, (b) the total activation of the strongest layer-5 feature map for each square position,
    (c) that feature map projected to pixels by the deconvnet (if ``projections``, the raw
    (N, 3, H, W) ``Projection.pixels``, are given; drawn grey-centred),
    (d) p(correct class) for each position, (e) the most probable class for each position.

    ``images01`` are the inputs for display (N, 3, H, W) in [0, 1]; ``boxes`` the object boxes;
    ``projection_boxes`` the receptive field of each projected activation (the paper's black
    square in panel c)."""
    n = len(results)
    cols = 5 if projections is not None else 4
    fig, axes = plt.subplots(n, cols, figsize=(3.0 * cols, 3.0 * n + 0.4), squeeze=False)
    palette = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    label_cmap = ListedColormap([palette(i % palette.N) for i in range(len(class_names))])
    for r, res in enumerate(results):
        H, W = res.image_size
        ax = axes[r, 0]
        ax.imshow(_hwc(images01[r]), extent=[0, W, H, 0])
        _box(ax, None if boxes is None else boxes[r])
        ax.add_patch(Rectangle((2, 2), res.window, res.window, color=(0.5, 0.5, 0.5), ec="k"))
        name = class_names[res.target] if res.target < len(class_names) else str(res.target)
        ax.set_title((titles[r] + "\n" if titles else "") + f"(a) input: {name}", fontsize=9)
        c = 1
        ax = axes[r, c]
        im = ax.imshow(res.feature_total.numpy(), extent=_extent(res), cmap="viridis")
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        _box(ax, None if boxes is None else boxes[r])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(f"(b) {res.layer} map {res.feature}: total activation", fontsize=9)
        if projections is not None:
            c += 1
            ax = axes[r, c]
            ax.imshow(to_display(projections[r]), extent=[0, W, H, 0])
            field = None if projection_boxes is None else projection_boxes[r]
            if field is not None and (field[2] - field[0]) * (field[3] - field[1]) < 0.8 * H * W:
                _box(ax, field, colour="k")  # a field covering the image marks nothing
            ax.set_title(f"(c) map {res.feature} projected (deconvnet)", fontsize=9)
        c += 1
        ax = axes[r, c]
        im = ax.imshow(
            res.prob_target.numpy(),
            extent=_extent(res),
            cmap="jet",
            vmin=0,
            vmax=max(1e-6, float(res.prob_target.max())),
        )
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        _box(ax, None if boxes is None else boxes[r])
        x, y = res.most_damaging()
        ax.plot([x], [y], marker="x", color="w", ms=9, mew=2)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(f"(d) p({name}); unoccluded {res.prob_target_clean:.2f}", fontsize=9)
        c += 1
        ax = axes[r, c]
        ax.imshow(
            res.top_class.numpy(),
            extent=_extent(res),
            cmap=label_cmap,
            vmin=-0.5,
            vmax=len(class_names) - 0.5,
            interpolation="nearest",
        )
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        present = sorted(set(res.top_class.flatten().tolist()))
        ax.legend(
            handles=[Patch(color=label_cmap(k), label=class_names[k]) for k in present],
            fontsize=7,
            loc="lower left",
            framealpha=0.8,
        )
        ax.set_title("(e) most probable class", fontsize=9)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle(
        f"Occlusion with a {results[0].window} px grey square, stride "
        f"{results[0].stride} px (Fig. 7)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def pointing_game_figure(result: PointingGameResult):
    """Left: hit rate against the two chance levels. Right: every image's most damaging square,
    in coordinates of its object box (the box is the unit square): hits inside, misses outside."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8), gridspec_kw={"width_ratios": [1, 1.2]})
    names = ["occlusion\nminimum", "chance:\nbox area", "chance:\nsquare grid"]
    vals = [result.hit_rate, result.chance_rate, result.chance_grid_rate]
    bars = a.bar(names, [100 * v for v in vals], color=["#1f77b4", "#999999", "#bbbbbb"])
    for bar, v in zip(bars, vals):
        a.text(
            bar.get_x() + bar.get_width() / 2,
            100 * v + 1,
            f"{100 * v:.0f}%",
            ha="center",
            fontsize=9,
        )
    a.set_ylim(0, 105)
    a.set_ylabel("% of images: point inside the object box")
    a.set_title(f"Pointing game, {len(result.hits)} images", fontsize=10)
    pts = result.points.numpy()
    hits = result.hits.numpy()
    b.add_patch(Rectangle((0, 0), 1, 1, fill=False, ec="k", lw=1.5))
    if len(pts):
        bx = result.boxes.numpy()
        u = (pts[:, 0] - bx[:, 0]) / np.maximum(bx[:, 2] - bx[:, 0], 1e-6)
        v = (pts[:, 1] - bx[:, 1]) / np.maximum(bx[:, 3] - bx[:, 1], 1e-6)
        b.scatter(u[hits], v[hits], s=8, c="#1f77b4", label="inside (hit)")
        b.scatter(u[~hits], v[~hits], s=8, c="#d62728", label="outside (miss)")
        b.set_xlim(-1, 2)
        b.set_ylim(2, -1)
        b.set_aspect("equal")
        b.legend(fontsize=8, loc="lower right")
        b.set_title("most damaging square, in object-box coordinates", fontsize=10)
    fig.tight_layout()
    return fig
