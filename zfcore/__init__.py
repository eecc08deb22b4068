"""zfcore: a reproducible companion to Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks" (ECCV 2014, arXiv:1311.2901).

The package does the work; the notebooks in ``notebooks/`` read beside the paper. Submodules, from
the ground floor up (arrows only point down; see CONTRIBUTING.md):

* ground floor: ``errors`` (``ZFCoreError``, the base of every error the package raises),
  ``profiles`` (one configuration per profile), ``cache`` (hashes, atomic writes,
  safe loading), ``report`` (a notebook's figures and numbers on disk)
* models and data: ``models`` (ZFNet, Krizhevsky's layout, Table 3 variants, torchvision's
  AlexNet/VGG16), ``summary`` (Fig. 3's layer table), ``data`` (procedural scenes, real data sets,
  the user's photos)
* analyses: ``study`` (the cached-study recipe and the ``Result`` base), ``receptive``
  (receptive fields), ``deconv`` (section 2.1, Fig. 1), ``mining`` (top-9, Fig. 2), ``sanity``
  (model randomisation), ``train/`` (section 3: ``spec``, ``batches``, ``network``, ``metrics``,
  ``checkpoints``, ``loop``, ``cli``; Fig. 4 checkpoints, DDP), ``evolution`` (Fig. 4
  convergence), ``firstlayer`` (section 4.1, Fig. 6), ``incremental`` and ``occlusion`` (Fig. 7),
  ``focus`` (projections on the object), ``invariance`` (Fig. 5), ``correspondence`` (Fig. 8,
  Table 1), ``ablations`` (section 5.1, Tables 2-3 with verdicts), ``features``, ``probes`` and
  ``transfer/`` (section 5, Tables 4-7: ``config``, ``data``, ``training``, ``results``,
  ``studies``, ``paper``)
* ``attribution``: one verb, ``zfcore.attribute(model, images, target, method=...)``, for the
  deconvnet, guided backpropagation, the gradient and occlusion
* on top: ``plotting`` (figures from results), ``widgets/`` (the explorer: ``session``, ``view``,
  ``tour``), ``runner`` (executes the notebooks), ``site`` (the static HTML site)
"""

from .errors import ZFCoreError
from .profiles import PROFILES, Profile, get_profile

__version__ = "0.1.0"
__all__ = ["Profile", "get_profile", "PROFILES", "ZFCoreError", "attribute", "__version__"]


def __getattr__(name: str):
    """``zfcore.attribute`` (:mod:`zfcore.attribution`), imported on first use: ``import zfcore``
    stays light."""
    if name == "attribute":
        from .attribution import attribute

        return attribute
    raise AttributeError(f"module 'zfcore' has no attribute {name!r}")
