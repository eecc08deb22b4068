"""The cached entry points every notebook uses: a configuration's run and network, trained once.

A configuration (:func:`zfcore.train.spec.make_spec`) is trained once per machine and found again
in ``<cache_dir>/train/<hash>/`` (:class:`~zfcore.train.checkpoints.CheckpointStore`). The final
network of a run comes from this machine's cache, else from a shipped file of the same
configuration (:mod:`zfcore.train.shipped`), else it is trained (``ZFCORE_RETRAIN=1`` skips the
shipped files). Concurrent callers wait for one training (a lock on the cache entry).
"""

from __future__ import annotations

import json

from torch import nn

from .. import cache as zcache
from ..profiles import Profile
from . import shipped
from .checkpoints import CheckpointStore, TrainRun
from .loop import train
from .metrics import EpochMetrics
from .spec import TrainSpec, make_spec

__all__ = ["training_run", "cached_run", "weights_source", "cached_model", "trained_model"]


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
    """``spec``'s finished run from ``store`` (a longer run's prefix included), or ``None``."""
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
