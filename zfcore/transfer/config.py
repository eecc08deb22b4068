"""The settings of a transfer study (section 5): :class:`TransferConfig`, its defaults per
profile and section 5's protocols for the real data sets (:func:`transfer_config`).

Zeiler & Fergus (2014), section 5: ``n`` training images per class (Caltech-101: 15 or 30;
Caltech-256: 15, 30, 45, 60), five random draws of those images, up to 50 test images per class
(Caltech-101), a new softmax on the frozen layers 1-7, compared with the same architecture trained
from scratch (Tables 4-5, Fig. 9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import ZFCoreError
from ..features import LAYERS
from ..profiles import Profile, get_profile

__all__ = ["TransferError", "TransferConfig", "DATASET_DEFAULTS", "transfer_config"]


class TransferError(ZFCoreError, ValueError):
    """Bad input to a transfer setting, split, pool or network: too few images per class, an
    unknown data set or setting, a model without the layers to transfer."""


@dataclass(frozen=True)
class TransferConfig:
    """Settings of one transfer study (section 5). Defaults per profile: :func:`transfer_config`.

    ``ns`` are the training images per class (Fig. 9's x axis); ``draws`` the random draws of
    those images (the paper: 5); ``test_per_class`` caps the test images per class (the paper's
    Caltech-101 protocol: up to 50). The softmax is an L2-regularised logistic regression
    (``reg`` times half the squared weights added to the mean loss).

    The from-scratch baseline is trained to convergence (:func:`fit_to_plateau`): Adam
    (``scratch_lr``) with random flips and shifts of up to ``scratch_shift`` pixels, at least
    ``scratch_min_steps`` and at most ``scratch_max_steps`` minibatches whatever ``n`` is, its
    training accuracy (eval mode, no augmentation) checked every ``scratch_check_every`` steps;
    it stops once that accuracy reaches ``scratch_fit_accuracy`` or has not risen by more than
    ``scratch_min_gain`` over ``scratch_patience`` checks. Fine-tuning runs ``fine_tune_epochs``
    passes over the ``n`` images per class (at least ``min_steps`` minibatches). Both run on the
    first ``network_draws`` draws (``None``: all of them, as the pretrained softmax).
    """

    ns: tuple[int, ...] = (5, 10, 15, 30)
    draws: int = 5
    test_per_class: int | None = 50
    seed: int = 0
    layer: str = "layer7"
    pooled_side: int | None = 6
    pool: str = "avg"
    reg: float = 1e-3
    svm_C: float = 0.01
    max_iter: int = 200
    batch_size: int = 64
    scratch: bool = True
    scratch_lr: float = 5e-4
    scratch_min_steps: int = 150
    scratch_max_steps: int = 400
    scratch_check_every: int = 25
    scratch_patience: int = 3
    scratch_min_gain: float = 0.01
    scratch_fit_accuracy: float = 1.0
    scratch_shift: int = 0
    fine_tune: bool = False
    fine_tune_epochs: float = 4.0
    fine_tune_lr: float = 1e-5
    train_batch: int = 32
    min_steps: int = 10
    network_draws: int | None = None

    def steps(self, epochs: float, n_images: int) -> int:
        """Minibatches for ``epochs`` passes over ``n_images`` (at least ``min_steps``)."""
        return max(self.min_steps, math.ceil(epochs * n_images / self.train_batch))

    @property
    def trained_draws(self) -> int:
        """How many draws the network-trained approaches (scratch, fine-tuning) run on."""
        return self.draws if self.network_draws is None else min(self.draws, self.network_draws)

    def __post_init__(self):
        if not self.ns or any((not isinstance(n, int)) or n < 1 for n in self.ns):
            raise TransferError(
                f"ns must be positive ints (training images per class), not {self.ns!r}"
            )
        if list(self.ns) != sorted(set(self.ns)):
            raise TransferError(
                f"ns must be increasing without repeats, e.g. (5, 10, 15, 30), not {self.ns!r}"
            )
        if not isinstance(self.draws, int) or self.draws < 1:
            raise TransferError(f"draws must be a positive int, not {self.draws!r}")
        if self.test_per_class is not None and self.test_per_class < 1:
            raise TransferError(
                f"test_per_class must be >= 1 or None (all remaining), not {self.test_per_class!r}"
            )
        if self.network_draws is not None and (
            not isinstance(self.network_draws, int) or self.network_draws < 1
        ):
            raise TransferError(
                f"network_draws must be a positive int or None (all draws), "
                f"not {self.network_draws!r}"
            )
        if self.layer not in LAYERS:
            raise TransferError(f"layer must be one of {LAYERS}, not {self.layer!r}")
        for name in (
            "scratch_min_steps",
            "scratch_max_steps",
            "scratch_check_every",
            "scratch_patience",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise TransferError(f"{name} must be a positive int, not {v!r}")
        if self.scratch_max_steps < self.scratch_min_steps:
            raise TransferError(
                f"scratch_max_steps ({self.scratch_max_steps}) must be >= scratch_min_steps "
                f"({self.scratch_min_steps})"
            )
        if not isinstance(self.scratch_shift, int) or self.scratch_shift < 0:
            raise TransferError(
                f"scratch_shift must be an int >= 0 (pixels), not {self.scratch_shift!r}"
            )


# Per profile: tiny runs in seconds; mini keeps the paper's 5 draws and n = 5, 10, 15, 30;
# imagenet follows section 5 (Caltech-101: 15/30 per class, 5 draws, up to 50 test images).
_PROFILE_DEFAULTS: dict[str, dict] = {
    "tiny": dict(
        ns=(2, 5),
        draws=2,
        test_per_class=10,
        fine_tune_epochs=1,
        min_steps=4,
        max_iter=60,
        train_batch=16,
        scratch_lr=2e-3,
        scratch_min_steps=100,
        scratch_max_steps=200,
        scratch_check_every=20,
        scratch_shift=4,
    ),
    # mini: 5 draws x 4 ns = 20 trainings of 100-800 steps of 32 images. The cap of 800 steps
    # lets the from-scratch baseline fit its training images; a much lower cap stops most runs
    # while their training accuracy is still rising, a baseline that has not fitted.
    "mini": dict(
        ns=(5, 10, 15, 30),
        draws=5,
        test_per_class=50,
        scratch_lr=1e-3,
        scratch_min_steps=100,
        scratch_max_steps=800,
        scratch_shift=8,
    ),
    "imagenette": dict(
        ns=(5, 10, 15, 30),
        draws=5,
        test_per_class=50,
        scratch_min_steps=300,
        scratch_max_steps=3000,
        scratch_check_every=50,
        scratch_shift=16,
    ),
    "imagenet": dict(
        ns=(15, 30),
        draws=5,
        test_per_class=50,
        scratch_min_steps=500,
        scratch_max_steps=5000,
        scratch_check_every=100,
        scratch_shift=16,
        fine_tune_epochs=10,
        train_batch=64,
        batch_size=128,
    ),
}
# Section 5's protocols for the real data sets (imagenet profile).
DATASET_DEFAULTS: dict[str, dict] = {
    "caltech101": dict(ns=(15, 30), draws=5, test_per_class=50),
    "caltech256": dict(ns=(15, 30, 45, 60), draws=5, test_per_class=25),
}


def transfer_config(
    profile: "str | Profile", dataset: str | None = None, **overrides
) -> TransferConfig:
    """The :class:`TransferConfig` for a profile (and a real data set's protocol), with
    ``overrides`` (names of :class:`TransferConfig` fields)."""
    P = get_profile(profile)
    base = dict(_PROFILE_DEFAULTS.get(P.name, {}))
    if dataset is not None:
        base.update(DATASET_DEFAULTS.get(dataset, {}))
    known = {f.name for f in fields(TransferConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TransferError(f"unknown transfer setting(s) {unknown}; known: {sorted(known)}")
    base.update(overrides)
    if "ns" in base:
        base["ns"] = tuple(int(n) for n in base["ns"])
    return TransferConfig(**base)
