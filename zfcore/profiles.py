"""One configuration object per profile: data, model and compute behind a single switch.

Every notebook takes ``profile`` (a name) in its papermill ``parameters`` cell and calls
:func:`get_profile`; nothing else in a notebook hard-codes sizes, counts or paths.

=============  ======================================  =========================  =================
profile        data                                    model                      compute
=============  ======================================  =========================  =================
``tiny``       procedural scenes, a few hundred, 64px  ZF layout, 1/8 width       seconds/notebook
``mini``       procedural scenes, 20,000, 112 px       ZF layout, 1/2 width       minutes, 2 cores
``imagenette`` Imagenette, 10 ImageNet classes, 224px  ZF and Krizhevsky layouts  ~1 h CPU, min GPU
``imagenet``   the user's ImageNet folder, 224 px      pretrained AlexNet, ZFNet  GPU (torchrun)
=============  ======================================  =========================  =================

``mini`` trains with the paper's optimiser (section 3: SGD, learning rate 1e-2, momentum 0.9, weight
decay 5e-4, feature-scale clipping at RMS 0.1, dropout 0.5), with stated deviations chosen by the
recipe comparison of notebook 04 (:mod:`zfcore.paper.fig4_evolution`, ``sgd_late_dropout``): He
initialisation for layers 2-7 and the logits (the paper's 1e-2 everywhere lets the signal vanish
through seven layers) with layer 1 at the paper's 1e-2 (so its filters show what training learned,
not the random start); batches of 64 instead of 128; a quarter-epoch warm-up, the rate divided by 10
after epoch 5 of 6 (the paper anneals by hand); dropout from the second epoch on (``dropout_after``:
dropout doubles the loss plateau at the start). ``mini`` trains in float32: bfloat16 steps
(``precision="bf16"``) are about twice as fast on CPUs with native bfloat16 (AVX512-BF16, AMX) but
about ten times slower on the many that emulate it (AVX2 only), and the recipe must give the same
network on every machine. Adam, which ``mini`` used before, left up to 64 % of the layer-2 maps
dead. ``tiny`` keeps Adam (three epochs on 640 images, for tests). ``imagenet`` keeps the paper's
recipe as written."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ZFCoreError
from .locations import cache_root, figures_root

__all__ = ["Profile", "get_profile", "PROFILES", "ProfileError", "repo_root"]


class ProfileError(ZFCoreError, ValueError):
    """An unknown profile name or a bad override."""


def repo_root() -> Path:
    """The folder the package lives in: a checkout, or site-packages when installed (where
    zfcore writes instead: :mod:`zfcore.locations`)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """Everything that changes between ``tiny``, ``mini``, ``imagenette`` and ``imagenet``.

    Sizes follow the paper's Fig. 3 scaled by ``width`` (channels and fully connected units) and
    ``image_size`` (the input side; 224 in the paper).
    """

    name: str
    # --- data -------------------------------------------------------------------------------
    dataset: str  # "scenes" (procedural) or a registry name ("imagenette", "imagenet")
    image_size: int  # side of the network input (the paper: 224)
    n_train: int  # training images (procedural: generated on the fly)
    n_val: int
    n_test: int
    num_classes: int  # classes the main model is trained on
    data_seed: int = 0
    # --- model ------------------------------------------------------------------------------
    arch: str = "zfnet"  # "zfnet", "krizhevsky" or "alexnet_pretrained"
    width: float = 1.0  # multiplier on every layer's channels / units (paper: 1.0)
    fc_units: int = 4096  # units of layers 6 and 7 before ``width`` (paper: 4096)
    # --- training (section 3 of the paper) -------------------------------------------------
    optimizer: str = "sgd"  # "sgd" (the paper), "adam" or "adamw" (decoupled weight decay)
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    init: str = "paper"  # "paper" (weights 1e-2, biases 0), "default" (PyTorch's) or "he"
    logits_init_std: float | None = (
        1e-2  # with init="he": the logits' std (the paper's 1e-2); None: He
    )
    layer1_init_std: float | None = None  # layer 1's weights drawn N(0, std), biases 0 (see below)
    bias_init: float | None = (
        None  # biases of layers 2-7 set to this (Krizhevsky: 1); None keeps init's
    )
    warmup_epochs: float = 0.0  # learning rate ramped linearly from 0 over this many epochs
    lr_drop_epochs: tuple[
        int, ...
    ] = ()  # learning rate x0.1 after each of these epochs (annealing)
    comparison_epochs: int | None = (
        None  # schedule of the comparison trainings; None: the whole schedule
    )
    comparison_seeds: int = (
        3  # training seeds of every comparison network (Tables 2-3, Fig. 6, rates)
    )
    clip_rms: float | None = 0.1  # feature-scale clipping of conv filters (section 3)
    precision: str = "fp32"  # training arithmetic: "fp32", or "bf16" (autocast; weights stay fp32)
    dropout: float = 0.5
    dropout_after: float = (
        0.0  # epochs trained without dropout first ("late dropout"), then ``dropout``
    )
    batch_size: int = 128
    epochs: int = 70
    checkpoint_epochs: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 40, 64)  # Fig. 4
    seed: int = 0
    # --- compute ----------------------------------------------------------------------------
    device: str = "cpu"
    num_workers: int = 0
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    cache_dir: Path = field(default_factory=cache_root)  # zfcore.locations: checkout or user cache
    figures_root: Path = field(
        default_factory=figures_root
    )  # the figures of record (zfcore.locations)
    data_root: Path = field(
        default_factory=lambda: Path(os.environ.get("ZFCORE_DATA", Path.home() / "zfcore-data"))
    )

    def __post_init__(self):
        """Check types and ranges, so a bad override fails here, naming the field and the fix."""

        def bad(name, want):
            raise ProfileError(
                f"profile field {name}={getattr(self, name)!r} is invalid: expected {want}"
            )

        positive_ints = (
            "image_size",
            "n_train",
            "n_val",
            "n_test",
            "num_classes",
            "fc_units",
            "batch_size",
            "epochs",
        )
        for name in positive_ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "a positive integer")
        if self.image_size < 32:
            bad("image_size", "at least 32 pixels (the ZF layout needs room for five layers)")
        for name in ("width", "lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                bad(name, "a positive number")
        for name in ("momentum", "dropout", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
                bad(name, "a number in [0, 1)")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            bad("optimizer", "'sgd' (the paper), 'adam' or 'adamw'")
        if self.init not in ("paper", "default", "he"):
            bad(
                "init",
                "'paper' (weights 1e-2, biases 0), 'default' (PyTorch's) or 'he' (He normal, "
                "biases 0)",
            )
        if self.bias_init is not None and not (
            isinstance(self.bias_init, (int, float))
            and not isinstance(self.bias_init, bool)
            and abs(self.bias_init) < 10
        ):
            bad(
                "bias_init",
                "a number (e.g. 1, Krizhevsky's), or None to keep the init rule's biases",
            )
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        for name, meaning in (
            ("warmup_epochs", ""),
            ("dropout_after", " (0: dropout from the start)"),
        ):
            v = getattr(self, name)
            if not number(v) or not 0 <= v <= self.epochs:
                bad(name, f"a number of epochs in [0, epochs]{meaning}")
        for name, meaning in (
            ("layer1_init_std", "to keep the init rule's layer 1"),
            ("logits_init_std", "for He initialisation of the logits"),
        ):
            v = getattr(self, name)
            if v is not None and not (number(v) and v > 0):
                bad(name, f"a positive number, or None {meaning}")
        if self.precision not in ("fp32", "bf16"):
            bad("precision", "'fp32' or 'bf16' (bfloat16 autocast of the training steps)")
        if self.clip_rms is not None and not (
            isinstance(self.clip_rms, (int, float)) and self.clip_rms > 0
        ):
            bad("clip_rms", "a positive number, or None to switch feature-scale clipping off")
        if not isinstance(self.checkpoint_epochs, tuple) or not all(
            isinstance(e, (int, float)) and 0 < e for e in self.checkpoint_epochs
        ):
            bad("checkpoint_epochs", "a tuple of positive epoch numbers")
        if not isinstance(self.lr_drop_epochs, tuple) or not all(
            isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in self.lr_drop_epochs
        ):
            bad("lr_drop_epochs", "a tuple of positive whole epochs, e.g. (8,)")
        if self.comparison_epochs is not None and (
            not isinstance(self.comparison_epochs, int)
            or isinstance(self.comparison_epochs, bool)
            or self.comparison_epochs < 1
        ):
            bad("comparison_epochs", "None or a positive whole number of epochs (capped at epochs)")
        if (
            not isinstance(self.comparison_seeds, int)
            or isinstance(self.comparison_seeds, bool)
            or self.comparison_seeds < 1
        ):
            bad(
                "comparison_seeds",
                "a positive whole number of training seeds (3 or more for seed variance)",
            )
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            bad("threads", "a positive integer or None")

    @property
    def figures_dir(self) -> Path:
        """``<figures_root>/<profile>/``: the figures of record (PNGs and their JSON numbers); a
        notebook writes there when asked (:func:`zfcore.locations.figures_output_dir`)."""
        return Path(self.figures_root) / self.name

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed; unknown field names are an error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ProfileError(f"unknown profile field(s) {unknown}; known fields: {sorted(names)}")
        return replace(self, **changes)

    def model_kwargs(self) -> dict:
        """Arguments for :func:`zfcore.models.zfnet` / :func:`zfcore.models.krizhevsky`."""
        return dict(
            width=self.width,
            image_size=self.image_size,
            num_classes=self.num_classes,
            fc_units=self.fc_units,
            dropout=self.dropout,
        )

    def identity(self) -> dict:
        """The fields that define trained artefacts (used in cache keys); paths excluded."""
        d = dataclasses.asdict(self)
        for k in (
            "cache_dir",
            "figures_root",
            "data_root",
            "device",
            "num_workers",
            "threads",
            "comparison_epochs",
            "comparison_seeds",
        ):
            d.pop(k)
        for k in _KEYED_ONLY_IF_SET:  # absent at their defaults: older artefacts keep their keys
            if d[k] == _DEFAULTS[k]:
                d.pop(k)
        return d


#: Fields added after artefacts were cached: in a cache key only when they differ from the default.
_KEYED_ONLY_IF_SET = ("lr_drop_epochs", "precision", "dropout_after", "logits_init_std")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Profile) if f.name in _KEYED_ONLY_IF_SET}


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        dataset="scenes",
        image_size=64,
        n_train=640,
        n_val=128,
        n_test=128,
        num_classes=10,
        width=0.125,
        fc_units=1024,
        optimizer="adam",
        lr=2e-3,
        init="default",
        weight_decay=0.0,
        batch_size=64,
        epochs=3,
        checkpoint_epochs=(1, 2, 3),
        comparison_seeds=2,
        threads=1,
    ),
    "mini": Profile(
        name="mini",
        dataset="scenes",
        image_size=112,
        n_train=20000,
        n_val=2000,
        n_test=2000,
        num_classes=10,
        width=0.5,
        fc_units=2048,
        optimizer="sgd",
        lr=1e-2,
        momentum=0.9,
        weight_decay=5e-4,
        init="he",
        logits_init_std=None,
        layer1_init_std=1e-2,
        warmup_epochs=0.25,
        dropout_after=1.0,
        batch_size=64,
        epochs=6,
        lr_drop_epochs=(5,),
        checkpoint_epochs=(1, 2, 3, 4, 5, 6),
        threads=2,
    ),
    "imagenette": Profile(
        name="imagenette",
        dataset="imagenette",
        image_size=224,
        n_train=9469,
        n_val=3925,
        n_test=3925,
        num_classes=10,
        width=1.0,
        fc_units=4096,
        optimizer="sgd",
        lr=1e-2,
        init="default",
        batch_size=128,
        epochs=30,
        checkpoint_epochs=(1, 2, 4, 6, 10, 15, 20, 30),
        num_workers=4,
    ),
    "imagenet": Profile(
        name="imagenet",
        dataset="imagenet",
        image_size=224,
        n_train=1281167,
        n_val=50000,
        n_test=50000,
        num_classes=1000,
        width=1.0,
        fc_units=4096,
        optimizer="sgd",
        lr=1e-2,
        init="paper",
        batch_size=128,
        epochs=70,
        num_workers=8,
        device="cuda",
    ),
}


def get_profile(profile: "str | Profile" = "mini", **overrides) -> Profile:
    """Return the :class:`Profile` called ``profile`` (a name or a Profile), with overrides.

    >>> get_profile("tiny").image_size
    64
    """
    if isinstance(profile, Profile):
        p = profile
    else:
        if not isinstance(profile, str) or profile not in PROFILES:
            raise ProfileError(
                f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)} "
                f"(set it in the notebook's parameters cell, e.g. profile = 'mini')"
            )
        p = PROFILES[profile]
    return p.replace(**overrides) if overrides else p
