"""The paper's figures and tables, one module per item, above the engine.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(arXiv:1311.2901). Each module of this package holds one paper item's studies, controls,
verdicts, the keys of the numbers its notebook records, and its README headline; each notebook
in ``notebooks/`` imports its paper-side names from its one module. The engine below
(:mod:`zfcore.models`, :mod:`zfcore.deconv`, :mod:`zfcore.occlusion`, ...) knows no notebook,
no record key and no verdict.

:data:`ITEMS` is the one map from notebooks to the paper; the site, the README's results and
CONTRIBUTING's table are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ZFCoreError

__all__ = ["PaperItem", "ITEMS", "item_for", "items_table", "PaperError"]


class PaperError(ZFCoreError, KeyError):
    """A notebook that is not in the paper's map."""


@dataclass(frozen=True)
class PaperItem:
    """One notebook and the part of the paper it reproduces.

    ``notebook`` is the file's stem (``07_occlusion``), ``section`` the paper's section number
    (``"4.2"``, empty for a notebook that reproduces no single section), ``item`` the figures or
    tables (``"Fig. 7"``), ``module`` the module of :mod:`zfcore.paper` it imports from, and
    ``computes`` one line on what it measures."""

    notebook: str
    section: str
    item: str
    module: str
    computes: str

    @property
    def number(self) -> str:
        """The notebook's two-digit number (``"07"``)."""
        return self.notebook.split("_")[0]


ITEMS: tuple[PaperItem, ...] = (
    PaperItem(
        "00_quickstart",
        "2",
        "a tour",
        "quickstart",
        "a five-minute tour: data, the trained model, one projection",
    ),
    PaperItem(
        "01_architecture",
        "3",
        "Fig. 3",
        "fig3_architecture",
        "layer tables and diagram; 224 > 110 > 55 > 26 > 13 > 13 > 13 > 6 checked",
    ),
    PaperItem(
        "02_deconvnet",
        "2.1",
        "Fig. 1",
        "fig1_deconvnet",
        "unpooling with switches, rectification, transposed filtering, step by step",
    ),
    PaperItem(
        "03_feature_visualization",
        "4",
        "Fig. 2",
        "fig2_top9",
        "top-9 activations per feature map, layers 1-5, projected beside their patches",
    ),
    PaperItem(
        "04_training_evolution",
        "4",
        "Fig. 4",
        "fig4_evolution",
        "strongest activations across training checkpoints; per-layer convergence; "
        "training recipes; per-layer learning rates",
    ),
    PaperItem(
        "05_invariance",
        "4",
        "Fig. 5",
        "fig5_invariance",
        "translation, scale, rotation: layer-1 and layer-7 distances, p(true class)",
    ),
    PaperItem(
        "06_architecture_selection",
        "4.1",
        "Fig. 6",
        "fig6_first_layer",
        "11x11/4 against 7x7/2 first layers; clipping on and off; dead filters, aliasing",
    ),
    PaperItem(
        "07_occlusion",
        "4.2",
        "Fig. 7",
        "fig7_occlusion",
        "grey-square occlusion: layer-5 activity, p(correct class), most probable label; "
        "the pointing game",
    ),
    PaperItem(
        "08_correspondence",
        "4.3",
        "Fig. 8, Table 1",
        "fig8_table1_correspondence",
        "the same part occluded across images; Hamming consistency at layers 5 and 7",
    ),
    PaperItem(
        "09_ablations",
        "5.1",
        "Tables 2-3",
        "tables2_3_ablations",
        "removed and resized layers, trained on the complete schedule over seeds; "
        "train/val top-1 and top-5 error",
    ),
    PaperItem(
        "10_transfer",
        "5.2",
        "Tables 4-6, Fig. 9",
        "tables4_6_transfer",
        "frozen layers 1-7 + new softmax against training from scratch",
    ),
    PaperItem(
        "11_feature_analysis",
        "5.3",
        "Table 7",
        "table7_features",
        "a linear SVM and a softmax on each layer's features",
    ),
    PaperItem(
        "12_explorer",
        "4",
        "Figs. 1, 2 and 7, interactively",
        "explorer",
        "the ipywidgets explorer (layer, map, image, projection, top-9, occlusion)",
    ),
    PaperItem(
        "13_sanity_checks",
        "2.1",
        "the deconvnet, sanity-checked (Adebayo et al., 2018)",
        "sanity_checks",
        "the deconvnet under model-parameter randomisation",
    ),
)


def item_for(notebook: str) -> PaperItem:
    """The :class:`PaperItem` of a notebook, by stem (``07_occlusion``), file name or number."""
    key = Path(str(notebook)).stem
    for it in ITEMS:
        if key in (it.notebook, it.number):
            return it
    number = key.split("_")[0]
    for it in ITEMS:
        if it.number == number:
            return it
    known = [i.notebook for i in ITEMS]
    raise PaperError(f"no paper item for notebook {notebook!r}; known: {known}")


def items_table() -> str:
    """The map as a markdown table (notebook, paper section and item, module, what it computes):
    the table README.md and CONTRIBUTING.md show, regenerated by ``python -m zfcore.paper.readme
    readme`` and checked by ``... check``."""
    rows = ["| notebook | paper | module | what it computes |", "| --- | --- | --- | --- |"]
    for it in ITEMS:
        where = f"section {it.section}, {it.item}" if it.section else it.item
        rows.append(f"| `{it.notebook}` | {where} | `paper/{it.module}` | {it.computes} |")
    return "\n".join(rows)
