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
  of section 3.1 (:func:`epoch_order`, :class:`RenderedScenes`, :func:`rendered_split`,
  :func:`~zfcore.train.batches.train_batches`);
* :mod:`~zfcore.train.metrics`: :class:`EpochMetrics` and :func:`evaluate` (top-1/top-5 error);
* :mod:`~zfcore.train.network`: :func:`build_model`, per-layer parameter groups, the optimiser
  (:func:`~zfcore.train.network.make_optimizer`), the learning-rate schedule, freezing;
* :mod:`~zfcore.train.checkpoints`: :class:`CheckpointStore` (Fig. 4's checkpoints, resume
  files) and :class:`TrainRun`;
* :mod:`~zfcore.train.loop`: :func:`train` (resumable bit for bit, DDP through torchrun) and
  :func:`compare_throughput`;
* :mod:`~zfcore.train.shipped`: trained networks shipped with the package
  (``zfcore/weights/<name>.safetensors``), exported from a cached run and loaded by configuration;
* :mod:`~zfcore.train.runs`: the cached entry points every notebook uses (:func:`training_run`,
  :func:`trained_model`, :func:`cached_model`, :func:`cached_run`, :func:`weights_source`),
  trained once per configuration and found again in ``<cache_dir>/train/<hash>/``. The final
  network of a run comes from this machine's cache, else from a shipped file of the same
  configuration, else it is trained (``ZFCORE_RETRAIN=1`` skips the shipped files);
* :mod:`~zfcore.train.cli`: ``python -m zfcore.train`` and ``torchrun ... -m zfcore.train``.

This package re-exports the public names of its modules; helpers of one job (the trainer's
batch stream, its optimiser and schedule) are imported from their module.
"""

from . import shipped
from .batches import MEMO_BYTES, RenderedScenes, epoch_order, rendered_split
from .checkpoints import CheckpointStore, TrainRun
from .cli import main
from .loop import compare_throughput, train, training_autocast
from .metrics import EpochMetrics, evaluate
from .network import build_model, layer_parameters, parameter_groups
from .runs import cached_model, cached_run, trained_model, training_run, weights_source
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
    "ARCHS",
    "LAYER_KEYS",
    "MEMO_BYTES",
    "TrainOptions",
    "TrainSpec",
    "make_spec",
    "split_overrides",
    "comparison_overrides",
    "TrainRun",
    "TrainError",
    "EpochMetrics",
    "train",
    "training_run",
    "trained_model",
    "cached_run",
    "cached_model",
    "weights_source",
    "compare_throughput",
    "training_autocast",
    "build_model",
    "evaluate",
    "layer_parameters",
    "parameter_groups",
    "RenderedScenes",
    "rendered_split",
    "epoch_order",
    "CheckpointStore",
    "main",
    "shipped",
]
