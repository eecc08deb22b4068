"""Training recipes for the small profiles, compared on the same budget (section 3 of the paper).

The paper trains with SGD (learning rate 1e-2, momentum 0.9, weight decay 5e-4, annealed by hand),
weights initialised to 1e-2 and biases to 0. On a 2-core budget that recipe as written stays at
chance for epochs, so ``tiny``/``mini`` need a deviation; which one is chosen by measurement:
each recipe below is trained on the same data for the same number of epochs and measured for
validation accuracy, dead feature maps per layer (:mod:`zfcore.health`), the layer-1 filters'
low-frequency share (learned edges and blobs rather than the random start) and wall time.
:func:`compare_recipes` returns that table (:func:`recipes_text`, :func:`recipe_numbers`);
notebook 04 shows it.

Section 4.2's reading of Fig. 4 (lower layers settle within a few epochs) suggests training layers
at different rates: :func:`layer_schedules` compares one global rate, layers 1-2 frozen once they
settled, and layers 1-2 at a lower rate, each trained with several seeds on the complete schedule
(the comparison study, :mod:`zfcore.comparisons`), and decides with hierarchical bootstraps (seeds,
then images) whether the per-layer schedules cost under one point of validation accuracy.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

from .ablations import network_arrays
from .comparisons import EARLY_LAYERS, early_layer_freeze, network_records, study_jobs
from .errors import ZFCoreError
from .health import low_frequency_share
from .profiles import Profile, get_profile
from .train import cached_run, compare_throughput, comparison_overrides, make_spec, training_run
from .paper.verdicts import Verdict, hierarchical_bootstrap

__all__ = [
    "RECIPES",
    "RecipeResult",
    "recipe_overrides",
    "compare_recipes",
    "profile_recipe",
    "RecipeError",
    "comparison_schedule",
    "screening_epochs",
    "recipes_text",
    "recipe_numbers",
    "LayerSchedules",
    "layer_schedules",
    "EARLY_LAYERS",
]


class RecipeError(ZFCoreError, ValueError):
    """Bad input to the recipe comparisons or the per-layer schedules."""


#: Profile overrides of each recipe (every field a recipe could differ in is set, so a recipe
#: means the same on any profile; the profile's ``precision`` and schedule apply to all). ``mini``
#: used Adam with PyTorch's default initialisation and layer 1 started near zero (std 5e-4)
#: before: over 2,000 validation images 79 % of its layer-2 maps, 35 % of layer 4's and 33 % of
#: layer 7's units never fired. ``adam_bias`` is that recipe with Krizhevsky's remedy (positive
#: hidden biases). ``sgd_paper_layer1`` is the paper's SGD with layer 1 at the paper's 1e-2 (what
#: ``mini`` trained with for ten epochs before); ``sgd_late_dropout`` keeps the paper's rate but
#: takes batches of 64 (twice the steps for the same compute), starts the logits at He's scale and
#: switches dropout on only from the second epoch, which shortens the loss plateau at the start.
_SGD = dict(optimizer="sgd", lr=1e-2, momentum=0.9, weight_decay=5e-4, init="he", bias_init=None)
RECIPES: dict[str, dict] = {
    "adam_bias": dict(
        optimizer="adam",
        lr=5e-4,
        weight_decay=0.0,
        init="default",
        layer1_init_std=5e-4,
        bias_init=0.1,
        warmup_epochs=0.0,
        dropout_after=0.0,
        logits_init_std=1e-2,
        batch_size=128,
    ),
    "sgd_warmup": dict(
        _SGD,
        layer1_init_std=None,
        logits_init_std=1e-2,
        warmup_epochs=1.0,
        dropout_after=0.0,
        batch_size=128,
    ),
    "sgd_paper_layer1": dict(
        _SGD,
        layer1_init_std=1e-2,
        logits_init_std=1e-2,
        warmup_epochs=0.5,
        dropout_after=0.0,
        batch_size=128,
    ),
    "sgd_late_dropout": dict(
        _SGD,
        layer1_init_std=1e-2,
        logits_init_std=None,
        warmup_epochs=0.25,
        dropout_after=1.0,
        batch_size=64,
    ),
}


def recipe_overrides(name: str) -> dict:
    """The profile overrides of recipe ``name`` (a key of :data:`RECIPES`)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])


def profile_recipe(profile: "str | Profile") -> "str | None":
    """The name of the recipe the profile trains with (its fields equal the recipe's), or None."""
    p = get_profile(profile)
    for name, over in RECIPES.items():
        if all(
            getattr(p, k) == v
            for k, v in over.items()
            if not (k == "momentum" and p.optimizer != "sgd")
        ):
            return name
    return None


@dataclass
class RecipeResult:
    """One recipe's measurements after ``epochs`` epochs."""

    recipe: str
    epochs: int
    val_top1_error: float
    dead_share: Mapping[str, float]
    layer1_low_frequency_share: float
    train_minutes: float

    def row(self) -> dict:
        r = {
            "recipe": self.recipe,
            "epochs": self.epochs,
            "val_top1_error_pct": self.val_top1_error,
            "layer1_low_frequency_share": self.layer1_low_frequency_share,
            "train_minutes": self.train_minutes,
        }
        r.update({f"dead_{k}": v for k, v in self.dead_share.items()})
        return r


def compare_recipes(
    profile: "str | Profile" = "mini",
    recipes=None,
    epochs: int | None = None,
    progress: bool = True,
    train_missing: bool = True,
) -> list[RecipeResult]:
    """Train (or load) each recipe for ``epochs`` (default :func:`screening_epochs`) and measure
    it; with ``train_missing=False`` only the recipes already trained on this machine. The
    profile's own recipe is a prefix of its main training."""
    p = get_profile(profile)
    epochs = epochs or screening_epochs(p)
    out = []
    for name in recipes or RECIPES:
        over = dict(recipe_overrides(name), epochs=epochs)
        run = (
            training_run(p, progress=progress, **over)
            if train_missing
            else cached_run(make_spec(p, **over))
        )
        if run is None:
            continue
        last = run.history[-1]
        out.append(
            RecipeResult(
                name,
                epochs,
                last.val_top1_error,
                dict(last.dead_share),
                low_frequency_share(run.model()),
                sum(h.train_seconds for h in run.history) / 60,
            )
        )
    return out


def screening_epochs(profile: "str | Profile") -> int:
    """The recipes' screening budget: half the profile's epochs (at least one). A screening
    compares how far each recipe gets on the same budget, before the learning-rate drop; it
    picks a recipe, it does not rank architectures (those train on the whole schedule:
    :func:`zfcore.train.comparison_overrides`)."""
    return max(1, round(get_profile(profile).epochs / 2))


def comparison_schedule(profile: "str | Profile", epochs: "int | None" = None) -> dict:
    """The schedule of the comparison trainings: ``{"epochs": epochs}``, or
    :func:`zfcore.train.comparison_overrides` (the profile's whole schedule) when ``epochs`` is
    None."""
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise RecipeError(f"schedule_epochs must be None or a positive int, got {epochs!r}")
    return comparison_overrides(profile) if epochs is None else {"epochs": epochs}


def recipes_text(results: Sequence[RecipeResult], chosen: "str | None" = None) -> str:
    """The recipe table as printed text: validation error, layer-1 low-frequency share, minutes
    and the dead-map share per layer; ``chosen`` (the profile's recipe) is starred."""
    layers = list(results[0].dead_share)
    lines = [
        f"{'recipe':16s} {'val err':>8s} {'layer-1 low freq':>16s} {'minutes':>8s}  dead maps "
        + " ".join(f"{l[-1]:>5s}" for l in layers)
    ]
    for r in results:
        lines.append(
            f"{r.recipe + (' *' if r.recipe == chosen else ''):16s} {r.val_top1_error:7.1f}% "
            f"{r.layer1_low_frequency_share:16.0%} {r.train_minutes:8.1f}            "
            + " ".join(f"{100 * r.dead_share[l]:4.0f}%" for l in layers)
        )
    return "\n".join(lines)


def recipe_numbers(results: Sequence[RecipeResult], chosen: "str | None" = None) -> dict:
    """The numbers notebook 04 records for the recipe comparison: ``recipe_<name>_<measure>``
    for every measure of :meth:`RecipeResult.row` but the name and the epochs, and
    ``profile_recipe`` (``"custom"`` when the profile matches no recipe)."""
    out = {}
    for r in results:
        out.update(
            {
                f"recipe_{r.recipe}_{k}": v
                for k, v in r.row().items()
                if k not in ("recipe", "epochs")
            }
        )
    out["profile_recipe"] = chosen or "custom"
    return out


@dataclass
class LayerSchedules:
    """One global learning rate against per-layer schedules, each trained with several seeds on
    the complete schedule (section 4.2's reading of Fig. 4: lower layers settle first, so updating
    them all along may waste compute). ``records`` maps an arm's label to its seeds'
    :class:`zfcore.comparisons.NetworkRecord`, in the order global rate (the Fig. 3 networks of
    Table 3), frozen early layers, lower early rates; ``images_per_s`` the step throughput of the
    global and the frozen configuration measured now, side by side (``"global"``, ``"frozen"``)."""

    epochs: int
    freeze: dict
    layer_lr: dict
    records: dict
    images_per_s: dict
    steps_per_epoch: int

    @property
    def names(self) -> list[str]:
        return list(self.records)

    @property
    def seeds(self) -> int:
        return min(len(r) for r in self.records.values())

    @property
    def speedup(self) -> float:
        """Step throughput with the early layers frozen over that with one global rate."""
        return self.images_per_s["frozen"] / self.images_per_s["global"]

    def _mean(self, name: str, what: str) -> float:
        return statistics.fmean(getattr(r, what) for r in self.records[name])

    def _sd(self, name: str, what: str) -> float:
        vals = [getattr(r, what) for r in self.records[name]]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    def epochs_to_reach(self, name: str, target: float) -> "float | None":
        """The first epoch at which the arm's validation top-1 error after each epoch (the
        trainer's, mean over seeds) is at most ``target`` (%), or None if it never is."""
        curves = [r.val_top1_error_per_epoch for r in self.records[name]]
        mean = [statistics.fmean(c[e] for c in curves) for e in range(min(len(c) for c in curves))]
        return next((e + 1.0 for e, v in enumerate(mean) if v <= target), None)

    def seconds_saved_estimate(self) -> float:
        """Training seconds the freeze saves, from throughput measured side by side now: the
        global arm's mean training time times the share of steps after the freeze times
        ``1 - 1 / speedup`` (training times recorded on a shared machine mix in its load)."""
        after = 1 - min(self.freeze.values()) / self.epochs
        return self._mean(self.names[0], "train_seconds") * after * (1 - 1 / self.speedup)

    def rows(self) -> list[dict]:
        """One row per arm: validation accuracy (mean and sd over seeds), mean training time
        when trained, images/s now."""
        return [
            {
                "name": name,
                "seeds": len(self.records[name]),
                "val accuracy (%)": 100 - self._mean(name, "val_top1_error"),
                "val accuracy sd": self._sd(name, "val_top1_error"),
                "training time (s)": self._mean(name, "train_seconds"),
                "images/s": self.images_per_s["frozen"]
                if name.startswith("freeze")
                else self.images_per_s["global"],
            }
            for name in self.names
        ]

    def verdicts(self) -> "tuple[Verdict, Verdict]":
        """Whether freezing, and lowering the rates of, the early layers each cost under one point
        of validation accuracy (margin -1 point): hierarchical bootstraps over each arm's seeds
        and the validation images."""
        g, f, r = self.names
        arrays = {n: {"val": a["val"]} for n, a in network_arrays(self.records).items()}
        kw = dict(margin=-1.0, unit="points")
        return tuple(
            hierarchical_bootstrap(
                claim,
                {arm: arrays[arm], g: arrays[g]},
                lambda m, a=arm: 100 * (m[a]["val"] - m[g]["val"]),
                **kw,
            )
            for claim, arm in (
                ("per_layer_freeze_costs_under_1_point", f),
                ("per_layer_rates_cost_under_1_point", r),
            )
        )

    def numbers(self) -> dict:
        """The numbers notebook 04 records for this comparison: accuracies (mean, sd), training
        times, the freeze's speed-up and the seconds it saves, and each arm's epochs and steps to
        come within one point of the global rate's final error."""
        g, f, r = self.names
        target = statistics.fmean(r.val_top1_error_per_epoch[-1] for r in self.records[g]) + 1.0
        out = dict(
            layer_lr_schedule_epochs=self.epochs,
            layer_lr_freeze=self.freeze,
            layer_lr_multipliers=self.layer_lr,
            seeds=self.seeds,
            per_layer_speedup_images_per_s=self.speedup,
            per_layer_seconds_saved_estimate=self.seconds_saved_estimate(),
        )
        for key, name in (("global_rate", g), ("per_layer", f), ("lower_rates", r)):
            reach = self.epochs_to_reach(name, target)
            out.update(
                {
                    f"{key}_val_accuracy": 100 - self._mean(name, "val_top1_error"),
                    f"{key}_val_accuracy_sd": self._sd(name, "val_top1_error"),
                    f"{key}_train_seconds": self._mean(name, "train_seconds"),
                    f"{key}_epochs_to_within_1_point": reach,
                    f"{key}_steps_to_within_1_point": None
                    if reach is None
                    else int(reach * self.steps_per_epoch),
                }
            )
        return out


def layer_schedules(
    profile: "str | Profile",
    freeze: "Mapping[str, float] | None" = None,
    layer_lr: "Mapping[str, float] | None" = None,
    *,
    seeds: "int | None" = None,
    workers: int = 1,
    train_missing: bool = True,
) -> "LayerSchedules | None":
    """The per-layer arms of the comparison study (:mod:`zfcore.comparisons`), with the Fig. 3
    networks as the global-rate arm, each with ``seeds`` seeds on the complete schedule (trained
    first where not recorded), and the throughput of the frozen configuration measured now.

    ``freeze=None`` freezes :data:`EARLY_LAYERS` at the epoch their top-9 settled on the main
    model's own schedule (:func:`zfcore.comparisons.early_layer_freeze`). With
    ``train_missing=False`` nothing trains, and an arm without any record gives None."""
    p = get_profile(profile)
    freeze = dict(freeze) if freeze is not None else early_layer_freeze(p)
    layer_lr = dict(layer_lr if layer_lr is not None else {layer: 0.1 for layer in EARLY_LAYERS})
    jobs = study_jobs(p, ("table3", "per_layer"), ["zf"], seeds, freeze=freeze, layer_lr=layer_lr)
    recs = network_records(p, jobs, train_missing=train_missing, workers=workers)
    labels = {
        "table3": "one global rate",
        "freeze": "freeze " + ", ".join(f"{layer}@{e:g}" for layer, e in freeze.items()),
        "rates": "rates " + ", ".join(f"{layer} x{m:g}" for layer, m in layer_lr.items()),
    }
    arms: dict = {labels["table3"]: [], labels["freeze"]: [], labels["rates"]: []}
    for j in jobs:
        if j.name in recs:
            arms[labels[j.arm or j.group]].append(recs[j.name])
    empty = [name for name, r in arms.items() if not r]
    if empty and not train_missing:
        return None
    if empty:
        raise RecipeError(
            f"no record of the arm(s) {empty}: run the study (python -m zfcore.comparisons "
            f"--groups table3,per_layer)"
        )
    ips = compare_throughput(p, {"global": [], "frozen": list(freeze)})
    return LayerSchedules(
        comparison_overrides(p)["epochs"], freeze, layer_lr, arms, ips, p.n_train // p.batch_size
    )
