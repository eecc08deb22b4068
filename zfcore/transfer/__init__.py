"""The engine of section 5's transfer (Tables 4-7, Fig. 9): splits, pools, the transferred and
the from-scratch networks and their training.

Zeiler & Fergus (2014), section 5: keep layers 1-7 of the ImageNet-trained network fixed and train
a new softmax on top, with n training images per class (Caltech-101: 15 or 30, Caltech-256: 15,
30, 45, 60; five random draws of the training images); compare with the same architecture trained
from scratch on those images only. The studies that do so, their results and verdicts live in
:mod:`zfcore.paper.tables4_6_transfer` (Tables 4-6, Fig. 9) and
:mod:`zfcore.paper.table7_features` (Table 7); this package is what they run on.

One job per module, each usable alone (everything is re-exported here):

* :mod:`.config`: :class:`TransferConfig`, the defaults per profile and section 5's protocols
  for the real data sets (:func:`transfer_config`); :class:`TransferError`.
* :mod:`.data`: :func:`make_splits` (reproducible draws of ``n`` training images per class,
  nested over ``n``, and a disjoint test set per draw); :func:`remap_labels`; the pools
  (:class:`TransferData`, :class:`PooledSplits`): the held-out scene classes (``tiny``,
  ``mini``) or Caltech-101, Caltech-256 and PASCAL VOC 2012 on disk (:func:`transfer_data`,
  :func:`real_transfer_data`) and their cached features (:func:`transfer_features`);
  :func:`transfer_studies` / :func:`multilabel_study` pick a profile's targets;
  :func:`pretrained_model` the network whose layers are transferred.
* :mod:`.training`: :class:`TransferNet` (the frozen or fine-tuned layers 1-7 of a trained
  network and a new linear layer; :meth:`TransferNet.from_probe` turns a probe trained on
  precomputed features, :func:`zfcore.probes.fit_probe`, into that network);
  :func:`fit_images` (fine-tuning) and :func:`trainer` (its Adam step); :func:`scratch_like`
  and :func:`fit_to_plateau` (the from-scratch baseline trained to a plateau);
  :func:`train_head` (a new softmax on fixed features, trained like the scratch network and
  scored after every step); :func:`predict_scores`; :func:`preloaded` (a draw's images held in
  memory).

The probes themselves and their scores (:func:`~zfcore.probes.fit_probe`,
:func:`~zfcore.probes.mean_class_accuracy`, :func:`~zfcore.probes.per_class_ap`) are
:mod:`zfcore.probes`.
"""

from __future__ import annotations

from .config import DATASET_DEFAULTS, TransferConfig, TransferError, transfer_config
from .data import (
    REAL_DATASETS,
    PooledSplits,
    PoolIndexError,
    Split,
    TransferData,
    make_splits,
    multilabel_study,
    pretrained_model,
    real_transfer_data,
    remap_labels,
    transfer_data,
    transfer_features,
    transfer_studies,
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
    preloaded,
    random_shift,
    scratch_like,
    train_head,
    trainer,
)

__all__ = [
    "TransferError",
    "TransferConfig",
    "transfer_config",
    "DATASET_DEFAULTS",
    "Split",
    "make_splits",
    "remap_labels",
    "TransferData",
    "PooledSplits",
    "PoolIndexError",
    "transfer_data",
    "transfer_features",
    "transfer_studies",
    "real_transfer_data",
    "multilabel_study",
    "REAL_DATASETS",
    "pretrained_model",
    "TransferNet",
    "scratch_like",
    "fit_images",
    "trainer",
    "batch_schedule",
    "predict_scores",
    "PRELOAD_BYTES",
    "preloaded",
    "random_shift",
    "PlateauFit",
    "plateau_reached",
    "fit_to_plateau",
    "checks_made",
    "HeadRun",
    "train_head",
]
