"""Fig. 5 (invariance to translation, scale and rotation), drawn from
:class:`zfcore.paper.fig5_invariance.InvarianceCurves`."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..paper.fig5_invariance import InvarianceCurves, per_class_true_probability

__all__ = ["invariance_figure", "class_invariance_figure", "AXIS_LABELS"]

AXIS_LABELS = {
    "translate_y": "vertical translation (pixels)",
    "scale": "scale (ratio)",
    "rotate": "rotation (degrees)",
}


def _hwc(img) -> np.ndarray:
    a = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=np.float32)
    return np.clip(a.transpose(1, 2, 0) if a.shape[0] == 3 else a, 0, 1)


def invariance_figure(
    curves: Mapping[str, InvarianceCurves],
    strips: Mapping[str, Sequence],
    class_names: Sequence[str],
    layers: Sequence[str] = ("layer1", "layer7"),
    normalized: bool = False,
):
    """The rows of Fig. 5, one per transform: (1) one image transformed in a few steps
    (``strips[kind]``: a list of (3, H, W) images in [0, 1]), (2, 3) the Euclidean distance between
    the original and transformed feature vectors at ``layers`` (one curve per image), (4) p(true
    class). Steps that push the object out of view are drawn dotted. ``normalized`` divides each
    distance curve by its largest in-view value (the measured comparison of the two layers)."""
    kinds = [k for k in ("translate_y", "scale", "rotate") if k in curves]
    ncol = 2 + len(layers)
    fig, axes = plt.subplots(
        len(kinds), ncol, figsize=(3.3 * ncol, 2.9 * len(kinds)), squeeze=False
    )
    colours = plt.get_cmap("tab10")
    for r, kind in enumerate(kinds):
        cur = curves[kind]
        x = cur.amounts.numpy()
        ax = axes[r, 0]
        strip = [_hwc(im) for im in strips.get(kind, [])]
        if strip:
            ax.imshow(np.concatenate(strip, axis=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"({chr(97 + r)}1) {AXIS_LABELS[kind].split(' (')[0]}", fontsize=9)
        panels = [
            (cur.normalized(l).numpy() if normalized else cur.distances[l].numpy(), l)
            for l in layers
        ] + [(cur.prob_true.numpy(), "p(true class)")]
        for c, (vals, what) in enumerate(panels, start=1):
            ax = axes[r, c]
            for i in range(vals.shape[0]):
                lab = int(cur.labels[i])
                name = class_names[lab] if lab < len(class_names) else str(lab)
                col = colours(i % 10)
                ok = cur.in_view[i].numpy()
                y = vals[i].astype(float)
                ax.plot(x, np.where(ok, y, np.nan), "-", color=col, lw=1.4, label=name)
                if not ok.all():
                    ax.plot(x, np.where(ok, np.nan, y), ":", color=col, lw=1)
            ax.set_xlabel(AXIS_LABELS[kind], fontsize=8)
            if what.startswith("layer"):
                ax.set_title(
                    f"({chr(97 + r)}{c + 1}) {what}: "
                    + ("distance / its maximum" if normalized else "Euclidean distance"),
                    fontsize=9,
                )
            else:
                ax.set_title(f"({chr(97 + r)}{c + 1}) {what}", fontsize=9)
                ax.set_ylim(-0.02, 1.02)
            ax.tick_params(labelsize=7)
        if r == 0:
            axes[r, -1].legend(fontsize=7, loc="lower left", framealpha=0.8)
    fig.suptitle(
        "Invariance of features and output to translation, scale and rotation (Fig. 5)", fontsize=11
    )
    fig.tight_layout()
    return fig


def class_invariance_figure(
    curves: Mapping[str, InvarianceCurves],
    class_names: Sequence[str],
    symmetric: Sequence[str] = (),
):
    """Mean p(true class) under each transform, per class: the paper's exception (rotation
    symmetric classes keep their probability under rotation) made visible. Classes in
    ``symmetric`` are marked with an asterisk."""

    kinds = [k for k in ("translate_y", "scale", "rotate") if k in curves]
    K = len(class_names)
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * K + 2), 3.4))
    width = 0.8 / len(kinds)
    colours = {"translate_y": "#1f77b4", "scale": "#2ca02c", "rotate": "#d62728"}
    xs = np.arange(K)
    for j, kind in enumerate(kinds):
        vals = per_class_true_probability(curves[kind], K).numpy()
        ax.bar(
            xs + (j - (len(kinds) - 1) / 2) * width,
            vals,
            width,
            label=AXIS_LABELS[kind].split(" (")[0],
            color=colours.get(kind),
        )
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [n + (" *" if n in symmetric else "") for n in class_names],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("mean p(true class)")
    ax.set_title("Output invariance per class (* rotation-symmetric)", fontsize=10)
    ax.legend(fontsize=8, ncol=len(kinds))
    fig.tight_layout()
    return fig
