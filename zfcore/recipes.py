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
at different rates: :func:`layer_schedules` trains one global rate, layers 1-2 frozen once they
settled, and layers 1-2 at a lower rate on the same comparison schedule
(:func:`comparison_schedule`), and decides with paired bootstraps whether the per-layer
schedules cost under one point of validation accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .errors import ZFCoreError
from .health import low_frequency_share
from .profiles import Profile, get_profile
from .verdicts import Verdict, paired_bootstrap

__all__ = ["RECIPES", "RecipeResult", "recipe_overrides", "compare_recipes", "profile_recipe",
           "RecipeError", "comparison_schedule", "recipes_text", "recipe_numbers", "LayerSchedules",
           "layer_schedules", "EARLY_LAYERS"]

#: The layers frozen (or slowed) by :func:`layer_schedules`: the ones Fig. 4 shows settling first.
EARLY_LAYERS = ("layer1", "layer2")


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
    "adam_bias": dict(optimizer="adam", lr=5e-4, weight_decay=0.0, init="default",
                      layer1_init_std=5e-4, bias_init=0.1, warmup_epochs=0.0, dropout_after=0.0,
                      logits_init_std=1e-2, batch_size=128),
    "sgd_warmup": dict(_SGD, layer1_init_std=None, logits_init_std=1e-2, warmup_epochs=1.0,
                       dropout_after=0.0, batch_size=128),
    "sgd_paper_layer1": dict(_SGD, layer1_init_std=1e-2, logits_init_std=1e-2, warmup_epochs=0.5,
                             dropout_after=0.0, batch_size=128),
    "sgd_late_dropout": dict(_SGD, layer1_init_std=1e-2, logits_init_std=None, warmup_epochs=0.25,
                             dropout_after=1.0, batch_size=64),
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
        if all(getattr(p, k) == v for k, v in over.items() if not (k == "momentum" and p.optimizer != "sgd")):
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
        r = {"recipe": self.recipe, "epochs": self.epochs, "val_top1_error_pct": self.val_top1_error,
             "layer1_low_frequency_share": self.layer1_low_frequency_share, "train_minutes": self.train_minutes}
        r.update({f"dead_{k}": v for k, v in self.dead_share.items()})
        return r


def compare_recipes(profile: "str | Profile" = "mini", recipes=None, epochs: int | None = None,
                    progress: bool = True) -> list[RecipeResult]:
    """Train (or load) each recipe for ``epochs`` (default: the comparison schedule, half the
    profile's) and measure it. The profile's own recipe is a prefix of its main training."""
    from .train import comparison_overrides, training_run
    p = get_profile(profile)
    epochs = epochs or comparison_overrides(p)["epochs"]
    out = []
    for name in recipes or RECIPES:
        run = training_run(p, progress=progress, epochs=epochs, **recipe_overrides(name))
        last = run.history[-1]
        out.append(RecipeResult(name, epochs, last.val_top1_error, dict(last.dead_share),
                                low_frequency_share(run.model()),
                                sum(h.train_seconds for h in run.history) / 60))
    return out


def comparison_schedule(profile: "str | Profile", epochs: "int | None" = None) -> dict:
    """The schedule of the comparison trainings (Fig. 6 layouts, Table 3 variants, recipes,
    per-layer rates): ``{"epochs": epochs}``, or :func:`zfcore.train.comparison_overrides` (half
    the profile's epochs, 4 on ``mini``) when ``epochs`` is None."""
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise RecipeError(f"schedule_epochs must be None or a positive int, got {epochs!r}")
    from .train import comparison_overrides
    return comparison_overrides(profile) if epochs is None else {"epochs": epochs}


def recipes_text(results: Sequence[RecipeResult], chosen: "str | None" = None) -> str:
    """The recipe table as printed text: validation error, layer-1 low-frequency share, minutes
    and the dead-map share per layer; ``chosen`` (the profile's recipe) is starred."""
    layers = list(results[0].dead_share)
    lines = [f"{'recipe':16s} {'val err':>8s} {'layer-1 low freq':>16s} {'minutes':>8s}  dead maps "
             + " ".join(f"{l[-1]:>5s}" for l in layers)]
    for r in results:
        lines.append(f"{r.recipe + (' *' if r.recipe == chosen else ''):16s} {r.val_top1_error:7.1f}% "
                     f"{r.layer1_low_frequency_share:16.0%} {r.train_minutes:8.1f}            "
                     + " ".join(f"{100 * r.dead_share[l]:4.0f}%" for l in layers))
    return "\n".join(lines)


def recipe_numbers(results: Sequence[RecipeResult], chosen: "str | None" = None) -> dict:
    """The numbers notebook 04 records for the recipe comparison: ``recipe_<name>_<measure>``
    for every measure of :meth:`RecipeResult.row` but the name and the epochs, and
    ``profile_recipe`` (``"custom"`` when the profile matches no recipe)."""
    out = {}
    for r in results:
        out.update({f"recipe_{r.recipe}_{k}": v for k, v in r.row().items() if k not in ("recipe", "epochs")})
    out["profile_recipe"] = chosen or "custom"
    return out


@dataclass
class LayerSchedules:
    """One global learning rate against per-layer schedules on the same comparison schedule
    (section 4.2's reading of Fig. 4: lower layers settle first, so updating them all along may
    waste compute). ``arms`` maps a label to its :class:`zfcore.train.TrainRun`, in the order
    global rate, frozen early layers, lower early rates; ``correct`` their per-image top-1
    correctness on the validation images; ``images_per_s`` the step throughput measured now
    (``"global"``, ``"frozen"``)."""

    epochs: int
    freeze: dict
    layer_lr: dict
    arms: dict
    images_per_s: dict
    correct: dict

    @property
    def names(self) -> list[str]:
        return list(self.arms)

    @property
    def speedup(self) -> float:
        """Step throughput with the early layers frozen over that with one global rate."""
        return self.images_per_s["frozen"] / self.images_per_s["global"]

    def rows(self) -> list[dict]:
        """One row per arm: validation accuracy, training time when trained, images/s now."""
        return [{"name": name, "val accuracy (%)": r.final.val_accuracy, "training time (s)": r.train_seconds,
                 "images/s": self.images_per_s["frozen"] if name.startswith("freeze") else self.images_per_s["global"]}
                for name, r in self.arms.items()]

    def verdicts(self) -> "tuple[Verdict, Verdict]":
        """Whether freezing, and lowering the rates of, the early layers each cost under one point
        of validation accuracy: paired bootstraps over the validation images (margin -1 point;
        seed variance not included)."""
        g, f, r = (self.correct[n].float() for n in self.names)
        kw = dict(scale=100, margin=-1.0, unit="points")
        return (paired_bootstrap("per_layer_freeze_costs_under_1_point", f, g, **kw),
                paired_bootstrap("per_layer_rates_cost_under_1_point", r, g, **kw))

    def numbers(self) -> dict:
        """The numbers notebook 04 records for this comparison (accuracies, times, speed-up)."""
        g, f, r = self.arms.values()
        return dict(layer_lr_schedule_epochs=self.epochs, layer_lr_freeze=self.freeze,
                    layer_lr_multipliers=self.layer_lr, global_rate_val_accuracy=g.final.val_accuracy,
                    per_layer_val_accuracy=f.final.val_accuracy, lower_rates_val_accuracy=r.final.val_accuracy,
                    global_rate_train_seconds=g.train_seconds, per_layer_train_seconds=f.train_seconds,
                    lower_rates_train_seconds=r.train_seconds, per_layer_speedup_images_per_s=self.speedup)


def layer_schedules(profile: "str | Profile", freeze: "Mapping[str, float] | None" = None,
                    layer_lr: "Mapping[str, float] | None" = None, *, epochs: "int | None" = None,
                    n_images: int = 1000, topk_threshold: float = 0.5,
                    weight_threshold: float = 0.9) -> LayerSchedules:
    """Train (or load) one global rate, the early layers frozen after ``freeze`` epochs, and the
    early layers' rates multiplied by ``layer_lr``, all on :func:`comparison_schedule`; measure
    each arm on the validation images and the throughput of the frozen configuration now.

    ``freeze=None`` freezes :data:`EARLY_LAYERS` at the epoch their top-9 settled on this same
    schedule (:func:`zfcore.evolution.layer_convergence` of the global-rate run, at most half the
    schedule), so the freeze uses only what the run itself could have known."""
    from .data import get_dataset
    from .evolution import layer_convergence
    from .probes import per_image_correct
    from .train import compare_throughput, training_run
    p = get_profile(profile)
    layer_lr = dict(layer_lr if layer_lr is not None else {l: 0.1 for l in EARLY_LAYERS})
    schedule = comparison_schedule(p, epochs)
    glob = training_run(profile, **schedule)
    if freeze is None:
        conv = layer_convergence(glob, n_images=n_images, topk_threshold=topk_threshold,
                                 weight_threshold=weight_threshold)
        freeze = {l: min(conv.topk_converged[l], schedule["epochs"] / 2) for l in EARLY_LAYERS}
    freeze = dict(freeze)
    arms = {"one global rate": glob,
            "freeze " + ", ".join(f"{l}@{e:g}" for l, e in freeze.items()):
                training_run(profile, freeze_after=freeze, **schedule),
            "rates " + ", ".join(f"{l} x{m:g}" for l, m in layer_lr.items()):
                training_run(profile, layer_lr=layer_lr, **schedule)}
    ips = compare_throughput(profile, {"global": [], "frozen": list(freeze)})
    val = get_dataset(p, "val")
    correct = {name: per_image_correct(r.model(), val) for name, r in arms.items()}
    return LayerSchedules(schedule["epochs"], freeze, layer_lr, arms, ips, correct)
