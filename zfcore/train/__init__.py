"""Training as the paper trained (section 3), scaled to a profile; checkpoints for Fig. 4.

The recipe of section 3 (SGD, momentum 0.9, weight decay, batch 128, learning rate 1e-2 annealed
on plateaus, dropout 0.5, initialisation 1e-2, feature-scale clipping at RMS 0.1, the crops and
flips of section 3.1) is a profile setting; the small profiles differ where CONTRIBUTING.md,
"Profiles", says, and the paper's recipe stays one override away::

    model = trained_model("mini")                                  # cached after the first call
    paper = trained_model("mini", optimizer="sgd", lr=1e-2, init="paper")
    slow1 = trained_model("mini", layer_lr={"layer1": 0.1})        # per-layer LR multipliers

One job per module, each importing only those above it:

* :mod:`~zfcore.train.spec`: :class:`TrainSpec` and :class:`TrainOptions` (what the weights
  depend on, the cache key), :func:`make_spec`, :func:`comparison_overrides`, :class:`TrainError`;
* :mod:`~zfcore.train.batches`: deterministic, shard-invariant batches with the crops and flips
  of section 3.1 (:func:`epoch_order`, :class:`RenderedScenes`, :func:`rendered_split`);
* :mod:`~zfcore.train.metrics`: :class:`EpochMetrics` and :func:`evaluate` (top-1/top-5 error);
* :mod:`~zfcore.train.network`: :func:`build_model`, per-layer parameter groups, the optimiser,
  the learning-rate schedule, freezing;
* :mod:`~zfcore.train.checkpoints`: :class:`CheckpointStore` (Fig. 4's checkpoints, resume
  files) and :class:`TrainRun`;
* :mod:`~zfcore.train.loop`: :func:`train` (resumable bit for bit, DDP through torchrun) and
  :func:`compare_throughput`;
* :mod:`~zfcore.train.cli`: ``python -m zfcore.train`` and ``torchrun ... -m zfcore.train``;
* :mod:`~zfcore.train.shipped`: trained networks shipped with the package
  (``zfcore/weights/<name>.safetensors``), exported from a cached run and loaded by configuration;
* here: the cached entry points every notebook uses (:func:`training_run`,
  :func:`trained_model`, :func:`cached_model`, :func:`weights_source`), trained once per
  configuration and found again in ``<cache_dir>/train/<hash>/``. The final network of a run
  comes from this machine's cache, else from a shipped file of the same configuration, else it
  is trained (``ZFCORE_RETRAIN=1`` skips the shipped files).
"""

from __future__ import annotations

import json

from torch import nn

from .. import cache as zcache
from ..profiles import Profile
from . import shipped

# Re-exported: every name callers used when this was one module (the private ones by tests).
from .batches import MEMO_BYTES, RenderedScenes, _train_batches, epoch_order, rendered_split
from .checkpoints import CheckpointStore, TrainRun
from .cli import main
from .loop import compare_throughput, train, training_autocast
from .metrics import EpochMetrics, evaluate
from .network import _optimizer, _set_lr, build_model, layer_parameters, parameter_groups
from .spec import (
    ARCHS,
    EARLY_CHECKPOINTS,
    LAYER_KEYS,
    TRAINER_VERSION,
    TrainError,
    TrainOptions,
    TrainSpec,
    comparison_overrides,
    make_spec,
    split_overrides,
)

__all__ = [
    "TRAINER_VERSION",
    "EARLY_CHECKPOINTS",
    "TrainOptions",
    "TrainSpec",
    "make_spec",
    "TrainRun",
    "TrainError",
    "EpochMetrics",
    "train",
    "training_run",
    "trained_model",
    "comparison_overrides",
    "compare_throughput",
    "build_model",
    "evaluate",
    "layer_parameters",
    "parameter_groups",
    "RenderedScenes",
    "rendered_split",
    "epoch_order",
    "CheckpointStore",
    "split_overrides",
    "main",
    "training_autocast",
    "cached_run",
    "weights_source",
    "shipped",
]


def training_run(
    profile: "str | Profile" = "mini",
    arch: str = "zfnet",
    variant: str = "zf",
    progress: bool = True,
    **overrides,
) -> TrainRun:
    """Train (or load from the cache) and return the :class:`TrainRun` with its history and
    checkpoints. Overrides are profile fields (``epochs=2``, ``optimizer="sgd"``,
    ``clip_rms=None``, ...) or :class:`TrainOptions` fields (``layer_lr={"layer1": 0.1}``)."""
    spec = make_spec(profile, arch, variant, **overrides)
    store = CheckpointStore(spec.entry())
    with zcache.entry_lock(store.dir):
        cached = _cached_run(spec, store)
        if cached is not None:
            return cached
        return train(spec, progress=progress)


def _cached_run(spec: TrainSpec, store: CheckpointStore) -> TrainRun | None:
    hist_file = store.dir / "history.json"
    e = spec.profile.epochs
    if not hist_file.is_file() or float(e) not in store.weight_epochs():
        return None
    history = json.loads(hist_file.read_text())
    if len(history) < e:
        return None
    try:
        store.load_weights(e)
    except zcache.CacheError:
        return None
    return TrainRun(
        spec,
        store.dir,
        [EpochMetrics(**h) for h in history[:e]],
        [x for x in store.weight_epochs() if x <= e],
    )  # a prefix run sees its own checkpoints


def cached_run(spec: TrainSpec) -> TrainRun | None:
    """``spec``'s finished run if this machine's cache holds it, else ``None``: never trains."""
    store = CheckpointStore(spec.entry())
    return _cached_run(spec, store) if store.dir.is_dir() else None


def _final_network(spec: TrainSpec) -> "nn.Module | None":
    """The final network of ``spec``'s run without training: this machine's cache, else a
    shipped file of the same configuration (unless ``ZFCORE_RETRAIN=1``), else ``None``."""
    run = cached_run(spec)
    if run is not None:
        model = run.model()
        model.weights_source = f"trained here ({run.directory})"
        return model
    found = None if shipped.retrain_requested() else shipped.find(spec)
    return shipped.load(found, spec) if found is not None else None


def weights_source(
    profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf", **overrides
) -> tuple[str, str]:
    """Where :func:`trained_model` takes this network from, without loading it: ``("cache",
    what)``, ``("shipped", what)`` or ``("train", why)``, ``what``/``why`` a phrase for people."""
    spec = make_spec(profile, arch, variant, **overrides)
    run = cached_run(spec)
    if run is not None:
        return "cache", f"trained here, cached in {run.directory}"
    name = f"{shipped.weights_name(spec)}.safetensors"
    if shipped.retrain_requested():
        return "train", f"{shipped.RETRAIN_ENV}=1: trained here, the shipped weights are not used"
    found = shipped.find(spec)
    if found is not None:
        return "shipped", f"shipped weights {found.describe()}"
    path = shipped.WEIGHTS_DIR / name
    if path.is_file():
        diff = shipped.differences(shipped.read(path), spec)
        return (
            "train",
            f"trained on first use ({name} is for another configuration: {', '.join(diff)})",
        )
    return "train", f"trained on first use (no shipped weights {name})"


def cached_model(
    profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf", **overrides
) -> "nn.Module | None":
    """The network :func:`trained_model` would return if it needs no training (this machine's
    cache or a shipped file; eval mode, CPU), else ``None``. For benchmarks that time a trained
    model when there is one and say which weights they timed (``model.weights_source``)."""
    return _final_network(make_spec(profile, arch, variant, **overrides))


def trained_model(
    profile: "str | Profile" = "mini",
    arch: str = "zfnet",
    variant: str = "zf",
    progress: bool = True,
    **overrides,
) -> nn.Module:
    """The profile's trained network in eval mode on the CPU: from this machine's cache, else
    from a shipped file of the same training configuration (:mod:`zfcore.train.shipped`, its
    fingerprint checked; not with ``ZFCORE_RETRAIN=1``), else trained on first use and cached.
    ``model.weights_source`` says which.

    ``arch`` is ``"zfnet"`` (Fig. 3) or ``"krizhevsky"`` (11x11/4 first layer, Fig. 6);
    ``variant`` a key of :data:`zfcore.models.TABLE3_VARIANTS`; overrides as in
    :func:`training_run`. Concurrent callers wait for one training (a lock on the cache entry).
    """
    model = _final_network(make_spec(profile, arch, variant, **overrides))
    if model is not None:
        return model
    run = training_run(profile, arch, variant, progress=progress, **overrides)
    model = run.model()
    model.weights_source = f"trained here ({run.directory})"
    return model
