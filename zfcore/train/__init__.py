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
* here: the cached entry points every notebook uses (:func:`training_run`,
  :func:`trained_model`, :func:`cached_model`), trained once per configuration and found again
  in ``<cache_dir>/train/<hash>/``.
"""
from __future__ import annotations

import json

from torch import nn

from .. import cache as zcache
from ..profiles import Profile
# Re-exported: every name callers used when this was one module (the private ones by tests).
from .batches import MEMO_BYTES, RenderedScenes, _train_batches, epoch_order, rendered_split
from .checkpoints import CheckpointStore, TrainRun
from .cli import main
from .loop import compare_throughput, train, training_autocast
from .metrics import EpochMetrics, evaluate
from .network import _optimizer, _set_lr, build_model, layer_parameters, parameter_groups
from .spec import (ARCHS, EARLY_CHECKPOINTS, LAYER_KEYS, TRAINER_VERSION, TrainError, TrainOptions,
                   TrainSpec, comparison_overrides, make_spec, split_overrides)

__all__ = [
    "TRAINER_VERSION", "EARLY_CHECKPOINTS", "TrainOptions", "TrainSpec", "make_spec", "TrainRun", "TrainError",
    "EpochMetrics", "train", "training_run", "trained_model", "comparison_overrides", "compare_throughput", "build_model", "evaluate",
    "layer_parameters", "parameter_groups", "RenderedScenes", "rendered_split", "epoch_order", "CheckpointStore", "split_overrides",
    "main", "training_autocast",
]


def training_run(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
                 progress: bool = True, **overrides) -> TrainRun:
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
    return TrainRun(spec, store.dir, [EpochMetrics(**h) for h in history[:e]],
                    [x for x in store.weight_epochs() if x <= e])   # a prefix run sees its own checkpoints


def cached_model(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
                 **overrides) -> "nn.Module | None":
    """The network :func:`trained_model` would return if its run is already in the cache (eval
    mode, CPU), else ``None``: never trains. For benchmarks that time a trained model when there
    is one and say which weights they timed."""
    spec = make_spec(profile, arch, variant, **overrides)
    store = CheckpointStore(spec.entry())
    run = _cached_run(spec, store) if store.dir.is_dir() else None
    return run.model() if run is not None else None


def trained_model(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
                  progress: bool = True, **overrides) -> nn.Module:
    """The profile's trained network in eval mode on the CPU, trained on first use and cached.

    ``arch`` is ``"zfnet"`` (Fig. 3) or ``"krizhevsky"`` (11x11/4 first layer, Fig. 6);
    ``variant`` a key of :data:`zfcore.models.TABLE3_VARIANTS`; overrides as in
    :func:`training_run`. Concurrent callers wait for one training (a lock on the cache entry).
    """
    run = training_run(profile, arch, variant, progress=progress, **overrides)
    return run.model()
