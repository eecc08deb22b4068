"""Figures of section 5: Tables 4-5 and 6 drawn as tables, Fig. 9 (accuracy against training
images per class) and Table 7 (accuracy per layer). Every function takes result objects from
:mod:`zfcore.paper.tables4_6_transfer` and :mod:`zfcore.paper.table7_features` (or the rows
they build) and returns a matplotlib figure."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..paper.table7_features import LayerProbeResult
from ..paper.tables4_6_transfer import APPROACHES, TransferResult

__all__ = [
    "format_rows",
    "accuracy_table",
    "accuracy_curve",
    "ap_table",
    "layer_accuracy",
    "layer_table_text",
]

_COLOURS = {"pretrained": "#1f77b4", "scratch": "#d62728", "fine_tuned": "#2ca02c"}


def _cell(mean, std) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def _pivot(rows: Sequence[dict]) -> tuple[list[int], list[tuple[str, str, str]], dict]:
    ns = sorted({r["n"] for r in rows})
    keys: list[tuple[str, str, str]] = []
    cells: dict = {}
    for r in rows:
        k = (r["source"], r["dataset"], r["approach"])
        if k not in keys:
            keys.append(k)
        cells[k, r["n"]] = _cell(r["accuracy_pct"], r.get("std_pct"))
    return ns, keys, cells


def format_rows(rows: Sequence[dict]) -> str:
    """Tables 4-5 (rows of :func:`zfcore.paper.tables4_6_transfer.summary_rows`) as plain text:
    one line per source, data set and approach; one column per number of training images per
    class."""
    ns, keys, cells = _pivot(rows)
    head = ["source", "data set", "approach"]
    w = [max(len(h), *(len(k[i]) for k in keys)) for i, h in enumerate(head)]
    cw = 13
    lines = [
        "  ".join(h.ljust(wi) for h, wi in zip(head, w))
        + "  "
        + "".join(f"{f'{n}/class':>{cw}s}" for n in ns)
    ]
    for k in keys:
        lines.append(
            "  ".join(v.ljust(wi) for v, wi in zip(k, w))
            + "  "
            + "".join(f"{cells.get((k, n), '-'):>{cw}s}" for n in ns)
        )
    return "\n".join(lines)


def accuracy_table(
    rows: Sequence[dict], title: str = "Accuracy (%) by training images per class"
) -> plt.Figure:
    """Tables 4-5 in the paper's layout (rows: approaches; columns: training images per class),
    ours first, then the paper's rows, shaded and labelled as the paper's."""
    ns, keys, cells = _pivot(rows)
    text = [
        [f"{src}: {ds}", appr] + [cells.get((k, n), "-") for n in ns]
        for k in keys
        for (src, ds, appr) in [k]
    ]
    fig, ax = plt.subplots(figsize=(5.8 + 0.9 * len(ns), 0.9 + 0.3 * (len(keys) + 1)))
    ax.axis("off")
    table = ax.table(
        cellText=text,
        colLabels=["source: data set", "approach"] + [f"{n}/class" for n in ns],
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    table.scale(1, 1.35)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
        elif keys[r - 1][0] == "paper":
            cell.set_facecolor("#f6f1e4")
    table.auto_set_column_width(list(range(len(ns) + 2)))
    ax.set_title(
        title + "\n(shaded rows: the paper's published numbers, ImageNet-pretrained network "
        "on Caltech)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def accuracy_curve(results: Sequence[TransferResult], paper: dict | None = None) -> plt.Figure:
    """Fig. 9: accuracy against training images per class, pretrained vs from scratch (mean and
    standard deviation over draws). With ``paper``
    (:data:`zfcore.paper.tables4_6_transfer.PAPER_TABLES`) a second panel shows the paper's
    Tables 4-5 numbers in the same layout, labelled as such."""
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.6 * ncols, 4.2), squeeze=False)
    ax = axes[0, 0]
    markers = "osD^v"
    for i, r in enumerate(results):
        for a in ("pretrained", "fine_tuned", "scratch"):
            if not r.has(a):
                continue
            m, s = 100 * r.mean(a).numpy(), 100 * r.std(a).numpy()
            ax.errorbar(
                r.ns,
                m,
                yerr=s,
                marker=markers[i % len(markers)],
                capsize=3,
                color=_COLOURS[a],
                label=f"{APPROACHES[a]}" + (f" ({r.dataset})" if len(results) > 1 else ""),
            )
        if r.classes:
            ax.axhline(100 / len(r.classes), color="grey", ls=":", lw=1)
    ax.set_xlabel("training images per class")
    ax.set_ylabel("accuracy (%, mean of per-class accuracies)")
    ax.set_title(
        "ours: "
        + ", ".join(r.dataset for r in results)
        + f"\n({results[0].draws} draws; dotted: chance)"
        if results
        else "ours"
    )
    ax.set_ylim(0, 100)
    ax.set_xticks(sorted({n for r in results for n in r.ns}))
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    if paper:
        ax = axes[0, 1]
        for i, (name, t) in enumerate(paper.items()):
            for a in ("pretrained", "scratch"):
                m = [v for v, _ in t[a]]
                s = [sd if sd is not None else 0 for _, sd in t[a]]
                ax.errorbar(
                    t["ns"],
                    m,
                    yerr=s,
                    marker=markers[i],
                    capsize=3,
                    color=_COLOURS[a],
                    ls="-" if i == 0 else "--",
                    mfc="white",
                    label=f"paper, {t['title']}: "
                    + ("ImageNet-pretrained" if a == "pretrained" else "non-pretrained"),
                )
        ax.set_xlabel("training images per class")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("the paper's numbers (Tables 4-5)\nImageNet-pretrained ZF net on Caltech")
        ax.set_ylim(0, 100)
        ax.set_xticks(sorted({n for t in paper.values() for n in t["ns"]}))
        ax.legend(fontsize=7, loc="center right")
        ax.grid(alpha=0.3)
    fig.suptitle("Fig. 9: accuracy against training images per class", fontsize=11)
    fig.tight_layout()
    return fig


def ap_table(classes: Sequence[str], ap: Sequence[float], title: str) -> plt.Figure:
    """Table 6's layout: average precision (%) per class and their mean, as a table above bars."""
    ap = 100 * np.asarray(ap, dtype=float)
    mean = float(np.nanmean(ap))
    fig, (axt, axb) = plt.subplots(
        2,
        1,
        figsize=(max(6, 0.75 * len(classes) + 1.5), 4.6),
        gridspec_kw={"height_ratios": [1, 3]},
    )
    axt.axis("off")
    cols = list(classes) + ["mean"]
    t = axt.table(
        cellText=[[f"{v:.1f}" for v in ap] + [f"{mean:.1f}"]],
        colLabels=cols,
        rowLabels=["AP (%)"],
        loc="center",
        cellLoc="center",
    )
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.4)
    axb.bar(range(len(ap)), ap, color="#1f77b4")
    axb.axhline(mean, color="k", ls="--", lw=1, label=f"mean AP {mean:.1f}%")
    axb.set_xticks(range(len(ap)))
    axb.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    axb.set_ylabel("average precision (%)")
    axb.set_ylim(0, 100)
    axb.legend(fontsize=8, loc="lower right")
    axt.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def layer_accuracy(result: LayerProbeResult) -> plt.Figure:
    """Table 7: accuracy of a linear SVM and a softmax trained on each layer's features (mean and
    standard deviation over draws), with the table of numbers beside the curves."""
    fig, (ax, axt) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(1, len(result.layers) + 1)
    styles = {"svm": ("#9467bd", "s", "linear SVM"), "softmax": ("#1f77b4", "o", "softmax")}
    for m in result.methods:
        c, mk, name = styles[m]
        ax.errorbar(
            x,
            100 * result.mean(m).numpy(),
            yerr=100 * result.std(m).numpy(),
            color=c,
            marker=mk,
            capsize=3,
            label=name,
        )
    if result.classes:
        ax.axhline(100 / len(result.classes), color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(x)
    ax.set_xticklabels([l.replace("layer", "layer ") for l in result.layers])
    ax.set_ylabel("accuracy (%, mean of per-class accuracies)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"{result.dataset}: {result.n} training images per class, "
        f"{result.accuracy[result.methods[0]].shape[0]} draws",
        fontsize=9,
    )
    axt.axis("off")
    rows = [
        [l.replace("layer", "layer "), str(d)]
        + [f"{100 * result.mean(m)[i]:.1f} ± {100 * result.std(m)[i]:.1f}" for m in result.methods]
        for i, (l, d) in enumerate(zip(result.layers, result.dims))
    ]
    t = axt.table(
        cellText=rows,
        colLabels=["features", "dims"] + [styles[m][2] for m in result.methods],
        loc="center",
        cellLoc="center",
    )
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.3)
    fig.suptitle(
        "Table 7: discriminative information in each layer (frozen pretrained network)", fontsize=11
    )
    fig.tight_layout()
    return fig


def layer_table_text(result: LayerProbeResult) -> str:
    """Table 7 as plain text: accuracy (%) per layer and classifier."""
    head = f"{'features':10s} {'dims':>6s} " + " ".join(f"{m:>14s}" for m in result.methods)
    lines = [head]
    for i, (l, d) in enumerate(zip(result.layers, result.dims)):
        vals = " ".join(
            f"{f'{100 * result.mean(m)[i]:.1f} ± {100 * result.std(m)[i]:.1f}':>14s}"
            for m in result.methods
        )
        lines.append(f"{l:10s} {d:>6d} {vals}")
    return "\n".join(lines)
