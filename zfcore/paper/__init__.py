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

__all__ = ["PaperItem", "ITEMS", "item_for", "PaperError"]


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
        "the trained network, one projection, the numbers every later notebook builds on",
    ),
    PaperItem(
        "01_architecture",
        "3",
        "Fig. 3",
        "fig3_architecture",
        "the layer table of Fig. 3 measured by hooks; parameters",
    ),
    PaperItem(
        "02_deconvnet",
        "2.1",
        "Fig. 1",
        "fig1_deconvnet",
        "the deconvnet step by step: switches, rectification, transposed filtering",
    ),
    PaperItem(
        "03_feature_visualization",
        "4",
        "Fig. 2",
        "fig2_top9",
        "top-9 activations and their projections per layer; class specificity; energy on "
        "the object; dead maps",
    ),
    PaperItem(
        "04_training_evolution",
        "4",
        "Fig. 4",
        "fig4_evolution",
        "features across training checkpoints; per-layer convergence; training recipes; "
        "per-layer rates",
    ),
    PaperItem(
        "05_invariance",
        "4",
        "Fig. 5",
        "fig5_invariance",
        "feature distance and p(true class) under translation, scale and rotation",
    ),
    PaperItem(
        "06_architecture_selection",
        "4.1",
        "Fig. 6",
        "fig6_first_layer",
        "first-layer filters of the 7x7/2 and 11x11/4 layouts: aliasing, dead filters, clipping",
    ),
    PaperItem(
        "07_occlusion",
        "4.2",
        "Fig. 7",
        "fig7_occlusion",
        "occlusion sensitivity maps, the strongest map's drop, the pointing game",
    ),
    PaperItem(
        "08_correspondence",
        "4.3",
        "Fig. 8, Table 1",
        "fig8_table1_correspondence",
        "part correspondence by occluding eyes and nose: Hamming consistency against random",
    ),
    PaperItem(
        "09_ablations",
        "5.1",
        "Tables 2-3",
        "tables2_3_ablations",
        "layouts and layer sizes trained on the same schedule, seeds, verdicts",
    ),
    PaperItem(
        "10_transfer",
        "5.2",
        "Tables 4-6, Fig. 9",
        "tables4_6_transfer",
        "fixed features plus a new softmax against training from scratch, by images per class",
    ),
    PaperItem(
        "11_feature_analysis",
        "5.3",
        "Table 7",
        "table7_features",
        "linear classifiers on each layer's features",
    ),
    PaperItem(
        "12_explorer",
        "4",
        "Figs. 1, 2 and 7, interactively",
        "explorer",
        "the explorer: layer, map, rule and image, redrawn live; object focus",
    ),
    PaperItem(
        "13_sanity_checks",
        "2.1",
        "the deconvnet, sanity-checked (Adebayo et al., 2018)",
        "sanity_checks",
        "projections under cascading model randomisation",
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
