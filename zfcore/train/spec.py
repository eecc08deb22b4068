"""What a training run is: a profile, an architecture, a Table 3 variant and trainer options.

The recipe of section 3 is a profile setting (optimiser, learning rate, momentum, weight decay,
batch 128, dropout, initialisation, feature-scale clipping: ``zfcore.profiles``); this module adds
the trainer's own options (per-layer learning rates, freezing, annealing on plateaus, the crops
and flips of section 3.1) and checks every argument before anything trains.

Cache layout: ``<cache_dir>/train/<hash>/`` where the hash covers everything that changes the
weights (:meth:`TrainSpec.key_config`: the profile's identity except its length, the
architecture, the variant, the trainer options, :data:`TRAINER_VERSION` and the data generator's
version). A run of E epochs is the first E epochs of any longer run of the same configuration, so
a shorter schedule is served from a longer run's checkpoint and a longer one resumes a shorter one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import cache as zcache
from .. import data
from ..errors import ZFCoreError
from ..models import TABLE3_VARIANTS, LayerError, layer_key
from ..profiles import Profile, ProfileError, get_profile

#: Bumped whenever a change to this package changes the weights a configuration trains to (part
#: of every training cache key, :meth:`TrainSpec.key_config`).
TRAINER_VERSION = 4

#: Fractional checkpoints saved in the first epoch on top of ``profile.checkpoint_epochs``:
#: lower layers settle within the first epoch on the small profiles (Fig. 4's point).
EARLY_CHECKPOINTS: tuple[float, ...] = (0.125, 0.25, 0.5)

ARCHS = ("zfnet", "krizhevsky")
LAYER_KEYS = ("layer1", "layer2", "layer3", "layer4", "layer5", "layer6", "layer7", "logits")


class TrainError(ZFCoreError, ValueError):
    """A bad training argument (unknown override, layer, architecture, variant or schedule)."""

    __module__ = "zfcore.train"  # its public name, as raised and caught: zfcore.train.TrainError


def _layer_map(value: "Mapping | Sequence | None", what: str) -> tuple[tuple[str, float], ...]:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    try:
        out = {layer_key(k, LAYER_KEYS): float(v) for k, v in items}
    except (TypeError, ValueError) as e:
        if isinstance(e, (TrainError, LayerError)):
            raise
        raise TrainError(
            f"{what} must map layers to numbers, e.g. {{'layer1': 0.1}}; got {value!r}"
        ) from None
    for k, v in out.items():
        if not math.isfinite(v) or v < 0:
            raise TrainError(f"{what}[{k!r}] = {v} must be a finite number >= 0")
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class TrainOptions:
    """Trainer settings that are not profile fields (all part of the cache key).

    * ``layer_lr``: learning-rate multiplier per layer, e.g. ``{"layer1": 0.1}`` (others 1).
    * ``freeze_after``: ``{"layer1": 2}`` stops updating layer 1 after epoch 2 (fractions such
      as ``0.5`` freeze mid-epoch; its gradient is no longer computed, so the freeze also saves
      time).
    * ``plateau_patience`` / ``plateau_factor``: the paper anneals the learning rate by hand when
      the validation error plateaus; here it is multiplied by ``plateau_factor`` after
      ``plateau_patience`` epochs without a new best validation error (``0`` turns it off).
    * ``augment``: the paper's crops and flips (section 3.1; ``zfcore.data.paper_crops``).
    """

    layer_lr: tuple[tuple[str, float], ...] = ()
    freeze_after: tuple[tuple[str, float], ...] = ()
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    augment: bool = True

    def __post_init__(self):
        object.__setattr__(self, "layer_lr", _layer_map(self.layer_lr, "layer_lr"))
        object.__setattr__(self, "freeze_after", _layer_map(self.freeze_after, "freeze_after"))
        if not isinstance(self.plateau_patience, int) or self.plateau_patience < 0:
            raise TrainError(f"plateau_patience must be an int >= 0, not {self.plateau_patience!r}")
        if not 0 < float(self.plateau_factor) <= 1:
            raise TrainError(f"plateau_factor must be in (0, 1], not {self.plateau_factor!r}")


_OPTION_FIELDS = {f.name for f in dataclasses.fields(TrainOptions)}


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split ``trained_model``'s keyword overrides into profile fields and trainer options."""
    profile_fields = {f.name for f in dataclasses.fields(Profile)}
    prof, opts, unknown = {}, {}, []
    for k, v in overrides.items():
        if k in profile_fields:
            prof[k] = v
        elif k in _OPTION_FIELDS:
            opts[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise TrainError(
            f"unknown training override(s) {sorted(unknown)}: use profile fields "
            f"(e.g. epochs, lr, optimizer, init, clip_rms, n_train) or trainer "
            f"options {sorted(_OPTION_FIELDS)}"
        )
    return prof, opts


@dataclass(frozen=True)
class TrainSpec:
    """One training configuration: a profile, an architecture, a Table 3 variant, options."""

    profile: Profile
    arch: str = "zfnet"
    variant: str = "zf"
    options: TrainOptions = TrainOptions()

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise TrainError(f"unknown arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.variant not in TABLE3_VARIANTS:
            raise TrainError(
                f"unknown variant {self.variant!r}: choose one of {sorted(TABLE3_VARIANTS)}"
            )
        p = self.profile
        if p.optimizer not in ("sgd", "adam", "adamw"):
            raise TrainError(
                f"profile.optimizer must be 'sgd', 'adam' or 'adamw', not {p.optimizer!r}"
            )
        if p.init not in ("paper", "default", "he"):
            raise TrainError(f"profile.init must be 'paper', 'default' or 'he', not {p.init!r}")
        if not isinstance(p.epochs, int) or p.epochs < 1:
            raise TrainError(f"epochs must be a positive int, not {p.epochs!r}")
        if p.batch_size < 1 or p.n_train < p.batch_size:
            raise TrainError(
                f"n_train ({p.n_train}) must hold at least one batch of {p.batch_size}"
            )

    def key_config(self) -> dict:
        """What the weights depend on. ``epochs`` and ``checkpoint_epochs`` are left out: a run
        of E epochs is the prefix of any longer run (nothing depends on the total length)."""
        ident = self.profile.identity()
        ident.pop("epochs")
        ident.pop("checkpoint_epochs")
        return {
            "trainer_version": TRAINER_VERSION,
            "generator_version": generator_version(),
            "profile": ident,
            "arch": self.arch,
            "variant": self.variant,
            "options": dataclasses.asdict(self.options),
        }

    def entry(self) -> Path:
        return zcache.entry_dir(self.profile.cache_dir, "train", self.key_config())

    def checkpoint_epochs(self) -> tuple[float, ...]:
        """Epochs (fractional allowed) whose weights are kept: the profile's, the early ones
        and the last one, all within this run's length."""
        e = self.profile.epochs
        wanted = set(self.profile.checkpoint_epochs) | set(EARLY_CHECKPOINTS) | {e}
        return tuple(sorted(float(x) for x in wanted if 0 < x <= e))


def generator_version() -> Any:
    """The procedural scene generator's version (:data:`zfcore.data.GENERATOR_VERSION`): part of
    the training cache key, since the scenes a network trains on follow it."""
    return data.GENERATOR_VERSION


def make_spec(
    profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf", **overrides
) -> TrainSpec:
    """A :class:`TrainSpec` from a profile name and ``trained_model``-style overrides."""
    prof_over, opt_over = split_overrides(overrides)
    try:
        p = get_profile(profile, **prof_over)
    except ProfileError as e:
        raise TrainError(str(e)) from None
    return TrainSpec(p, arch, variant, TrainOptions(**opt_over))


def comparison_overrides(profile: "str | Profile") -> dict:
    """The schedule of the comparison trainings (Fig. 6 layouts, Table 3 variants, per-layer
    rates): the profile's whole schedule, annealing included, so that a comparison ranks how well
    networks end rather than how fast they start (``profile.comparison_epochs`` shortens it, never
    beyond the profile's epochs). Being the main model's own schedule, its ``zf`` run with seed 0
    *is* the main model."""
    p = get_profile(profile)
    return {"epochs": min(p.comparison_epochs or p.epochs, p.epochs)}
