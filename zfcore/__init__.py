"""zfcore: a reproducible companion to Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks" (ECCV 2014, arXiv:1311.2901).

Two parts. The **engine** looks inside a convolutional network: the models and their layers,
receptive fields, the deconvnet's projections (section 2.1), occlusion (section 4.2), streaming
top-k activations (Fig. 2), features, training (section 3), data and the cache. **The paper**
(:mod:`zfcore.paper`) reproduces each figure and table with the engine, one module per item,
beside the notebooks in ``notebooks/``.

The public API, imported on first use (``import zfcore`` stays light)::

    import zfcore
    model = zfcore.model_for_profile("mini")            # the network the figures look inside
    x = zfcore.load_image("cat.jpg", "mini")[None]       # a photo as model input
    maps = zfcore.attribute(model, x, target=3, method="deconvnet")  # Captum's call shape
    occ = zfcore.occlude(model, x[0], target=3)          # Fig. 7's occlusion map

Configuration
    ``Profile``, ``get_profile``, ``PROFILES``: one switch for data, model and compute
    (``tiny``, ``mini``, ``imagenette``, ``imagenet``). ``ZFCoreError``: the base of every error.
Models (torchvision-style builders; every layer addressable as ``layer1`` ... ``layer7``)
    ``ZFNet``, ``ZFConfig``, ``zfnet``, ``krizhevsky``, ``alexnet``, ``vgg16``, ``resnet18``,
    ``from_pytorchcv``; ``get_model`` (by name or file), ``model_for_profile`` (the profile's
    trained network); ``layer_names``, ``get_layer``, ``capture_layers``, ``eval_mode``,
    ``model_fingerprint``.
Data
    ``get_dataset``, ``make_loader``, ``load_image``, ``load_folder``, ``normalize``,
    ``denormalize``.
Analyses
    ``receptive_field`` (which pixels a unit sees), ``project`` and ``layer_activations`` (the
    deconvnet), ``attribute`` (one verb for the deconvnet, guided backpropagation, the gradient
    and occlusion), ``occlude`` (occlusion sensitivity), ``mine_topk`` and ``mine_dataset``
    (streaming top-k), ``top_panels`` (Fig. 2's top-9 with projections), ``extract_features``,
    ``dead_maps``, ``energy_in_boxes``.
Training
    ``make_spec``, ``training_run`` (train, or read the cached run), ``trained_model``.
Records
    ``Report`` (a notebook's figures and numbers with their provenance), ``cached_study``.
"""

from __future__ import annotations

import importlib

from .errors import ZFCoreError
from .profiles import PROFILES, Profile, get_profile

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first use).
_API = {
    "ZFNet": "models",
    "ZFConfig": "models",
    "zfnet": "models",
    "krizhevsky": "models",
    "alexnet": "models",
    "vgg16": "models",
    "resnet18": "models",
    "from_pytorchcv": "models",
    "layer_names": "models",
    "get_layer": "models",
    "capture_layers": "models",
    "eval_mode": "models",
    "model_fingerprint": "models",
    "get_model": "zoo",
    "model_for_profile": "zoo",
    "get_dataset": "data",
    "make_loader": "data",
    "load_image": "data",
    "load_folder": "data",
    "normalize": "data",
    "denormalize": "data",
    "receptive_field": "receptive",
    "project": "deconv",
    "layer_activations": "deconv",
    "attribute": "attribution",
    "occlude": "occlusion",
    "mine_topk": "mining",
    "mine_dataset": "mining",
    "top_panels": "mining",
    "extract_features": "features",
    "dead_maps": "health",
    "energy_in_boxes": "boxes",
    "make_spec": "train",
    "training_run": "train",
    "trained_model": "train",
    "Report": "report",
    "cached_study": "study",
}

__all__ = ["Profile", "get_profile", "PROFILES", "ZFCoreError", "__version__", *_API]


def __getattr__(name: str):
    """The public names of the engine, each imported from its module on first use."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'zfcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
