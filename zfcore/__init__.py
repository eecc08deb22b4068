"""zfcore: a reproducible companion to Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks" (ECCV 2014, arXiv:1311.2901).

The package does the work; the notebooks in ``notebooks/`` read beside the paper. Submodules, from
the ground floor up (arrows only point down):

* ``profiles`` (one configuration per profile), ``cache`` (hashes, atomic writes, safe loading),
  ``report`` (a notebook's figures and numbers on disk)
* ``models`` (ZFNet, Krizhevsky's layout, Table 3 variants, torchvision's AlexNet/VGG16),
  ``data`` (procedural scenes, real data sets, user images)
* analyses: ``receptive``, ``deconv``, ``mining``, ``occlusion``, ``invariance``,
  ``correspondence``, ``train``, ``transfer``
* on top: ``plotting``, ``widgets``, ``runner`` (executes the notebooks)
"""
from .profiles import Profile, get_profile, PROFILES

__version__ = "0.1.0"
__all__ = ["Profile", "get_profile", "PROFILES", "__version__"]
