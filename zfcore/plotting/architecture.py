"""Fig. 3: the network drawn as a row of blocks, one per layer, sized by its output."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from ..summary import LayerRow

__all__ = ["draw_architecture", "table_text"]

_COLOURS = {"conv": "#4c72b0", "pool": "#55a868", "norm": "#c44e52", "fc": "#8172b2"}


def draw_architecture(tables: dict[str, list[LayerRow]], title: str = "") -> plt.Figure:
    """Draw one row per model: a block per conv / pool / norm / fc layer, labelled with its
    kernel, stride and output size (the information of the paper's Fig. 3)."""
    fig, axes = plt.subplots(len(tables), 1, figsize=(15, 2.6 * len(tables)), squeeze=False)
    # one scale for every row, so the models' sizes compare
    biggest = max(
        r.out_shape[-1] for rows in tables.values() for r in rows if len(r.out_shape) == 3
    )
    for ax, (label, rows) in zip(axes[:, 0], tables.items()):
        shown = [r for r in rows if r.kind in _COLOURS]
        for i, r in enumerate(shown):
            # height grows with the square root of the spatial side; fc layers are thin bars
            h = 0.25 + 0.7 * (r.out_shape[-1] / biggest) ** 0.5 if len(r.out_shape) == 3 else 0.2
            ax.add_patch(
                FancyBboxPatch(
                    (i, 0.5 - h / 2),
                    0.8,
                    h,
                    boxstyle="round,pad=0.02",
                    color=_COLOURS[r.kind],
                    alpha=0.85,
                )
            )
            size = (
                "x".join(str(s) for s in (r.out_shape[1:] + r.out_shape[:1]))
                if len(r.out_shape) == 3
                else f"{r.out_shape[0]}"
            )
            top = f"{r.name}\n{r.kernel}/{r.stride}" if r.kernel else r.name
            ax.text(
                i + 0.4,
                0.5,
                top,
                ha="center",
                va="center",
                color="white",
                fontsize=8,
                weight="bold",
            )
            ax.text(i + 0.4, -0.02, size, ha="center", va="top", fontsize=7, rotation=0)
        ax.set_xlim(-0.2, len(shown))
        ax.set_ylim(-0.25, 1.05)
        ax.axis("off")
        ax.set_title(label, loc="left", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def table_text(rows: list[LayerRow]) -> str:
    """A plain-text layer table (kernel, stride, output, parameters)."""
    lines = [f"{'layer':8s} {'kernel':>7s} {'stride':>6s} {'output':>16s} {'params':>12s}"]
    for r in rows:
        if r.kind in ("relu", "dropout"):
            continue
        lines.append(
            f"{r.name:8s} {r.kernel:>7s} {r.stride:>6s} {str(r.out_shape):>16s} {r.params:>12,d}"
        )
    lines.append(f"{'total':8s} {'':>7s} {'':>6s} {'':>16s} {sum(r.params for r in rows):>12,d}")
    return "\n".join(lines)
