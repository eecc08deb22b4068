"""Figures of the training notebooks: Fig. 4 (feature evolution), per-layer convergence, training
curves, Fig. 6 (first-layer filters and their numbers) and Tables 2-3 (ablations).

Every function takes result objects (``zfcore.train.TrainRun``, ``zfcore.evolution.Convergence``,
``zfcore.paper.fig4_evolution.Fig4Projections``, ``zfcore.firstlayer.FirstLayer``, plain rows)
and returns a matplotlib figure; nothing here computes an analysis.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = [
    "show_patch",
    "plot_fig4",
    "plot_convergence",
    "plot_training_curves",
    "plot_dead_maps",
    "plot_recipes",
    "plot_side_by_side",
    "plot_first_layer_filters",
    "plot_first_layer_numbers",
    "plot_ablation_table",
    "plot_layer_schedules",
    "plot_layer2_features",
]

_LAYER_ORDER = ("layer1", "layer2", "layer3", "layer4", "layer5", "layer6", "layer7", "logits")


def _layer_colour(layer: str):
    """The same colour for a layer in every panel (dark = low, bright = high)."""
    i = _LAYER_ORDER.index(layer) if layer in _LAYER_ORDER else 0
    return plt.get_cmap("viridis")(i / (len(_LAYER_ORDER) - 1))


def _title_room(fig) -> tuple[float, float, float, float]:
    """``tight_layout`` rectangle that leaves half an inch for the suptitle."""
    return (0, 0, 1, 1 - 0.5 / fig.get_figheight())


def show_patch(x: torch.Tensor) -> np.ndarray:
    """A projection or image patch ``(3, h, w)`` as an RGB array in [0, 1], contrast-stretched
    around its mean (the paper shows projections this way)."""
    a = x.detach().double()
    a = a - a.mean()
    m = float(a.abs().max())
    a = a / (2 * m) + 0.5 if m > 0 else a + 0.5
    return a.clamp(0, 1).permute(1, 2, 0).numpy()


def _epoch_label(e: float) -> str:
    return f"{e:g}"


def _epoch_axis(axis, epochs: Sequence[float]) -> None:
    """A log-scaled axis labelled exactly at the checkpoint epochs (no minor labels)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    axis.set_major_locator(FixedLocator(list(epochs)))
    axis.set_minor_locator(NullLocator())
    axis.set_ticklabels([_epoch_label(e) for e in epochs], fontsize=7)


def plot_fig4(fig4, title: str = "") -> plt.Figure:
    """Fig. 4: one block of rows per layer (its chosen maps), one column per checkpoint; each
    cell is the deconvnet projection of the map's strongest activation at that epoch."""
    layers = list(fig4.projections)
    rows = sum(fig4.projections[l].shape[0] for l in layers)
    cols = len(fig4.epochs)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.15 * cols + 0.8, 1.15 * rows + 0.6), squeeze=False
    )
    r = 0
    for l in layers:
        p = fig4.projections[l]
        for m in range(p.shape[0]):
            for c in range(cols):
                ax = axes[r, c]
                ax.imshow(show_patch(p[m, c]), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"epoch {_epoch_label(fig4.epochs[c])}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{l}\nmap {fig4.maps[l][m]}", fontsize=7)
            r += 1
    fig.suptitle(
        title
        or "Fig. 4: strongest activation of each feature map across training, projected to pixels",
        fontsize=10,
    )
    fig.tight_layout(rect=_title_room(fig))
    return fig


def plot_convergence(conv, title: str = "") -> plt.Figure:
    """Per-layer convergence: similarity to the final checkpoint against epoch (top-k overlap and
    weight progress), and the convergence epoch of each layer."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (name, sims, thr) in zip(
        axes[:2],
        (
            ("top-9 images shared with the final model", conv.topk_similarity, conv.topk_threshold),
            (
                "weights: share of the way to the final values",
                conv.weight_similarity,
                conv.weight_threshold,
            ),
        ),
    ):
        layers = list(sims)
        for l in layers:
            ax.plot(conv.epochs, sims[l], "o-", ms=3, label=l, color=_layer_colour(l))
        ax.axhline(thr, color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        _epoch_axis(ax.xaxis, conv.epochs)
        ax.set_xlabel("epoch (log scale)")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(min(0, min(min(v) for v in sims.values())), 1.05)
        ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    layers = [l for l in conv.topk_converged if getattr(conv, "map_converged", {}).get(l)]
    if layers:  # the spread over the maps of each layer (firing maps only)
        data = [
            [v if not math.isnan(v) else conv.epochs[-1] * 1.5 for v in conv.map_converged[l]]
            for l in layers
        ]
        ax.boxplot(data, positions=np.arange(len(layers)), widths=0.5, showfliers=True)
        rng = np.random.default_rng(0)
        for i, d in enumerate(data):
            ax.scatter(
                i + rng.uniform(-0.15, 0.15, len(d)),
                d,
                s=6,
                alpha=0.35,
                color=_layer_colour(layers[i]),
            )
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels(
            [f"{l}\n({conv.alive_maps[l]}/{conv.total_maps[l]})" for l in layers], fontsize=7
        )
        ax.set_title(
            f"per-map epoch from which top-9 overlap >= {conv.topk_threshold:g}\n"
            "(firing maps / all maps; above the last epoch: never)",
            fontsize=9,
        )
    ax.set_yscale("log")
    _epoch_axis(ax.yaxis, conv.epochs)
    ax.set_ylabel("convergence epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=_title_room(fig))
    return fig


def plot_recipes(results: Sequence, chosen: "str | None" = None, title: str = "") -> plt.Figure:
    """The recipe comparison (:func:`zfcore.paper.fig4_evolution.compare_recipes`): validation
    error, dead maps per layer and the layer-1 low-frequency share of each recipe; ``chosen`` is
    highlighted."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    names = [r.recipe for r in results]
    x = np.arange(len(names))
    colours = ["C3" if n == chosen else "C0" for n in names]
    axes[0].bar(x, [r.val_top1_error for r in results], color=colours)
    axes[0].set_ylabel("validation top-1 error (%)")
    layers = [l for l in _LAYER_ORDER if l in results[0].dead_share]
    w = 0.8 / max(len(layers), 1)
    for i, l in enumerate(layers):
        axes[1].bar(
            x - 0.4 + (i + 0.5) * w,
            [100 * r.dead_share[l] for r in results],
            w,
            color=_layer_colour(l),
            label=l,
        )
    axes[1].set_ylabel("maps that never fire (%)")
    axes[1].legend(fontsize=6, ncol=2)
    axes[2].bar(x, [100 * r.layer1_low_frequency_share for r in results], color=colours)
    axes[2].axhline(18, color="grey", ls="--", lw=1)
    axes[2].text(len(names) - 0.5, 19, "random filters", fontsize=7, ha="right", color="grey")
    axes[2].set_ylabel("layer-1 power below 1/4 cycle/px (%)")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(
            [n + (" *" if n == chosen else "") for n in names], fontsize=7, rotation=15
        )
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "training recipes on the same budget", fontsize=10)
    fig.tight_layout(rect=_title_room(fig))
    return fig


def plot_dead_maps(run, title: str = "") -> plt.Figure:
    """Per layer, the share of maps that fired on no validation image, at every epoch of
    ``run`` (the trainer records it; :mod:`zfcore.health`)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ep = [h.epoch for h in run.history]
    layers = [l for l in _LAYER_ORDER if l in run.history[-1].dead_share]
    for l in layers:
        ax.plot(
            ep,
            [100 * h.dead_share.get(l, math.nan) for h in run.history],
            "o-",
            ms=3,
            label=l,
            color=_layer_colour(l),
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("maps that never fire on validation (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "dead maps per layer across training", fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curves(runs: Mapping[str, "object"], title: str = "") -> plt.Figure:
    """Validation, eval-mode training and running training top-1 error against epoch for named
    :class:`TrainRun` s."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, run) in enumerate(runs.items()):
        ep = [h.epoch for h in run.history]
        c = f"C{i}"
        ax.plot(ep, [h.val_top1_error for h in run.history], "o-", color=c, label=f"{name} (val)")
        ax.plot(
            ep,
            [h.train_top1_error for h in run.history],
            "s--",
            color=c,
            alpha=0.6,
            label=f"{name} (train, running)",
        )
        ax.plot(
            ep,
            [h.train_eval_top1_error for h in run.history],
            "^:",
            color=c,
            alpha=0.8,
            label=f"{name} (train, eval mode)",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "training curves", fontsize=10)
    fig.tight_layout()
    return fig


def plot_side_by_side(
    rows: Sequence[Mapping],
    metrics: Sequence[tuple[str, str]],
    label: str = "name",
    title: str = "",
) -> plt.Figure:
    """One bar panel per ``(key, axis label)`` in ``metrics`` over ``rows`` (dicts), e.g.
    accuracy and wall time of two training schemes side by side."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    names = [str(r[label]) for r in rows]
    for ax, (key, axis) in zip(axes[0], metrics):
        vals = [float(r[key]) for r in rows]
        bars = ax.bar(range(len(rows)), vals, color=[f"C{i}" for i in range(len(rows))])
        for b, v in zip(bars, vals):
            ax.text(
                b.get_x() + b.get_width() / 2,
                b.get_height(),
                f"{v:.3g}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, fontsize=8, rotation=10)
        ax.set_ylabel(axis)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=_title_room(fig))
    return fig


def plot_layer_schedules(study, title: str = "") -> plt.Figure:
    """Notebook 04's per-layer schedules (a :class:`zfcore.paper.fig4_evolution.LayerSchedules`;
    section 4.2's reading of Fig. 4): validation accuracy, the training time relative to one global
    rate and the step throughput once frozen (both from the throughput measured now, side by side),
    one bar per arm."""
    return plot_side_by_side(
        study.rows(),
        [
            ("val accuracy (%)", "validation accuracy (%)"),
            ("relative training time", "training time / one global rate's"),
            ("images/s", "images/s once frozen (measured now)"),
        ],
        title=title,
    )


def plot_first_layer_filters(reports: Sequence, cols: int = 16, title: str = "") -> plt.Figure:
    """Fig. 6 (b)-(c): the first-layer filters of each network (one block of rows per network),
    each contrast-stretched; weak filters (the paper's "dead" ones,
    :func:`zfcore.firstlayer.weak_maps`) are framed in red."""
    blocks = [(r, math.ceil(len(r.filters) / cols)) for r in reports]
    rows = sum(b for _, b in blocks)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.55, rows * 0.6 + 0.5 * len(reports)), squeeze=False
    )
    r0 = 0
    for rep, nrows in blocks:
        for i in range(nrows * cols):
            ax = axes[r0 + i // cols, i % cols]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= len(rep.filters):
                ax.axis("off")
                continue
            ax.imshow(show_patch(rep.filters[i]), interpolation="nearest")
            if bool(rep.weak[i]):
                for s in ax.spines.values():
                    s.set_color("red")
                    s.set_linewidth(2)
            if i == 0:
                ax.set_title(
                    f"{rep.name}: {rep.kernel}x{rep.kernel} stride {rep.stride}",
                    fontsize=8,
                    loc="left",
                    x=0,
                )
        r0 += nrows
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=_title_room(fig))
    return fig


def plot_layer2_features(
    features: Mapping[str, Mapping],
    layer: str = "layer2",
    title: str = "layer-2 features: strongest activation per map, projected to pixels",
) -> plt.Figure:
    """Fig. 6 (d)-(e): one row per network (``features[name]`` as returned by
    :func:`zfcore.evolution.strongest_projections`), one column per chosen map of ``layer``: its
    strongest activation projected to pixels and cropped to the receptive field."""
    cols = max(len(res["projections"][layer]) for res in features.values())
    fig, axes = plt.subplots(
        len(features), cols, figsize=(1.4 * cols, 1.7 * len(features)), squeeze=False
    )
    for row, (name, res) in enumerate(features.items()):
        for c in range(cols):
            axes[row, c].imshow(show_patch(res["projections"][layer][c]))
            axes[row, c].set_xticks([])
            axes[row, c].set_yticks([])
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_first_layer_numbers(reports: Sequence, title: str = "") -> plt.Figure:
    """The numbers of section 4.1 side by side: dead maps, aliased energy, frequency bands and
    the norm share of the top filters, one bar per network."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    names = [r.name for r in reports]
    x = np.arange(len(reports))
    colours = [f"C{i}" for i in range(len(reports))]

    def bars(ax, vals, label, fmt="{:.1%}"):
        b = ax.bar(x, vals, color=colours)
        for bb, v in zip(b, vals):
            ax.text(
                bb.get_x() + bb.get_width() / 2,
                bb.get_height(),
                fmt.format(v),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(x)
        ax.set_xticklabels(names, fontsize=8, rotation=10)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, max(max(vals) * 1.15, 0.05))

    bars(axes[0], [r.weak_fraction for r in reports], "dead first-layer maps")
    bars(
        axes[1],
        [r.mean_aliased for r in reports],
        "filter energy above the stride's Nyquist\n(aliased)",
    )
    w = 0.8 / 3
    for j, band in enumerate(("low", "mid", "high")):
        axes[2].bar(x + (j - 1) * w, [r.bands[band] for r in reports], w, label=band)
    axes[2].set_xticks(x)
    axes[2].set_xticklabels(names, fontsize=8, rotation=10)
    axes[2].set_title("filter energy by frequency band", fontsize=9)
    axes[2].legend(fontsize=7)
    bars(
        axes[3],
        [r.top_norm_share for r in reports],
        f"share of filter norm in the top {reports[0].top} filters",
    )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=_title_room(fig))
    return fig


def plot_ablation_table(
    rows: Sequence[Mapping], paper_rows: Sequence[Mapping] = (), title: str = ""
) -> plt.Figure:
    """Tables 2-3 in the paper's layout: one line per model, train top-1 error (eval mode, on a
    fixed subset of training images; and, where a row has ``train_running_top1_error``, the
    running error of the last epoch with dropout and augmentation, labelled as such), val top-1
    and val top-5 error (%), each the mean ± standard deviation over the row's ``seeds`` where it
    has ``<key>_sd``; the paper's published lines (labelled as the paper's) below ours."""

    def num(r, k):
        if r.get(k) is None:
            return "-"
        return f"{r[k]:.1f}" if not r.get(k + "_sd") else f"{r[k]:.1f} ± {r[k + '_sd']:.1f}"

    cols = [
        "model",
        "seeds",
        "train top-1\n(eval)",
        "train top-1\n(running)",
        "val top-1",
        "val top-5",
    ]
    keys = ["train_top1_error", "train_running_top1_error", "val_top1_error", "val_top5_error"]
    cells = [[r["model"], str(r.get("seeds", 1))] + [num(r, k) for k in keys] for r in rows]
    cells += [[f"paper: {r['model']}", "-"] + [num(r, k) for k in keys] for r in paper_rows]
    fig, (ax_t, ax_b) = plt.subplots(
        1, 2, figsize=(16, 0.42 * len(cells) + 1.6), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    ax_t.axis("off")
    table = ax_t.table(
        cellText=cells,
        colLabels=cols,
        loc="center",
        cellLoc="center",
        colWidths=[0.44, 0.06, 0.13, 0.13, 0.12, 0.12],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    for j in range(len(cols)):  # room for the two-line headers
        table[0, j].set_height(table[0, j].get_height() * 1.8)
    for i in range(len(rows), len(cells)):
        for j in range(len(cols)):
            table[i + 1, j].set_facecolor("#eeeeee")
    y = np.arange(len(rows))
    ax_b.barh(
        y - 0.2,
        [r["train_top1_error"] for r in rows],
        0.4,
        label="train top-1 (eval mode)",
        xerr=[r.get("train_top1_error_sd", 0) for r in rows],
    )
    ax_b.barh(
        y + 0.2,
        [r["val_top1_error"] for r in rows],
        0.4,
        label="val top-1",
        xerr=[r.get("val_top1_error_sd", 0) for r in rows],
    )
    ax_b.set_yticks(y)
    ax_b.set_yticklabels([r["model"] for r in rows], fontsize=8)
    ax_b.invert_yaxis()
    ax_b.set_xlabel("error (%)")
    ax_b.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax_b.grid(axis="x", alpha=0.3)
    fig.suptitle(
        title or "Tables 2-3: ablations (ours; the paper's ImageNet numbers shaded)", fontsize=10
    )
    fig.tight_layout(rect=_title_room(fig))
    return fig
