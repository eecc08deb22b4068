"""Fig. 8 (the occlusion grid) and Table 1 (consistency scores), drawn from
:class:`zfcore.paper.fig8_table1_correspondence.CorrespondenceResult` and the occluded images."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..paper.fig8_table1_correspondence import RANDOM, CorrespondenceResult

__all__ = ["occlusion_grid", "table1_figure", "table1_text"]

_LABELS = {"left_eye": "left eye", "right_eye": "right eye", "nose": "nose", RANDOM: "random"}


def _hwc(img) -> np.ndarray:
    a = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=np.float32)
    return np.clip(a.transpose(1, 2, 0), 0, 1)


def occlusion_grid(columns: Mapping[str, Sequence]):
    """Fig. 8: one row per image, one column per version (``{"original": images, "left_eye":
    images, ...}``, each a sequence of (3, H, W) images in [0, 1])."""
    names = list(columns)
    n = len(columns[names[0]])
    fig, axes = plt.subplots(
        n, len(names), figsize=(1.9 * len(names), 1.9 * n + 0.3), squeeze=False
    )
    for c, name in enumerate(names):
        for r in range(n):
            ax = axes[r, c]
            ax.imshow(_hwc(columns[name][r]))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, c].set_title(_LABELS.get(name, name), fontsize=10)
    fig.suptitle("The same part occluded in every image, and random regions (Fig. 8)", fontsize=10)
    fig.tight_layout()
    return fig


def table1_figure(result: CorrespondenceResult):
    """Table 1 as bars: mean consistency score (lower = more consistent) with the standard
    deviation over draws, per occlusion location, for each layer."""
    fig, axes = plt.subplots(
        1, len(result.layers), figsize=(4.2 * len(result.layers), 3.4), squeeze=False
    )
    for ax, layer in zip(axes[0], result.layers):
        means = [result.mean(p, layer) for p in result.parts]
        sds = [result.std(p, layer) for p in result.parts]
        colours = ["#999999" if p == RANDOM else "#1f77b4" for p in result.parts]
        ax.bar([_LABELS.get(p, p) for p in result.parts], means, yerr=sds, capsize=4, color=colours)
        ax.set_ylim(0, 1.15 * max(m + s for m, s in zip(means, sds)))
        for i, m in enumerate(means):
            ax.text(i, m / 2, f"{m:.3f}", ha="center", fontsize=8, color="w")
        ax.set_title(f"{layer}: sign-change disagreement", fontsize=10)
        ax.set_ylabel("mean Hamming distance / features", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle(
        f"Table 1: consistency of occluding a part in {result.n_images} faces "
        f"(mean ± sd over {len(next(iter(result.scores.values())))} draws; lower is "
        f"more consistent)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def table1_text(result: CorrespondenceResult) -> str:
    """Table 1 as plain text, one row per occlusion location, mean ± sd per layer."""
    head = f"{'occlusion location':20s}" + "".join(f"{l:>22s}" for l in result.layers)
    lines = [head]
    for p in result.parts:
        cells = "".join(
            f"{result.mean(p, l):>13.4f} ± {result.std(p, l):.4f}" for l in result.layers
        )
        lines.append(f"{_LABELS.get(p, p):20s}{cells}")
    return "\n".join(lines)
