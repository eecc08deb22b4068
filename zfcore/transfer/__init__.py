"""Transfer to new data sets and the per-layer probes of section 5 (Tables 4-7, Fig. 9).

Zeiler & Fergus (2014), section 5: keep layers 1-7 of the ImageNet-trained network fixed and train
a new softmax on top, with n training images per class (Caltech-101: 15 or 30, Caltech-256: 15,
30, 45, 60; five random draws of the training images, mean and standard deviation; the average of
per-class accuracies); compare with the same architecture trained from scratch on those images
only (Tables 4-5, Fig. 9); PASCAL VOC 2012 is scored by per-class average precision (Table 6);
Table 7 trains a linear SVM or a softmax on the features of each of layers 1-7.

One job per module, each usable alone (everything is re-exported here, so
``from zfcore.transfer import run_transfer`` and ``transfer.run_transfer`` keep working):

* :mod:`.config`: :class:`TransferConfig`, the defaults per profile and section 5's protocols
  for the real data sets (:func:`transfer_config`); :class:`TransferError`.
* :mod:`.data`: :func:`make_splits` (reproducible draws of ``n`` training images per class,
  nested over ``n``, and a disjoint test set per draw); the pools (:class:`TransferData`,
  :class:`PooledSplits`): the held-out scene classes (``tiny``, ``mini``) or Caltech-101,
  Caltech-256 and PASCAL VOC 2012 on disk (:func:`transfer_data`, :func:`real_transfer_data`);
  :func:`transfer_studies` / :func:`multilabel_study` pick a profile's targets;
  :func:`pretrained_model` the network whose layers are transferred.
* :mod:`.training`: :class:`TransferNet` (the frozen or fine-tuned layers 1-7 of a trained
  network and a new linear layer; :meth:`TransferNet.from_probe` turns a probe trained on
  precomputed features, :func:`fit_probe` from :mod:`zfcore.probes`, into that network);
  :func:`fit_images` (fine-tuning); :func:`scratch_like` and :func:`fit_to_plateau` (the
  from-scratch baseline trained to a plateau); :func:`train_head` (a new softmax on fixed
  features, trained like the scratch network and scored after every step); :func:`predict_scores`.
* :mod:`.results`: the plain dataclasses the studies return (:class:`TransferResult`,
  :class:`LayerProbeResult`, :class:`MultiLabelResult`, :class:`TrainingSpeedResult`) and their
  verdicts (:func:`draws_bootstrap`).
* :mod:`.studies`: :func:`run_transfer` (Tables 4-5, Fig. 9), :func:`training_speed` (section 5's
  "faster training"), :func:`probe_layers` (Table 7) and
  :func:`run_multilabel` (Table 6), cached by a hash of the model's weights, the data and the
  configuration (:data:`TRANSFER_VERSION`).
* :mod:`.paper`: the paper's published numbers (:data:`PAPER_TABLES`) and :func:`summary_rows`.

:func:`average_precision` / :func:`per_class_ap` (from :mod:`zfcore.probes`): scikit-learn's
definition, or the VOC devkit's (precision made monotone) with ``mode="voc"``.
"""

from __future__ import annotations

# Also used by name outside the package: DATASET_DEFAULTS, PRELOAD_BYTES and the tests' _features.
from ..probes import (
    PROBE_METHODS,
    LinearProbe,
    TransferError,
    average_precision,
    fit_probe,
    mean_class_accuracy,
    per_class_ap,
)
from .config import DATASET_DEFAULTS, TransferConfig, transfer_config
from .data import (
    REAL_DATASETS,
    PooledSplits,
    Split,
    TransferData,
    make_splits,
    multilabel_study,
    pretrained_model,
    real_transfer_data,
    transfer_data,
    transfer_studies,
)
from .paper import APPROACHES, PAPER_TABLES, summary_rows
from .results import (
    SPEED_MEASURES,
    LayerProbeResult,
    MultiLabelResult,
    TrainingSpeedResult,
    TransferResult,
    draws_bootstrap,
    reaches,
    steps_to_reach,
)
from .studies import (
    SPEED_VERSION,
    TRANSFER_VERSION,
    _features,
    probe_layers,
    run_multilabel,
    run_transfer,
    training_speed,
)
from .training import (
    PRELOAD_BYTES,
    HeadRun,
    PlateauFit,
    TransferNet,
    batch_schedule,
    checks_made,
    fit_images,
    fit_to_plateau,
    plateau_reached,
    predict_scores,
    random_shift,
    scratch_like,
    train_head,
)

__all__ = [
    "TransferError",
    "TransferConfig",
    "transfer_config",
    "Split",
    "make_splits",
    "LinearProbe",
    "fit_probe",
    "PROBE_METHODS",
    "mean_class_accuracy",
    "average_precision",
    "per_class_ap",
    "TransferNet",
    "scratch_like",
    "fit_images",
    "batch_schedule",
    "predict_scores",
    "TransferData",
    "PooledSplits",
    "transfer_data",
    "transfer_studies",
    "real_transfer_data",
    "multilabel_study",
    "REAL_DATASETS",
    "pretrained_model",
    "TransferResult",
    "run_transfer",
    "LayerProbeResult",
    "probe_layers",
    "MultiLabelResult",
    "run_multilabel",
    "TRANSFER_VERSION",
    "PAPER_TABLES",
    "APPROACHES",
    "summary_rows",
    "random_shift",
    "PlateauFit",
    "plateau_reached",
    "fit_to_plateau",
    "draws_bootstrap",
    "checks_made",
    "HeadRun",
    "reaches",
    "train_head",
    "steps_to_reach",
    "SPEED_MEASURES",
    "TrainingSpeedResult",
    "training_speed",
    "SPEED_VERSION",
]
